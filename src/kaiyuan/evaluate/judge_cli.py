"""Command functions for ``kaiyuan judge`` and ``kaiyuan arena battle`` (registered in :mod:`kaiyuan.cli`)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _library_chatter_to_stderr() -> contextlib.AbstractContextManager:
    return contextlib.redirect_stdout(sys.stderr)


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
    from kaiyuan.evaluate.judge import JudgeConfig, run_judge

    cfg = JudgeConfig(models=list(models or []), questions=str(questions), judge=judge, judge_model=judge_model,
                      mode=mode, answers=[str(a) for a in answers or []],  # type: ignore[arg-type]
                      prompts=str(prompts) if prompts else None, baseline=baseline, limit=limit,
                      first_turn_only=first_turn_only, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
                      api_key=api_key)
    with _library_chatter_to_stderr():
        result = run_judge(cfg)
    if json_output:
        _print_json(result.summary())
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
    from kaiyuan.evaluate.judge import run_battles

    with _library_chatter_to_stderr():
        result = run_battles(list(models), str(prompts), judge, pairs_per_prompt=pairs, seed=seed,
                             max_tokens=max_tokens, judge_max_tokens=judge_max_tokens, judge_model=judge_model,
                             judge_prompts=str(judge_prompts) if judge_prompts else None, api_key=api_key,
                             out=out, store=store)
    summary = result.summary()
    if json_output:
        _print_json(summary)
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
