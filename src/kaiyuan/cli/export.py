"""``kaiyuan export MODEL --to merged|gguf|ollama``."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.console import Console

from kaiyuan.cli.output import library_chatter_to_stderr, print_json, results
from kaiyuan.export.export import ExportConfig, describe_checks, run_export


def _field_help(name: str) -> str:
    return next(f.metadata["help"] for f in dataclasses.fields(ExportConfig) if f.name == name)


def export_command(
    model: Annotated[str, typer.Argument(help=_field_help("model"), show_default=False)],
    to: Annotated[str, typer.Option("--to", help=_field_help("to"), show_default=False)],
    quant: Annotated[str, typer.Option(help=_field_help("quant"))] = "f16",
    name: Annotated[str | None, typer.Option(help=_field_help("name"))] = None,
    converter: Annotated[str | None, typer.Option(help=_field_help("converter"))] = None,
    template: Annotated[str | None, typer.Option(help=_field_help("template"))] = None,
    tolerance: Annotated[float | None, typer.Option(help=_field_help("tolerance"))] = None,
    greedy_tokens: Annotated[int, typer.Option(help=_field_help("greedy_tokens"))] = 16,
    perplexity_text: Annotated[str | None, typer.Option(help=_field_help("perplexity_text"))] = None,
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help=_field_help("allow_mismatch"))] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Export a model or adapter: merged safetensors, a GGUF file for llama.cpp, or an Ollama model. Checks run
    inside the export (merge logit difference, greedy equality, perplexity drift) and are registered with it."""
    cfg = ExportConfig(model=model, to=to, quant=quant, name=name, converter=converter,  # type: ignore[arg-type]
                       template=template, tolerance=tolerance, greedy_tokens=greedy_tokens,
                       perplexity_text=perplexity_text, allow_mismatch=allow_mismatch)
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
    app.command("export")(export_command)
