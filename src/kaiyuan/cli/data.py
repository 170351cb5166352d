"""``kaiyuan data``: validate, convert, synthetic tasks and near-miss preference pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, err_console, library_chatter_to_stderr, print_json
from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.formats import load_records, records_to_jsonl
from kaiyuan.data.near_misses import run_near_misses
from kaiyuan.data.synthetic import run_synthetic
from kaiyuan.hub.manifest import atomic_write_text
from kaiyuan.pipeline.stages import STAGES

data_app = typer.Typer(help="Validate and convert instruction / preference data.", no_args_is_help=True)




@data_app.command("validate")
def data_validate(
    file: Annotated[Path, typer.Argument(help="JSON / JSONL file (optionally .gz).")],
    format: Annotated[str, typer.Option("--format", "-f", help="auto|alpaca|sharegpt|messages|pairs")] = "auto",
    skip_invalid: Annotated[bool, typer.Option(help="Write rejected records to a sidecar file and go on.")] = False,
    rejects: Annotated[Path | None, typer.Option(help="Sidecar file (default FILE.rejected.jsonl).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check every record; exit 2 naming FILE:LINE: field: message for each malformed one."""

    result = load_records(file, format, skip_invalid=skip_invalid, rejects_path=rejects,
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


@data_app.command("convert")
def data_convert(
    file: Annotated[Path, typer.Argument(help="Input JSON / JSONL file (optionally .gz).")],
    output: Annotated[Path, typer.Argument(help="Output JSONL file.")],
    source_format: Annotated[str, typer.Option("--from", help="auto|alpaca|sharegpt|messages|pairs")] = "auto",
    target_format: Annotated[str, typer.Option("--to", help="messages|sharegpt|alpaca")] = "messages",
    skip_invalid: Annotated[bool, typer.Option(help="Write rejected records to a sidecar file and go on.")] = False,
    register: Annotated[str | None, typer.Option(help="Also register the result as a dataset with this name.")]
    = None,
    license: Annotated[str, typer.Option(help="SPDX license id of the data (for --register).")] = "NOASSERTION",
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Convert to the canonical format (or ShareGPT / Alpaca), atomically."""

    result = load_records(file, source_format, skip_invalid=skip_invalid)
    atomic_write_text(output, records_to_jsonl(result.records, target_format))
    report: dict[str, Any] = {"input": str(file), "output": str(output), "format": result.format,
                              "records": len(result.records), "skipped": result.n_skipped,
                              "rejects": str(result.rejects_path) if result.rejects_path else None}
    if register:

        artifact = register_dataset(result.records, register, license, f"file:{file.resolve()}",
                                    {"format": result.format})
        report["dataset_id"] = artifact.id
    if json_output:
        print_json(report)
    else:
        console.print(f"{report['records']} records → {output}" + (
            f"; {report['skipped']} skipped (see {report['rejects']})" if report["skipped"] else "") + (
            f"; registered as {report['dataset_id']}" if register else ""), markup=False)


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
    app.add_typer(data_app, name="data")
    for name, run in (("synthetic", _run_synthetic), ("near_misses", _run_near_misses)):
        stage = STAGES[name]
        command_from_config(data_app, stage.command.split()[1], stage.config, run, help=stage.help)
