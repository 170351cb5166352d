"""``kaiyuan run RECIPE`` and ``kaiyuan demo`` (the demo recipe with its summary)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, err_console, library_chatter_to_stderr, print_json
from kaiyuan.pipeline.demo import DemoConfig, run_demo
from kaiyuan.pipeline.recipe import load_recipe, plan, run_recipe


class RichReporter:
    """The demo's progress on stderr: rules per step, rich markup, a table."""

    def rule(self, text: str) -> None:
        err_console.rule(text)

    def print(self, text: str, markup: bool = True) -> None:
        err_console.print(text, markup=markup, highlight=False if not markup else None)

    def table(self, title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        err_console.print(table)


def _run_demo(cfg: Any, json_output: bool) -> None:
    with library_chatter_to_stderr():
        summary = run_demo(cfg, RichReporter())
    if json_output:
        print_json(summary)
    else:
        console.print(f"chat reply: {summary['chat_reply']!r}\nstream reply: {summary['stream_reply']!r}\n"
                      f"loss curve: {summary['loss_curve_png']}")


@dataclass
class RunRecipeConfig:
    recipe: str = field(metadata={"help": "Recipe YAML: stages run in order; ${ID.OUTPUT} refers to an earlier "
                                          "stage's artifact.", "argument": True})
    check: bool = field(default=False, metadata={"help": "Only validate the recipe.", "flags": ("--check",)})
    cache: bool = field(default=True, metadata={"help": "Reuse stages that already ran with the same resolved config."})


RUN_HELP = "Run a recipe (like recipes/dpo.yaml): every stage's config is checked before the first one runs."


def run_recipe_command(cfg: RunRecipeConfig, json_output: bool) -> None:
    """``kaiyuan run RECIPE`` (see RUN_HELP)."""
    recipe, check, cache = Path(cfg.recipe), cfg.check, cfg.cache
    if check:  # every problem of the recipe is reported at once (a RecipeError, one a line)
        planned = plan(load_recipe(recipe), str(recipe))
        console.print(f"{recipe}: {len(planned)} stages OK: " + " → ".join(f"{p.id} ({p.stage})" for p in planned),
                      markup=False, highlight=False)
        return

    def announce(number: int, total: int, step: Any) -> None:
        err_console.rule(f"[bold cyan]stage {number}/{total}: {step.id} ({step.stage})")

    with library_chatter_to_stderr():
        summary = run_recipe(recipe, announce, use_cache=cache)
    if json_output:
        print_json(summary)
        return
    table = Table(title=f"recipe {recipe}")
    for column in ("stage", "outputs"):
        table.add_column(column)
    for step_id, outputs in summary["stages"].items():
        table.add_row(step_id, json.dumps(outputs, default=str))
    console.print(table)


def register(app: typer.Typer) -> None:
    command_from_config(app, "run", RunRecipeConfig, run_recipe_command, help=RUN_HELP)
    command_from_config(app, "demo", DemoConfig, _run_demo,
                        help="Run the whole lifecycle on a real open model, in 9 steps (7 with --no-dpo): "
                             "1. the base model; 2. synthetic data (train and held-out splits); 3. evaluate the base "
                             "model on the held-out split; 4. LoRA SFT (TRL SFTTrainer, assistant-only loss) and "
                             "merge; 5. evaluate the tuned model; 6. DPO on the tuned model's near misses (LoRA, "
                             "merged); 7. evaluate the aligned model; 8. model card, data cards, license verdict and "
                             "openness grade of the final model; 9. serve the final model (OpenAI-compatible API) "
                             "and ask it once plainly and once streaming (--serve: keep serving). Writes "
                             "$KAIYUAN_HOME/demo/summary.json.")
