"""``kaiyuan push`` and ``kaiyuan pull``: artifacts with their lineage, to and from a team hub."""

from __future__ import annotations

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, err_console, print_json
from kaiyuan.teamhub.share import PullConfig, PushConfig, ShareResult, default_hub, default_token, pull, push


def _say(line: str) -> None:
    err_console.print(line, markup=False, highlight=False)


def _print(result: ShareResult, verb: str) -> None:
    for shared in [*result.ancestors, *result.attached, result.artifact]:
        state = "already here" if shared.skipped else verb
        console.print(f"{shared.kind:8} {shared.id}  {shared.name:40} {shared.repo}@{shared.revision[:12]}  {state}",
                      markup=False, highlight=False)


def run_push(cfg: PushConfig, json_output: bool) -> None:
    result = push(cfg.model, cfg.repo, cfg.hub or default_hub(), cfg.token or default_token(), private=cfg.private,
                  report=_say)
    print_json(result.to_dict()) if json_output else _print(result, "pushed")


def run_pull(cfg: PullConfig, json_output: bool) -> None:
    result = pull(cfg.repo, cfg.hub or default_hub(), cfg.token or default_token(), allow_pickle=cfg.allow_pickle,
                  report=_say)
    print_json(result.to_dict()) if json_output else _print(result, "pulled")


def register(app: typer.Typer) -> None:
    command_from_config(app, "push", PushConfig, run_push,
                        help="Push an artifact and every ancestor it needs to a team hub (`kaiyuan hub serve`), each "
                             "as a revision of its own repo with its manifest and lineage.")
    command_from_config(app, "pull", PullConfig, run_pull,
                        help="Pull namespace/name[@revision] and the ancestors this registry lacks; every file is "
                             "checked against its manifest's sha256 before anything is registered.")
