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
from typer.core import TyperGroup

from kaiyuan import __version__
from kaiyuan.cli import catalog, chat, data, evaluate, export, hub, plan, run, serve, share, teamhub, train, users
from kaiyuan.cli.output import err_console, keep_stdout_for_results, quiet_library_chatter
from kaiyuan.errors import KaiyuanError

COMMAND_GROUPS = (data, train, evaluate, export, serve, chat, hub, catalog, teamhub, share, users, plan, run)

HELP_ASKED = "kaiyuan.help_asked"


class _Root(TyperGroup):
    """Notes whether a subcommand's --help was asked for: then help is the result, printed to stdout as usual."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta[HELP_ASKED] = "--help" in (args[:args.index("--")] if "--" in args else args)
        return super().parse_args(ctx, args)


app = typer.Typer(rich_markup_mode=None, cls=_Root,
                  help="kaiyuan (开源): take an open model from data to a served, fine-tuned model — with "
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
    verbose: Annotated[bool, typer.Option("--verbose", help="Show the libraries' warnings, log lines and progress "
                                                            "bars live on stderr (by default they go to a log file "
                                                            "in KAIYUAN_HOME/logs). Also: KAIYUAN_VERBOSE=1.")]
    = False,
) -> None:
    if not ctx.meta.get(HELP_ASKED):  # help is the result then: it goes to stdout as usual
        ctx.call_on_close(keep_stdout_for_results())
    if allow_pickle:
        os.environ["KAIYUAN_ALLOW_PICKLE"] = "1"
    if verbose:
        os.environ["KAIYUAN_VERBOSE"] = "1"  # and in the processes a command starts (torchrun workers)
    elif not ctx.meta.get(HELP_ASKED) and os.environ.get("KAIYUAN_VERBOSE", "") not in ("1", "true", "yes"):
        ctx.call_on_close(quiet_library_chatter(ctx.invoked_subcommand or "kaiyuan"))  # after the one above


for group in COMMAND_GROUPS:
    group.register(app)


def main() -> None:
    try:
        app()
    except KaiyuanError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)

