"""``kaiyuan verify [--repair] [--json]``: check KAIYUAN_HOME against its manifests (see :mod:`kaiyuan.hub.verify`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from kaiyuan.hub.registry import human_size
from kaiyuan.json_output import print_json

if TYPE_CHECKING:
    from kaiyuan.hub.verify import VerifyReport


def register(app: typer.Typer) -> None:
    """Add ``kaiyuan verify`` to the ``kaiyuan`` app."""
    app.command("verify")(verify_command)


def verify_command(
    repair: Annotated[bool, typer.Option("--repair", help="Fix what can be fixed without losing a committed "
                                                          "artifact: index folders with valid manifests, drop rows "
                                                          "whose folder is gone, remove staging leftovers and "
                                                          "interrupted checkpoints, rebuild a damaged registry, "
                                                          "quarantine (never delete) damaged artifacts.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check KAIYUAN_HOME: every artifact file's sha256 against its manifest (changed, missing, extra files), the
    registry against the artifact folders, staging leftovers of killed writers, interrupted training checkpoints,
    and parents that are neither registered nor on disk. Prints "clean", or each problem and what --repair does
    about it. Exit code 0: clean (or everything repaired); 1: problems remain."""
    from kaiyuan.hub.verify import verify_home

    report = verify_home(repair=repair)
    if json_output:
        print_json(report.to_dict())
    else:
        _print(report)
    if not report.clean:
        raise typer.Exit(1)


def _print(report: VerifyReport) -> None:
    out = typer.echo
    for finding in report.findings:
        out(finding.line())
        if finding.repaired:
            out(f"  repaired: {finding.repair}")
        elif finding.repair_error:
            out(f"  NOT repaired ({finding.repair_error}): {finding.repair}")
        elif finding.repair is None:
            out("  --repair cannot fix this")
        else:
            out(f"  --repair would: {finding.repair}")
    checked = (f"{report.artifacts} artifact(s), {report.files_hashed} file(s), {human_size(report.bytes_hashed)} "
               f"checked in {report.home}")
    problems = len(report.findings)
    if not problems:
        out(f"clean: {checked}")
    elif report.repair:
        repaired, remaining = problems - len(report.remaining), len(report.remaining)
        out(f"{problems} problem(s), {repaired} repaired, " + (f"{remaining} remain" if remaining else "now clean")
            + f": {checked}")
    else:
        fixable = sum(f.repair is not None for f in report.findings)
        out(f"{problems} problem(s): {checked}; `kaiyuan verify --repair` fixes {fixable} of them")
    for note in report.notes:
        out(f"note: {note}")
