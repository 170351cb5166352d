"""``kaiyuan data``: validate, convert, synthetic tasks and near-miss preference pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, err_console, library_chatter_to_stderr, print_json
from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.formats import load_records, records_to_jsonl
from kaiyuan.data.near_misses import run_near_misses
from kaiyuan.data.synthetic import run_synthetic
from kaiyuan.hub.manifest import atomic_write_text
from kaiyuan.pipeline.stages import STAGES

data_app = typer.Typer(rich_markup_mode=None, help="Validate and convert instruction / preference data.",
                       no_args_is_help=True)


@dataclass
class ValidateConfig:
    file: str = field(metadata={"help": "JSON / JSONL file (optionally .gz).", "argument": True})
    format: str = field(default="auto", metadata={"help": "auto|alpaca|sharegpt|messages|pairs",
                                                  "flags": ("--format", "-f")})
    skip_invalid: bool = field(default=False, metadata={"help": "Write rejected records to a sidecar file and go on."})
    rejects: str | None = field(default=None, metadata={"help": "Sidecar file (default FILE.rejected.jsonl)."})


VALIDATE_HELP = "Check every record; exit 2 naming FILE:LINE: field: message for each malformed one."


def data_validate(cfg: ValidateConfig, json_output: bool) -> None:
    """``kaiyuan data validate`` (see VALIDATE_HELP)."""
    file = Path(cfg.file)
    rejects = Path(cfg.rejects) if cfg.rejects is not None else None
    skip_invalid = cfg.skip_invalid
    result = load_records(file, cfg.format, skip_invalid=skip_invalid, rejects_path=rejects,
                          collect_all=not skip_invalid)
    report = {"file": str(file), "format": result.format, "valid": len(result.records),
              "invalid": result.n_skipped, "rejects": str(result.rejects_path) if result.rejects_path else None,
              "problems": [str(p) for p in result.problems]}
    if json_output:
        print_json(report)
    else:
        for problem in result.problems[:50]:
            err_console.print(str(problem), markup=False, highlight=False)
        if len(result.problems) > 50:
            err_console.print(f"… and {len(result.problems) - 50} more", markup=False)
        console.print(f"{file}: {report['valid']} valid {result.format} records, {report['invalid']} invalid"
                      + (f" (written to {result.rejects_path})" if result.rejects_path else ""), markup=False)
    if result.problems and not skip_invalid:
        raise typer.Exit(2)


@dataclass
class ConvertConfig:
    file: str = field(metadata={"help": "Input JSON / JSONL file (optionally .gz).", "argument": True})
    output: str = field(metadata={"help": "Output JSONL file.", "argument": True})
    source_format: str = field(default="auto", metadata={"help": "auto|alpaca|sharegpt|messages|pairs",
                                                         "flags": ("--from",)})
    target_format: str = field(default="messages", metadata={"help": "messages|sharegpt|alpaca", "flags": ("--to",)})
    skip_invalid: bool = field(default=False, metadata={"help": "Write rejected records to a sidecar file and go on."})
    register: str | None = field(default=None, metadata={
        "help": "Also register the result as a dataset with this name."})
    license: str = field(default="NOASSERTION", metadata={"help": "SPDX license id of the data (for --register)."})


CONVERT_HELP = "Convert to the canonical format (or ShareGPT / Alpaca), atomically."


def data_convert(cfg: ConvertConfig, json_output: bool) -> None:
    """``kaiyuan data convert`` (see CONVERT_HELP)."""
    file, output = Path(cfg.file), Path(cfg.output)
    result = load_records(file, cfg.source_format, skip_invalid=cfg.skip_invalid)
    atomic_write_text(output, records_to_jsonl(result.records, cfg.target_format))
    report: dict[str, Any] = {"input": str(file), "output": str(output), "format": result.format,
                              "records": len(result.records), "skipped": result.n_skipped,
                              "rejects": str(result.rejects_path) if result.rejects_path else None}
    if cfg.register:
        artifact = register_dataset(result.records, cfg.register, cfg.license, f"file:{file.resolve()}",
                                    {"format": result.format})
        report["dataset_id"] = artifact.id
    if json_output:
        print_json(report)
    else:
        console.print(f"{report['records']} records → {output}" + (
            f"; {report['skipped']} skipped (see {report['rejects']})" if report["skipped"] else "") + (
            f"; registered as {report['dataset_id']}" if cfg.register else ""), markup=False)


def _run_synthetic(cfg: Any, json_output: bool) -> None:

    produced = run_synthetic(cfg)
    if json_output:
        print_json({name: artifact.summary() for name, artifact in produced.items()})
        return
    for name, artifact in produced.items():
        records = artifact.manifest["metrics"]["records"]
        console.print(f"{name}: [bold]{artifact.id}[/] ({artifact.name}, {records} records)")


def _run_near_misses(cfg: Any, json_output: bool) -> None:

    with library_chatter_to_stderr():
        dataset, kept = run_near_misses(cfg)
    metrics = dataset.manifest["metrics"]
    if json_output:
        print_json({**dataset.summary(), "pairs": len(kept), "candidates": metrics["candidates"],
                    "margins": [round(m.margin, 6) for m in kept]})
        return
    console.print(f"near-miss pairs: [bold]{dataset.id}[/] ({len(kept)} of {metrics['candidates']} conversations; "
                  f"largest margin kept {metrics['largest_margin_kept']})")
    for miss in kept[:5]:
        console.print(f"  {miss.row['chosen'][0]['content']!r} vs {miss.row['rejected'][0]['content']!r} "
                      f"(margin {miss.margin:.3f})", markup=False)


def register(app: typer.Typer) -> None:
    command_from_config(data_app, "validate", ValidateConfig, data_validate, help=VALIDATE_HELP,
                        json_help="Print a JSON report.")
    command_from_config(data_app, "convert", ConvertConfig, data_convert, help=CONVERT_HELP,
                        json_help="Print a JSON report.")
    app.add_typer(data_app, name="data")
    for name, run in (("synthetic", _run_synthetic), ("near_misses", _run_near_misses)):
        stage = STAGES[name]
        command_from_config(data_app, stage.command.split()[1], stage.config, run, help=stage.help)
