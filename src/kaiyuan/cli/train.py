"""``kaiyuan train STAGE``: one command per training stage of the stage table."""

from __future__ import annotations

from typing import Any

import typer

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, library_chatter_to_stderr, print_json
from kaiyuan.pipeline.stages import TRAINING_STAGES
from kaiyuan.train.launch import is_worker, launch

train_app = typer.Typer(rich_markup_mode=None, help="Training stages.", no_args_is_help=True)


def _training_command(run: Any, stage: str) -> Any:
    def command(cfg: Any, json_output: bool) -> None:

        if getattr(cfg, "nproc", 1) > 1 and not is_worker():
            with library_chatter_to_stderr():
                summary = launch(cfg, stage)
            print_json(summary) if json_output else console.print(summary)
            return
        with library_chatter_to_stderr():
            result = run(cfg)
        if result is None:  # a distributed worker other than rank 0
            return
        if json_output:
            print_json(result.summary())
            return
        console.print(f"{result.artifact.kind}: [bold]{result.artifact.id}[/] ({result.artifact.name})")
        if result.merged:
            console.print(f"merged model: [bold]{result.merged.id}[/]")
        console.print(f"final loss: {result.metrics['final_loss']}")
        for key, path in result.curves.items():
            console.print(f"{key} curve: {path}")

    return command


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
    for stage in TRAINING_STAGES:
        command_from_config(train_app, stage.name, stage.config, _training_command(stage.run, stage.name),
                            help=stage.help)
