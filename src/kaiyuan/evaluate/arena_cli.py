"""``kaiyuan arena``: Chatbot-Arena-style ratings from pairwise battles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kaiyuan.errors import KaiyuanError

arena_app = typer.Typer(help="Pairwise battles between models and their Bradley–Terry (Chatbot Arena) ratings.",
                        no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


@arena_app.callback()
def _arena() -> None:
    """Pairwise battles between models and their Bradley–Terry (Chatbot Arena) ratings."""


@arena_app.command("ratings")
def ratings(
    battles: Annotated[Path | None, typer.Option("--battles", help="FastChat battle log: JSON array "
                                                 "(clean_battle_*.json) or JSONL with model_a, model_b, winner. "
                                                 "Default: the battles stored in KAIYUAN_HOME/arena.sqlite.")]
    = None,
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")] = 0,
    png: Annotated[Path | None, typer.Option(help="Also write a PNG of the ratings with their intervals.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Bradley–Terry ratings (base 10, scale 400, mean 1000) with bootstrap 95% intervals, rank and online Elo.

    Rank = 1 + the number of models whose lower bound is above this model's upper bound."""
    from kaiyuan.evaluate.arena import (
        arena_store_path,
        leaderboard,
        load_stored_battles,
        plot_leaderboard,
        read_battles,
    )

    if rounds < 1:
        raise KaiyuanError(f"--rounds: expected at least 1, got {rounds}")
    skipped_self = 0
    if battles is not None:
        log = read_battles(battles)
        source, battle_list, skipped_self = str(battles), log.battles, log.skipped_self_battles
    else:
        source = str(arena_store_path())
        battle_list = load_stored_battles()
        if not battle_list:
            raise KaiyuanError(f"no battles stored in {source}; pass --battles FILE (a FastChat battle log)")
    board = leaderboard(battle_list, rounds=rounds, seed=seed)
    if png is not None:
        plot_leaderboard(board.rows, png)
    report = {"source": source, "skipped_self_battles": skipped_self, **board.to_dict(),
              "png": str(png) if png is not None else None}
    if json_output:
        _print_json(report)
        return
    table = Table(title=f"arena ratings: {board.battles} battles from {source}")
    for column in ("rank", "model", "rating", "95% CI", "online Elo", "battles", "W/T/L"):
        table.add_column(column, justify="left" if column == "model" else "right", overflow="fold")
    for row in board.rows:
        table.add_row(str(row.rank), row.model, f"{row.rating:.1f}",
                      f"+{row.upper - row.rating:.1f}/-{row.rating - row.lower:.1f}", f"{row.online_elo:.1f}",
                      str(row.battles), f"{row.wins}/{row.ties}/{row.losses}")
    console.print(table)
    notes = [f"{rounds} bootstrap rounds, seed {seed}"]
    if board.skipped_rounds:
        notes.append(f"{board.skipped_rounds} resamples left out (a model never lost or never won in them)")
    if skipped_self:
        notes.append(f"{skipped_self} battles of a model against itself skipped")
    if png is not None:
        notes.append(f"plot: {png}")
    console.print("; ".join(notes), markup=False, highlight=False)
