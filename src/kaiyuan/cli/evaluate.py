"""``kaiyuan eval``, ``kaiyuan judge`` and ``kaiyuan arena`` (battles, ratings, the web arena's votes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from kaiyuan.cli.from_config import command_from_config
from kaiyuan.cli.output import console, library_chatter_to_stderr, print_json
from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.battles import run_battles
from kaiyuan.evaluate.config import (
    EvalConfig,
    RatingsConfig,
    VotesConfig,
    benchmark_configs,
    check_eval_config,
    exact_match_configs,
)
from kaiyuan.evaluate.generation import run_exact_match
from kaiyuan.evaluate.harness import plot_comparison, run_benchmark
from kaiyuan.evaluate.judge import BattleConfig, JudgeConfig, run_judge
from kaiyuan.home import kaiyuan_home
from kaiyuan.hub.manifest import atomic_write_text
from kaiyuan.web.store import UI_FILE, VOTE_TYPES, UIStore, battle_record

EVAL_HELP = ("Score models on a benchmark the way lm-evaluation-harness does (acc, acc_norm, exact match, "
             "perplexity), or exact match on held-out conversations (--data). Results are registered eval "
             "artifacts.")
JUDGE_HELP = ("Grade models' answers with an LLM judge (MT-bench rules: 1–10 ratings, or pairwise in both "
              "orders).")
BATTLE_HELP = "Anonymous pairwise battles decided by a judge model; stored for ratings."
RATINGS_HELP = ("Bradley–Terry ratings (base 10, scale 400, mean 1000) with bootstrap 95% intervals, rank and "
                "online Elo.\n\nRank = 1 + the number of models whose lower bound is above this model's upper "
                "bound.")
VOTES_HELP = ("The human votes of the web arena (`kaiyuan serve --ui`): a table, or --export FILE: every vote as a "
              "clean battle record (JSON lines) for `kaiyuan arena ratings --battles FILE`.")


def _config_command(cls: type, run: Callable[[Any, bool], None], help: str) -> Callable[..., None]:
    """The typer command :func:`command_from_config` builds for ``cls``, to register under any name."""
    holder = typer.Typer()
    command_from_config(holder, "command", cls, run, help=help)
    callback = holder.registered_commands[0].callback
    assert callback is not None
    return callback


def evaluate(cfg: EvalConfig, json_output: bool) -> None:
    """``kaiyuan eval``: a benchmark (--task) or exact match on held-out conversations (--data), per model."""
    check_eval_config(cfg)
    if cfg.data is not None:
        _exact_match_command(cfg, json_output)
        return

    results = []
    for benchmark in benchmark_configs(cfg):
        with library_chatter_to_stderr():
            results.append(run_benchmark(benchmark))
    chart = None
    png = Path(cfg.png) if cfg.png is not None else None
    if png is not None or len(results) > 1:
        chart = plot_comparison(results, next(iter(results[0].metrics)), png or Path(f"eval-{results[0].task}.png"))
    if json_output:
        summaries = [r.summary() for r in results]
        print_json({"results": summaries, "png": str(chart) if chart else None} if len(summaries) > 1
                   else summaries[0])
        return
    for result in results:
        _print_benchmark(result)
    if chart:
        console.print(f"chart: {chart}")


def _print_benchmark(result: Any) -> None:
    metrics = list(result.metrics)
    # the title on a line of its own: a table title wraps at the table's width, and a model id must not
    console.print(f"{result.task} — {result.label} ({result.n} questions, {result.seconds:.1f}s)", markup=False,
                  highlight=False, soft_wrap=True)
    table = Table()
    for column in ("subject", "n", *metrics):
        table.add_column(column, justify="left" if column == "subject" else "right")
    for subject, row in result.subjects.items():
        table.add_row(subject, str(row["n"]), *(f"{row[m]:.4f}" for m in metrics))
    if len(result.subjects) > 1:
        table.add_section()
        for category, row in result.categories.items():
            table.add_row(f"[bold]{category}[/]", str(row["n"]), *(f"{row[m]:.4f}" for m in metrics))
    table.add_section()
    table.add_row("[bold]overall[/]", str(result.n), *(f"[bold]{result.metrics[m]:.4f}[/]" for m in metrics))
    console.print(table)
    if result.artifact:
        console.print(f"eval artifact {result.artifact.id}")


def _exact_match_command(cfg: EvalConfig, json_output: bool) -> None:
    for exact_match in exact_match_configs(cfg):
        model = exact_match.model
        with library_chatter_to_stderr():
            result = run_exact_match(exact_match)
        if json_output:
            print_json(result.summary())
        else:
            console.print(f"{model}: exact match {result.exact_match:.4f} ({result.n_correct}/{result.n}); "
                          f"eval artifact {result.artifact.id}")








def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"




def _judge(cfg: JudgeConfig, json_output: bool) -> None:
    """MT-bench-style LLM judge: single-answer grades (1-10) or pairwise verdicts; registers an eval artifact."""
    with library_chatter_to_stderr():
        result = run_judge(cfg)
    if json_output:
        print_json(result.summary())
        return
    metrics = result.metrics
    if metrics["mode"] == "single":
        turns = sorted({t for m in metrics["models"].values() for t in m["turns"]})
        table = Table(title=f"judge {metrics['judge']}: single-answer grades (1-10), {metrics['n_questions']} "
                            "questions")
        for column in ["model", "mean", *[f"turn {t}" for t in turns], "scored", "unparsable"]:
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, m in sorted(metrics["models"].items(), key=lambda kv: -(kv[1]["mean_score"] or 0)):
            table.add_row(name, _fmt(m["mean_score"]), *[_fmt(m["turns"].get(t)) for t in turns],
                          str(m["n_scored"]), str(m["n_unparsable"]))
        console.print(table)
        categories = sorted({c for m in metrics["models"].values() for c in m["categories"]})
        if len(categories) > 1:
            by_category = Table(title="mean grade per category")
            by_category.add_column("category")
            for name in metrics["models"]:
                by_category.add_column(name, justify="right")
            for category in categories:
                by_category.add_row(category, *[_fmt(m["categories"].get(category))
                                                for m in metrics["models"].values()])
            console.print(by_category)
    else:
        table = Table(title=f"judge {metrics['judge']}: pairwise, {metrics['n_questions']} questions")
        for column in ("model", "win", "tie", "loss", "win rate", "adjusted win rate"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for name, m in sorted(metrics["models"].items(), key=lambda kv: -(kv[1]["win_rate_adjusted"] or 0)):
            table.add_row(name, str(m["win"]), str(m["tie"]), str(m["loss"]), _fmt(m["win_rate"], 3),
                          _fmt(m["win_rate_adjusted"], 3))
        console.print(table)
    console.print(f"{metrics['n_unparsable']} of {metrics['n']} judgments unparsable (left out); "
                  f"eval artifact [bold]{result.artifact.id}[/] ({result.artifact.path / 'judgments.jsonl'})")


def _battle(cfg: BattleConfig, json_output: bool) -> None:
    """Anonymous battles judged by an LLM (both answer orders); stored for `kaiyuan arena` ratings."""
    with library_chatter_to_stderr():
        result = run_battles(list(cfg.models), cfg.prompts, cfg.judge, pairs_per_prompt=cfg.pairs, seed=cfg.seed,
                             max_tokens=cfg.max_tokens, judge_max_tokens=cfg.judge_max_tokens,
                             judge_model=cfg.judge_model, judge_prompts=cfg.judge_prompts, api_key=cfg.api_key,
                             out=cfg.out, store=cfg.store)
    summary = result.summary()
    if json_output:
        print_json(summary)
        return
    table = Table(title=f"{summary['n_battles']} battles on {summary['n_prompts']} prompts")
    for column in ("model", "win", "tie", "loss"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, counts in sorted(summary["models"].items(), key=lambda kv: (-kv[1]["win"], kv[1]["loss"], kv[0])):
        table.add_row(name, str(counts["win"]), str(counts["tie"]), str(counts["loss"]))
    console.print(table)
    where = [f"stored in {summary['stored_in']}"] if summary["stored_in"] else []
    where += [f"written to {summary['out']}"] if summary["out"] else []
    console.print(f"{summary['n_unparsable']} comparisons without a verdict (left out)"
                  + (f"; {', '.join(where)}" if where else ""))






arena_app = typer.Typer(rich_markup_mode=None,
                        help="Pairwise battles between models and their Bradley–Terry (Chatbot Arena) ratings.",
                        no_args_is_help=True)


@arena_app.callback()
def _arena() -> None:
    """Pairwise battles between models and their Bradley–Terry (Chatbot Arena) ratings."""


def ratings(cfg: RatingsConfig, json_output: bool) -> None:
    """Bradley–Terry ratings with bootstrap 95% intervals, rank and online Elo (see RATINGS_HELP)."""
    from kaiyuan.evaluate.arena import (
        arena_store_path,
        leaderboard,
        load_stored_battles,
        plot_leaderboard,
        read_battles,
    )

    battles = Path(cfg.battles) if cfg.battles is not None else None
    png = Path(cfg.png) if cfg.png is not None else None
    rounds, seed = cfg.rounds, cfg.seed
    if rounds < 1:
        raise KaiyuanError(f"--rounds: expected at least 1, got {rounds}")
    skipped_self = skipped_leaked = 0
    if battles is not None:
        log = read_battles(battles)
        source, battle_list, skipped_self = str(battles), log.battles, log.skipped_self_battles
        skipped_leaked = log.skipped_leaked_identity
    else:
        source = str(arena_store_path())
        battle_list = load_stored_battles()
        if not battle_list:
            raise KaiyuanError(f"no battles stored in {source}; pass --battles FILE (a FastChat battle log)")
    board = leaderboard(battle_list, rounds=rounds, seed=seed)
    if png is not None:
        plot_leaderboard(board.rows, png)
    report = {"source": source, "skipped_self_battles": skipped_self, "skipped_leaked_identity": skipped_leaked,
              **board.to_dict(),
              "png": str(png) if png is not None else None}
    if json_output:
        print_json(report)
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
    if skipped_leaked:
        notes.append(f"{skipped_leaked} leaked-identity votes skipped (a reply named a model)")
    if png is not None:
        notes.append(f"plot: {png}")
    console.print("; ".join(notes), markup=False, highlight=False)


command_from_config(arena_app, "ratings", RatingsConfig, ratings, help=RATINGS_HELP)


def _human_votes() -> list[dict[str, Any]]:
    """The web arena's votes in KAIYUAN_HOME, oldest first (none, and no database made, before the UI ran)."""
    home = kaiyuan_home()
    return UIStore(home).votes() if (home / UI_FILE).exists() else []


