"""``kaiyuan eval``, ``kaiyuan judge`` and ``kaiyuan arena`` (battles, ratings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from kaiyuan.cli.output import console, library_chatter_to_stderr, print_json
from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.generation import ExactMatchConfig, run_exact_match
from kaiyuan.evaluate.harness import BenchmarkConfig, plot_comparison, run_benchmark
from kaiyuan.evaluate.judge import JudgeConfig, run_battles, run_judge


def evaluate(
    models: Annotated[list[str], typer.Argument(help="Model(s): registry id/name, local dir, .gguf, hub id (or the "
                                                     "model name served at --base-url). Several → a comparison.")],
    task: Annotated[str | None, typer.Option(help="Benchmark: mmlu, ceval, cmmlu, gsm8k, piqa, lambada, or a task "
                                                  ".yaml (lm-evaluation-harness format).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Directory with the benchmark's published files.")] = None,
    split: Annotated[str | None, typer.Option(help="Split to score (default: the task's test split).")] = None,
    shots: Annotated[int | None, typer.Option(help="Few-shot examples (default: the task's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of random few-shot sampling.")] = 1234,
    predictions: Annotated[Path | None, typer.Option(help="Write per-question predictions here (JSONL; with "
                                                          "several models: one file per model).")] = None,
    engine: Annotated[str, typer.Option(help="auto | transformers | llamacpp | openai.")] = "auto",
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (generation tasks).")] = None,
    api_key: Annotated[str | None, typer.Option(help="API key of --base-url.")] = None,
    png: Annotated[Path | None, typer.Option(help="Bar chart comparing the models (default with several models: "
                                                  "eval-<task>.png).")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse cached request results of the same model.")] = True,
    data: Annotated[str | None, typer.Option(help="Instead of a benchmark: exact match on held-out conversations "
                                                  "(registered dataset or JSON/JSONL).")] = None,
    answer_pattern: Annotated[str | None, typer.Option(help="With --data: regex whose first match is the answer.")]
    = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions (of each subject).")] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 32,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest generation (default 256; --data: 32).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Score models on a benchmark the way lm-evaluation-harness does (acc, acc_norm, exact match, perplexity),
    or exact match on held-out conversations (--data). Results are registered eval artifacts."""
    if (task is None) == (data is None):
        raise KaiyuanError("give either --task (a benchmark) or --data (held-out conversations)")
    if data is not None:
        _exact_match_command(models, data, answer_pattern, limit, batch_size, max_new_tokens or 32, json_output)
        return

    results = []
    for model in models:
        target = predictions
        if predictions is not None and len(models) > 1:
            target = predictions.with_name(f"{predictions.stem}-{Path(model).name}{predictions.suffix}")
        cfg = BenchmarkConfig(model=model, task=task, data_dir=str(data_dir) if data_dir else None, split=split,
                              shots=shots, seed=seed, limit=limit, batch_size=batch_size,
                              max_new_tokens=max_new_tokens or 256, engine=engine,  # type: ignore[arg-type]
                              base_url=base_url, api_key=api_key, predictions=str(target) if target else None,
                              cache=cache)
        with library_chatter_to_stderr():
            results.append(run_benchmark(cfg))
    chart = None
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
    table = Table(title=f"{result.task} — {result.model_id} ({result.n} questions, {result.seconds:.1f}s)")
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


def _exact_match_command(models: list[str], data: str, answer_pattern: str | None, limit: int | None,
                         batch_size: int, max_new_tokens: int, json_output: bool) -> None:

    for model in models:
        with library_chatter_to_stderr():
            result = run_exact_match(ExactMatchConfig(model=model, data=data, answer_pattern=answer_pattern,
                                                      limit=limit, batch_size=batch_size,
                                                      max_new_tokens=max_new_tokens))
        if json_output:
            print_json(result.summary())
        else:
            console.print(f"{model}: exact match {result.exact_match:.4f} ({result.n_correct}/{result.n}); "
                          f"eval artifact {result.artifact.id}")








def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"




