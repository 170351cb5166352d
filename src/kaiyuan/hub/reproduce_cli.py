"""``kaiyuan reproduce MODEL``: re-run a model's recorded pipeline in a fresh home and compare file hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

STATUS_STYLE = {"identical": "green", "input": "cyan", "differs": "red", "cannot reproduce": "yellow"}


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan reproduce`` to the ``kaiyuan`` app."""
    app.command("reproduce")(reproduce_command)


def reproduce_command(
    model: Annotated[str, typer.Argument(help="Artifact id or name whose lineage to re-run.")],
    home: Annotated[Path | None, typer.Option(help="Fresh KAIYUAN_HOME to reproduce into (new or empty; default: a "
                                                   "temporary directory, removed afterwards).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Re-run every stage that led to MODEL, from its manifests, in a fresh KAIYUAN_HOME; inputs from outside
    (hub models, local dirs, data files) are copied in after checking their sha256. Every file's sha256 is then
    compared with the original's. Exit code 0: all identical; 1: something differs or cannot be reproduced."""
    from kaiyuan.cli import console, err_console, library_chatter_to_stderr, print_json
    from kaiyuan.hub.reproduce import ArtifactReport, reproduce

    def announce(report: ArtifactReport) -> None:
        err_console.print(f"{report.id}: {report.status}", markup=False, highlight=False)

    with library_chatter_to_stderr():
        report = reproduce(model, home=home, on_artifact=announce)
    if json_output:
        print_json(report.to_dict())
    else:
        table = Table(title=f"reproduce {report.target}" + (f" into {report.home}" if report.home else ""))
        for column in ("artifact", "kind", "name", "made by", "status", "details"):
            table.add_column(column, overflow="fold")
        for artifact in report.artifacts:
            details = [f"{d.path}: {d.problem}" for d in artifact.differences]
            details += [artifact.reason] if artifact.reason else []
            details += [f"missing: {', '.join(artifact.missing)}"] if artifact.missing else []
            details += [f"{name} {change}" for name, change in artifact.library_changes.items()]
            style = STATUS_STYLE.get(artifact.status, "")
            table.add_row(artifact.id, artifact.kind or "?", artifact.name or "?", artifact.how,
                          f"[{style}]{artifact.status}[/]", "\n".join(details))
        console.print(table)
        console.print(f"{'identical' if report.ok else 'NOT reproduced'} in {report.seconds:.1f}s")
    if not report.ok:
        raise typer.Exit(1)