def _vote_row(vote: dict[str, Any]) -> dict[str, Any]:
    model_a, model_b = vote["models"]
    return {"battle_id": vote["battle_id"], "tstamp": vote["tstamp"], "user": vote["user"], "model_a": model_a,
            "model_b": model_b, "winner": VOTE_TYPES[vote["type"]], "anony": vote["anony"],
            "leaked_identity": vote["leaked_identity"]}


def _export_votes(records: list[dict[str, Any]], path: Path, json_output: bool) -> None:
    lines = [json.dumps(battle_record(vote), ensure_ascii=False) + "\n" for vote in records]
    atomic_write_text(path, "".join(lines))
    leaked = sum(1 for vote in records if vote["leaked_identity"])
    if json_output:
        print_json({"export": str(path), "votes": len(records), "leaked_identity": leaked})
        return
    console.print(f"wrote {len(records)} votes to {path} ({leaked} leaked a model's identity: `kaiyuan arena "
                  f"ratings --battles {path}` leaves them out)", markup=False, highlight=False)


def votes(cfg: VotesConfig, json_output: bool) -> None:
    """The web arena's human votes: a table, or every vote exported as a clean battle record (see VOTES_HELP)."""
    records = _human_votes()
    if cfg.export is not None:
        _export_votes(records, Path(cfg.export), json_output)
        return
    rows = [_vote_row(vote) for vote in records]
    if json_output:
        print_json({"votes": rows})
        return
    if not rows:
        console.print(f"no human votes in {kaiyuan_home() / UI_FILE} yet: they are cast in the arena of "
                      "`kaiyuan serve MODEL… --ui`", markup=False, highlight=False)
        return
    table = Table(title=f"{len(rows)} human votes in {kaiyuan_home() / UI_FILE}")
    for column in ("time", "user", "model A", "model B", "winner", "anonymous", "leaked"):
        table.add_column(column, overflow="fold")
    for row in rows:
        when = datetime.fromtimestamp(row["tstamp"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        table.add_row(when, row["user"], row["model_a"], row["model_b"], row["winner"],
                      "yes" if row["anony"] else "no", "yes" if row["leaked_identity"] else "no")
    console.print(table)


command_from_config(arena_app, "votes", VotesConfig, votes, help=VOTES_HELP)

# the commands as functions, to register on another app (tests)
judge_command = _config_command(JudgeConfig, _judge, JUDGE_HELP)
battle_command = _config_command(BattleConfig, _battle, BATTLE_HELP)


def register(app: typer.Typer) -> None:
    command_from_config(app, "eval", EvalConfig, evaluate, help=EVAL_HELP)
    command_from_config(app, "judge", JudgeConfig, _judge, help=JUDGE_HELP)
    command_from_config(arena_app, "battle", BattleConfig, _battle, help=BATTLE_HELP)
    app.add_typer(arena_app, name="arena")
