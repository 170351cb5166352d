"""eval, judge, arena battle, arena ratings and export take their flags from config classes, spelt as before."""

from __future__ import annotations

import dataclasses

import pytest
import typer

from kaiyuan.cli import app
from tests.conftest import run_cli, write_jsonl

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
    assert (code, out, err) == (2, "", "error: judge: missing required key(s) questions, judge\n")


def test_ratings_with_a_yaml_config(home, tmp_path, monkeypatch, capsys):
    config = tmp_path / "ratings.yaml"
    config.write_text("rounds: 0\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "arena", "ratings", "--config", config)
    assert (code, out, err) == (2, "", "error: --rounds: expected at least 1, got 0\n")


def test_export_keeps_its_own_error_for_an_unknown_target(home, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "export", "tiny-llama", "--to", "onnx")
    assert (code, out, err) == (2, "", "error: unknown export target 'onnx': choose merged, gguf or ollama\n")


def _leaf_commands(typer_app):
    """Every command of ``typer_app`` under its full name (``"models rm"``), groups walked through."""
    found = {}

    def walk(command, path, parent):
        if hasattr(command, "list_commands"):  # a group: the root, models, data, train, arena, …
            ctx = typer.Context(command, parent=parent, info_name=path[-1] if path else "kaiyuan")
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name], ctx)
        else:
            found[" ".join(path)] = command

    walk(typer.main.get_command(typer_app), [], None)
    return found


def _not_from_a_config(typer_app):
    return sorted(name for name, command in _leaf_commands(typer_app).items()
                  if not {"--config", "--print-config"} <= {o for p in command.params for o in p.opts})


def test_every_command_takes_its_options_from_a_config_class():
    commands = _leaf_commands(app)
    assert {"data validate", "data convert", "run", "chat", "models list", "models rm", "license", "verify",
            "serve", "eval", "arena ratings", "train sft"} <= set(commands)
    assert _not_from_a_config(app) == []


def test_a_hand_written_command_is_caught():
    from kaiyuan.cli.from_config import command_from_config

    probe = typer.Typer()
    group = typer.Typer()

    @group.command("by-hand")
    def by_hand(name: str = typer.Option("x", help="Written by hand.")) -> None:
        """Not built from a config class."""

    @dataclasses.dataclass
    class Probe:
        name: str = dataclasses.field(default="x", metadata={"help": "From a config class."})

    command_from_config(group, "from-config", Probe, lambda cfg, json_output: None, help="Built from Probe.")
    probe.add_typer(group, name="group")
    assert _not_from_a_config(probe) == ["group by-hand"]


def test_converted_commands_keep_their_flag_spellings():
    assert _flags(_command("data", "validate"))["format"] == (("--format", "-f"), ())
    assert _flags(_command("data", "validate"))["file"] == (("file",), ())
    assert _flags(_command("data", "validate"))["skip_invalid"] == (("--skip-invalid",), ("--no-skip-invalid",))
    convert = _flags(_command("data", "convert"))
    assert (convert["file"], convert["output"]) == ((("file",), ()), (("output",), ()))
    assert (convert["source_format"], convert["target_format"]) == ((("--from",), ()), (("--to",), ()))
    assert (convert["register"], convert["license"]) == ((("--register",), ()), (("--license",), ()))
    run = _flags(_command("run"))
    assert (run["recipe"], run["check"], run["cache"]) == ((("recipe",), ()), (("--check",), ()),
                                                           (("--cache",), ("--no-cache",)))
    chat = _flags(_command("chat"))
    assert chat["model"] == (("model",), ())
    assert {chat[n][0][0] for n in ("system", "max_tokens", "temperature", "top_p", "seed", "engine")} == {
        "--system", "--max-tokens", "--temperature", "--top-p", "--seed", "--engine"}
    assert _flags(_command("models", "list"))["kind"] == (("--kind",), ())
    assert _flags(_command("models", "show"))["ref"] == (("ref",), ())
    assert _flags(_command("models", "create-tiny"))["template"] == (("--template",), ())
    assert _command("models", "rm").params[0].nargs == -1
    assert _flags(_command("models", "rm"))["force"] == (("--force",), ())
    assert _flags(_command("models", "gc"))["dry_run"] == (("--dry-run",), ())
    assert _flags(_command("license"))["verbose"] == (("--verbose", "-v"), ())
    assert _flags(_command("card"))["out"] == (("--out",), ())
    assert _flags(_command("reproduce"))["home"] == (("--home",), ())
    assert _flags(_command("verify"))["repair"] == (("--repair",), ())
    assert all(_flags(c)["json_output"] == (("--json",), ()) for c in _leaf_commands(app).values() if c.params
               and any(p.name == "json_output" for p in c.params))


def test_data_validate_reads_a_yaml_config_and_keeps_its_exit_code(home, tmp_path, monkeypatch, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"instruction": "hi", "output": "hello"}\n{"nope": 1}\n', encoding="utf-8")
    config = tmp_path / "validate.yaml"
    config.write_text("format: alpaca\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "data", "validate", data, "--config", config, "--json")
    assert code == 2
    assert '"format": "alpaca"' in out and '"invalid": 1' in out
    code, out, _ = run_cli(monkeypatch, capsys, "data", "validate", data, "-f", "alpaca", "--print-config")
    keys = [line for line in out.splitlines() if not line.startswith("#")]
    assert (code, keys) == (0, [f"file: {data}", "format: alpaca", "skip_invalid: false", "rejects: null"])


def test_a_config_file_can_give_the_positional_arguments_too(home, tmp_path, monkeypatch, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                            {"role": "assistant", "content": "hello"}]}])
    config = tmp_path / "validate.yaml"
    config.write_text(f"file: {data}\n", encoding="utf-8")
    assert run_cli(monkeypatch, capsys, "data", "validate", "--config", config) == (
        0, f"{data}: 1 valid messages records, 0 invalid\n", "")
    missing = "error: validate: missing required key(s) file\n"
    assert run_cli(monkeypatch, capsys, "data", "validate") == (2, "", missing)
