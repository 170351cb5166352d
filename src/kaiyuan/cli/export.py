"""``kaiyuan export MODEL --to merged|gguf|ollama``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import typer
from rich.console import Console

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import library_chatter_to_stderr, print_json, results
from kaiyuan.export.export import ExportConfig, describe_checks, run_export

HELP = ("Export a model or adapter: merged safetensors, a GGUF file for llama.cpp, or an Ollama model. Checks run "
        "inside the export (merge logit difference, greedy equality, perplexity drift) and are registered with it.")


def _metadata(name: str) -> dict[str, object]:
    return dict(next(f.metadata for f in dataclasses.fields(ExportConfig) if f.name == name))


@dataclass
class ExportOptions(ExportConfig):
    """:class:`ExportConfig` as the command's flags, with ``to`` and ``quant`` plain strings here so that
    :func:`run_export` names the choices of a wrong one (``unknown export target 'onnx': choose …``)."""

    to: str = field(metadata=_metadata("to"))  # type: ignore[assignment]
    quant: str = field(default="f16", metadata=_metadata("quant"))  # type: ignore[assignment]


def export_command(options: ExportOptions, json_output: bool) -> None:
    """Export a model or adapter: merged safetensors, a GGUF file for llama.cpp, or an Ollama model. Checks run
    inside the export (merge logit difference, greedy equality, perplexity drift) and are registered with it."""
    cfg = ExportConfig(**dataclasses.asdict(options))
    with library_chatter_to_stderr():
        result = run_export(cfg)
    summary = result.summary()
    if json_output:
        print_json(summary)
        return
    console = Console(file=results, soft_wrap=True)  # type: ignore[arg-type]
    console.print(f"{result.artifact.kind}: [bold]{result.artifact.id}[/] ({result.artifact.name})")
    if result.merged and result.merged.id != result.artifact.id:
        console.print(f"merged model: [bold]{result.merged.id}[/]")
    console.print(f"path: {summary['file']}", markup=False, highlight=False)
    for line in describe_checks(summary["checks"]):
        console.print(line, markup=False, highlight=False)
    if "ollama_create" in summary:
        console.print(f"create it: {summary['ollama_create']}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    command_from_config(app, "export", ExportOptions, export_command, help=HELP)
