"""``kaiyuan``: the app, its one list of command groups, and ``main()``.

Each group is a module of :mod:`kaiyuan.cli` with a ``register(app)``; the stage commands among them
(``train *``, ``data synthetic``, ``data near-misses``, ``export``) read the stage table,
:data:`kaiyuan.pipeline.stages.STAGES`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from kaiyuan import __version__
from kaiyuan.cli import data, evaluate, export, hub, plan, run, serve, train
from kaiyuan.cli.output import err_console, keep_stdout_for_results
from kaiyuan.errors import KaiyuanError

COMMAND_GROUPS = (data, train, evaluate, export, serve, hub, plan, run)

app = typer.Typer(help="kaiyuan (开源): take an open model from data to a served, fine-tuned model — with "
                       "provenance. Honours KAIYUAN_HOME (default ~/.kaiyuan).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version.", is_eager=True,
                                          callback=_version)] = False,
    allow_pickle: Annotated[bool, typer.Option("--allow-pickle", help="Allow loading pickle checkpoints "
                                                                     "(.bin/.pt): only for sources you trust.")]
    = False,
) -> None:
    ctx.call_on_close(keep_stdout_for_results())
    if allow_pickle:
        os.environ["KAIYUAN_ALLOW_PICKLE"] = "1"


for group in COMMAND_GROUPS:
    group.register(app)


def main() -> None:
    try:
        app()
    except KaiyuanError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2)

