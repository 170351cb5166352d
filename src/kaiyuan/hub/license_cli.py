"""``kaiyuan license MODEL``: the terms a model carries from its lineage (commercial use, obligations, risks)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kaiyuan.hub.licenses import LicenseReport, license_report
from kaiyuan.json_output import print_json

VERDICT_STYLE = {"yes": "bold green", "no": "bold red", "risk": "bold yellow"}
LEVEL_STYLE = {"blocker": "red", "risk": "yellow", "flag": "cyan"}


def license_command(
    model: Annotated[str, typer.Argument(help="Model (or any artifact): registry id, id prefix or name.")],
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Derive a model's license terms from its lineage: base models, adapters, merges, quantizations, datasets,
    reward / reference models and the models that generated its data. Evaluations and judges are not inputs.
    An engineering reading of the recorded licenses, not legal advice."""
    report = license_report(model)
    if json_output:
        print_json(report.to_dict())
        return
    print_license_report(report, Console())


def print_license_report(report: LicenseReport, console: Console) -> None:
    style = VERDICT_STYLE[report.verdict]
    console.print(Text.assemble((report.name, "bold"), f" ({report.model_id}, {report.kind})  license ",
                                (report.license, "bold")))
    console.print(f"commercial use: [{style}]{report.verdict}[/]", highlight=False)
    table = Table(title="inputs (the chain of evidence)")
    for column in ("role", "path", "license", "commercial", "share-alike", "open"):
        table.add_column(column, overflow="fold")
    for item in report.evidence:
        props = item["properties"] or {}
        commercial = {True: "yes", False: "no", None: "?"}[props.get("commercial_use")]
        table.add_row(item["role"] + (f" ({item['via']})" if item["role"] == "data" else ""), Text(item["path_text"]),
                      item["license"] or "missing", commercial, "yes" if props.get("share_alike") else "",
                      "yes" if props.get("open_license") else "")
    console.print(table)
    if report.risks:
        console.print("[bold]risks[/]")
        for risk in report.risks:
            console.print(Text.assemble("  ", (risk["level"], LEVEL_STYLE[risk["level"]]), f" {risk['message']}"))
            console.print(f"      path: {risk['path_text']}", markup=False, highlight=False)
    if report.obligations:
        console.print("[bold]obligations when you distribute the model or offer it as a service[/]")
        for obligation in report.obligations:
            console.print(f"  • {obligation}", markup=False, highlight=False)
    if report.use_policies:
        console.print("acceptable-use policies: " + "; ".join(report.use_policies), markup=False, highlight=False)
    if report.user_cap:
        console.print(f"user cap: {report.user_cap:,} monthly active users", highlight=False)
    console.print("[dim]An engineering reading of the recorded licenses, not legal advice.[/]")


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan license`` to the ``kaiyuan`` app."""
    app.command("license")(license_command)
