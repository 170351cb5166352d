"""The `kaiyuan` command line: JSON output, YAML configs, and clear errors with exit code 2."""

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from kaiyuan.cli import app
from tests.conftest import write_jsonl

ROWS = [{"messages": [{"role": "user", "content": f"Convert March {d}, 1999"},
                      {"role": "assistant", "content": f"1999-03-{d:02d}"}]} for d in range(1, 9)]


def kaiyuan(*args, home):
    """Run the real console entry point in a subprocess (as a user would)."""
    env = {**os.environ, "KAIYUAN_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "kaiyuan.cli", *args], capture_output=True, text=True, env=env)


def test_create_tiny_list_and_show_json(home):
    runner = CliRunner()
    created = json.loads(runner.invoke(app, ["models", "create-tiny", "--json"]).stdout)
    assert created["name"] == "tiny-llama" and created["kind"] == "model"
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert [a["id"] for a in listed] == [created["id"]]
    shown = json.loads(runner.invoke(app, ["models", "show", "tiny-llama", "--json"]).stdout)
    assert shown["id"] == created["id"] and shown["lineage"] == []
    assert shown["manifest"]["config"] == {"template": "chatml", "hidden_size": 64, "num_layers": 2}


def test_sft_from_yaml_config_then_eval(home, tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    config = tmp_path / "sft.yaml"
    config.write_text(f"model: tiny-llama\ndata: {data}\nmax_steps: 2\nbatch_size: 4\nseed: 1\n"
                      "data_license: CC0-1.0\nname: yaml-run\n")
    runner = CliRunner()
    result = runner.invoke(app, ["train", "sft", "--config", str(config), "--learning-rate", "0.01", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "adapter" and summary["metrics"]["steps"] == 2
    shown = json.loads(runner.invoke(app, ["models", "show", summary["artifact_id"], "--json"]).stdout)
    assert shown["name"] == "yaml-run" and shown["manifest"]["config"]["learning_rate"] == 0.01
    assert [(n["kind"], n["relation"], n["license"]) for n in shown["lineage"]] == [
        ("model", "adapter", "Apache-2.0"), ("dataset", "dataset", "CC0-1.0")]

    evaluated = runner.invoke(app, ["eval", summary["artifact_id"], "--data", str(data), "--limit", "3",
                                    "--answer-pattern", r"\d{4}-\d{2}-\d{2}", "--max-new-tokens", "4", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    assert report["n"] == 3 and report["model_id"] == summary["artifact_id"]


def test_bad_config_key_and_type_exit_2_before_any_work(home, tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text("model: tiny-llama\ndata: x.jsonl\nlearning_rat: 0.1\n")
    done = kaiyuan("train", "sft", "--config", str(config), home=home)
    assert done.returncode == 2
    assert f"error: {config}: unknown key(s) learning_rat; expected model, data," in done.stderr
    config.write_text("model: tiny-llama\ndata: x.jsonl\nmax_steps: many\n")
    done = kaiyuan("train", "sft", "--config", str(config), home=home)
    assert done.returncode == 2
    assert f"error: {config}: max_steps: expected <class 'int'>, got 'many'" in done.stderr
    assert not (home / "artifacts").exists() or not any((home / "artifacts").iterdir())


def test_convert_and_register(home, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "human", "value": "Hi"}]}])
    out = tmp_path / "out.jsonl"
    done = kaiyuan("data", "convert", str(source), str(out), "--skip-invalid", "--register", "greetings",
                   "--license", "CC-BY-4.0", "--json", home=home)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["records"] == 1 and report["skipped"] == 1 and report["dataset_id"].startswith("dataset-")
    assert json.loads(out.read_text()) == {"messages": [{"role": "user", "content": "Hi"},
                                                        {"role": "assistant", "content": "Hello"}]}
    assert (tmp_path / "in.jsonl.rejected.jsonl").is_file()
