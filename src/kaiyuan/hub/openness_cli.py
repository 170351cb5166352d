"""``kaiyuan openness MODEL``: MOF class, the 14-dimension openness index and the OSAID check, with evidence."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kaiyuan.hub.openness import OpennessReport, openness_report
from kaiyuan.json_output import print_json


def openness_command(
    model: Annotated[str, typer.Argument(help="Model: registry id, id prefix or name.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """How open a model is: its Model Openness Framework class (LF AI & Data, arXiv:2403.13784) with the missing
    components and why, the 14-dimension openness index (Liesenfeld & Dingemanse 2024) and the Open Source AI
    Definition 1.0 check — from the manifests and artifact files."""
    report = openness_report(model)
    if json_output:
        print_json(report.to_dict())
        return
    print_openness_report(report, Console())


def print_openness_report(report: OpennessReport, console: Console) -> None:
    console.print(Text.assemble((report.name, "bold"), f" ({report.model_id}, {report.kind})  license ",
                                (report.license, "bold")))
    reached = report.mof_class or "none (not even Class III)"
    console.print(f"Model Openness Framework: [bold]{reached}[/]", highlight=False)
    for name, step in report.progress.items():
        console.print(f"  {name}: {step['met']} of {step['required']} required components", highlight=False)
    table = Table(title="MOF components")
    for column in ("class", "component", "status", "license", "evidence"):
        table.add_column(column, overflow="fold")
    for c in report.mof_components:
        status = "[green]open[/]" if c["counts"] else "[yellow]not open[/]" if c["present"] else "[red]missing[/]"
        table.add_row(c["class"], c["name"] + ("" if c["required"] else " (optional)"), status, c["license"] or "",
                      Text(c["evidence"]))
    console.print(table)
    index = Table(title=f"openness index: {report.index_score:g} of {report.index_max}")
    for column in ("group", "dimension", "score", "evidence"):
        index.add_column(column, overflow="fold")
    for d in report.index:
        index.add_row(d["group"], d["name"], f"{d['score']:g}", Text(d["evidence"]))
    console.print(index)
    verdict = "[green]passes[/]" if report.osaid["passes"] else "[red]does not pass[/]"
    console.print(f"Open Source AI Definition 1.0: {verdict}")
    for reason in report.osaid["reasons"]:
        console.print(f"  • {reason}", markup=False, highlight=False)
    for note in report.notes:
        console.print(f"[dim]{note}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan openness`` to the ``kaiyuan`` app."""
    app.command("openness")(openness_command)
