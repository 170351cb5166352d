"""eval, judge, arena battle, arena ratings and export take their flags from config classes, spelt as before."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from kaiyuan.cli import app
from tests.conftest import run_cli

BUILT_IN = {"config", "json_output", "print_config", "help"}


def _command(*path):
    group = typer.main.get_command(app)
    for name in path:
        group = group.commands[name]
    return group


def _flags(command):
    return {p.name: (tuple(p.opts), tuple(p.secondary_opts)) for p in command.params}


def _config_classes():
    from kaiyuan.cli.export import ExportOptions
    from kaiyuan.evaluate.config import EvalConfig, RatingsConfig
    from kaiyuan.evaluate.judge import BattleConfig, JudgeConfig

    return [(("eval",), EvalConfig), (("judge",), JudgeConfig), (("arena", "battle"), BattleConfig),
            (("arena", "ratings"), RatingsConfig), (("export",), ExportOptions)]


@pytest.mark.parametrize("path,cls", _config_classes(), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_option_is_a_field_of_the_config_with_its_help(path, cls):
    command = _command(*path)
    params = {p.name: p for p in command.params if p.name not in BUILT_IN}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(params) == set(fields)
    for name, param in params.items():
        assert param.help.replace("\\[", "[").startswith(fields[name].metadata["help"]), name


def test_flag_spellings_stay():
    assert _flags(_command("eval"))["cache"] == (("--cache",), ("--no-cache",))
    assert _flags(_command("eval"))["models"] == (("models",), ())
    assert _flags(_command("eval"))["max_new_tokens"] == (("--max-new-tokens",), ())
    assert _flags(_command("judge"))["first_turn_only"] == (("--first-turn-only",), ("--no-first-turn-only",))
    assert _flags(_command("judge"))["answers"] == (("--answers",), ())
    assert _flags(_command("arena", "battle"))["pairs"] == (("--pairs", "--rounds"), ())
    assert _flags(_command("arena", "battle"))["store"] == (("--store",), ("--no-store",))
    assert _flags(_command("arena", "ratings"))["battles"] == (("--battles",), ())
    export = _flags(_command("export"))
    assert export["model"] == (("model",), ())
    assert export["to"] == (("--to",), ())
    assert export["allow_mismatch"] == (("--allow-mismatch",), ())


def test_eval_config_builds_one_benchmark_config_per_model():
    from kaiyuan.evaluate.config import EvalConfig, benchmark_configs, exact_match_configs

    cfg = EvalConfig(models=["tiny-llama", "runs/m1"], task="mmlu", data_dir="mmlu", predictions="out/p.jsonl",
                     shots=0, limit=2, cache=False)
    built = benchmark_configs(cfg)
    assert [(b.model, b.predictions, b.max_new_tokens, b.cache, b.shots, b.limit) for b in built] == [
        ("tiny-llama", "out/p-tiny-llama.jsonl", 256, False, 0, 2), ("runs/m1", "out/p-m1.jsonl", 256, False, 0, 2)]
    one = exact_match_configs(EvalConfig(models=["tiny-llama"], data="held.jsonl", answer_pattern=r"\d+"))
    assert [(e.model, e.data, e.answer_pattern, e.max_new_tokens) for e in one] == [
        ("tiny-llama", "held.jsonl", r"\d+", 32)]


def test_eval_needs_a_task_or_data(home, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "eval", "tiny-llama")
    assert (code, out, err) == (2, "", "error: give either --task (a benchmark) or --data (held-out conversations)\n")


def test_judge_without_questions_names_the_missing_keys(home, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "judge", "tiny-llama")
    assert (code, out, err) == (2, "", "error: options: missing required key(s) questions, judge\n")


def test_ratings_with_a_yaml_config(home, tmp_path, monkeypatch, capsys):
    config = tmp_path / "ratings.yaml"
    config.write_text("rounds: 0\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "arena", "ratings", "--config", config)
    assert (code, out, err) == (2, "", "error: --rounds: expected at least 1, got 0\n")


def test_export_keeps_its_own_error_for_an_unknown_target(home, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "export", "tiny-llama", "--to", "onnx")
    assert (code, out, err) == (2, "", "error: unknown export target 'onnx': choose merged, gguf or ollama\n")