def judge_command(
    questions: Annotated[Path, typer.Option(help="Questions in MT-bench question.jsonl format "
                                                 "(question_id, category, turns[, reference]).")],
    judge: Annotated[str, typer.Option(help="Judge: a local model, or an OpenAI-compatible http(s):// URL.")],
    models: Annotated[list[str] | None, typer.Argument(
        help="Models to judge: registry id/name, dir, .gguf, hub id, tiny-llama, URL#MODEL, or a model_id in "
             "the --answers files (default: every model in them).")] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model name at the judge endpoint.")] = None,
    mode: Annotated[str, typer.Option(help="single: rate each answer 1-10; pairwise: compare models "
                                           "(both orders; disagreement = tie).")] = "single",
    answers: Annotated[list[Path] | None, typer.Option(
        help="FastChat answer file (question_id, model_id, choices[{index, turns}]); repeatable.")] = None,
    prompts: Annotated[Path | None, typer.Option(
        help="Judge prompts in FastChat judge_prompts.jsonl format (default: kaiyuan's own).")] = None,
    baseline: Annotated[str | None, typer.Option(help="Pairwise: compare each model with this one only.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
    first_turn_only: Annotated[bool, typer.Option(help="Judge only the first turn of each question.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Longest generated answer (tokens).")] = 1024,
    judge_max_tokens: Annotated[int, typer.Option(help="Longest judge reply (tokens).")] = 2048,
    api_key: Annotated[str | None, typer.Option(help="API key of http(s) endpoints (default: "
                                                     "$KAIYUAN_JUDGE_API_KEY or $OPENAI_API_KEY).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """MT-bench-style LLM judge: single-answer grades (1-10) or pairwise verdicts; registers an eval artifact."""

    cfg = JudgeConfig(models=list(models or []), questions=str(questions), judge=judge, judge_model=judge_model,
                      mode=mode, answers=[str(a) for a in answers or []],  # type: ignore[arg-type]
                      prompts=str(prompts) if prompts else None, baseline=baseline, limit=limit,
                      first_turn_only=first_turn_only, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
                      api_key=api_key)
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


def battle_command(
    models: Annotated[list[str], typer.Argument(
        help="Two or more models: registry id/name, dir, .gguf, hub id, tiny-llama, or URL#MODEL.")],
    prompts: Annotated[Path, typer.Option(help="Prompts: MT-bench question.jsonl, {\"prompt\": ...} JSON lines, "
                                               "or a .txt file with one prompt per line.")],
    judge: Annotated[str, typer.Option(help="Judge: a local model, or an OpenAI-compatible http(s):// URL.")],
    judge_model: Annotated[str | None, typer.Option(help="Model name at the judge endpoint.")] = None,
    pairs: Annotated[int | None, typer.Option("--pairs", "--rounds", help="Random model pairs per prompt "
                                                                         "(default: all pairs).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for choosing pairs and their order.")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Longest generated answer (tokens).")] = 512,
    judge_max_tokens: Annotated[int, typer.Option(help="Longest judge reply (tokens).")] = 2048,
    judge_prompts: Annotated[Path | None, typer.Option(
        help="Judge prompts in FastChat judge_prompts.jsonl format (default: kaiyuan's own).")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the battles as FastChat battle JSON lines.")] = None,
    store: Annotated[bool, typer.Option(help="Store the battles in $KAIYUAN_HOME/arena.sqlite.")] = True,
    api_key: Annotated[str | None, typer.Option(help="API key of http(s) endpoints (default: "
                                                     "$KAIYUAN_JUDGE_API_KEY or $OPENAI_API_KEY).")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Anonymous battles judged by an LLM (both answer orders); stored for `kaiyuan arena` ratings."""

    with library_chatter_to_stderr():
        result = run_battles(list(models), str(prompts), judge, pairs_per_prompt=pairs, seed=seed,
                             max_tokens=max_tokens, judge_max_tokens=judge_max_tokens, judge_model=judge_model,
                             judge_prompts=str(judge_prompts) if judge_prompts else None, api_key=api_key,
                             out=out, store=store)
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






arena_app = typer.Typer(help="Pairwise battles between models and their Bradley–Terry (Chatbot Arena) ratings.",
                        no_args_is_help=True)


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
    if png is not None:
        notes.append(f"plot: {png}")
    console.print("; ".join(notes), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
    app.command("judge", help="Grade models' answers with an LLM judge (MT-bench rules: 1–10 ratings, or "
                              "pairwise in both orders).")(judge_command)
    arena_app.command("battle", help="Anonymous pairwise battles decided by a judge model; stored for ratings.")(
        battle_command)
    app.add_typer(arena_app, name="arena")
