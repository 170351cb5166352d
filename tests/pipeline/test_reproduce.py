"""`kaiyuan reproduce`: the recorded pipeline, re-run in a fresh home, gives byte-identical artifacts."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kaiyuan.cli import app
from kaiyuan.data.datasets import register_dataset, resolve_dataset
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.errors import KaiyuanError
from kaiyuan.pipeline.reproduce import CANNOT, DIFFERS, IDENTICAL, INPUT, reproduce
from kaiyuan.train.sft import SFTConfig, run_sft
from tests.conftest import write_jsonl


def test_tiny_pipeline_reproduces_identically_and_a_tampered_file_is_named(home, tmp_path):
    runner = CliRunner()
    created = runner.invoke(app, ["models", "create-tiny", "--json"])
    assert created.exit_code == 0, created.output
    tiny = json.loads(created.stdout)
    data = run_synthetic(SyntheticConfig(n_train=8, n_heldout=2, seed=1))
    trained = run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=2, batch_size=4, learning_rate=1e-2,
                                logging_steps=1, merge=True, seed=3))
    adapter, merged = trained.artifact, trained.merged
    lineage = [tiny["id"], data["train"].id, adapter.id, merged.id]

    report = reproduce(merged.id, home=tmp_path / "again")
    assert [(a.id, a.status, a.reproduced_id, a.differences) for a in report.artifacts] == [
        (i, IDENTICAL, i, []) for i in lineage]
    assert [a.how for a in report.artifacts] == ["kaiyuan models create-tiny", "kaiyuan data synthetic",
                                                 "kaiyuan train sft", "kaiyuan merge"]
    assert report.ok and os.environ["KAIYUAN_HOME"] == str(home)
    again = tmp_path / "again" / "artifacts" / merged.id / "model.safetensors"
    assert again.read_bytes() == (merged.path / "model.safetensors").read_bytes()

    with pytest.raises(KaiyuanError, match="not an empty directory"):
        reproduce(merged.id, home=tmp_path / "again")

    with open(adapter.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"step": 99, "loss": 0.0}\n')
    result = runner.invoke(app, ["reproduce", "tiny-llama-sft-lora-merged", "--json"])
    assert result.exit_code == 1, result.output
    checked = json.loads(result.stdout)
    assert checked["ok"] is False and checked["home"] is None
    assert {a["id"]: a["status"] for a in checked["artifacts"]} == {
        tiny["id"]: IDENTICAL, data["train"].id: IDENTICAL, adapter.id: DIFFERS, merged.id: IDENTICAL}
    [difference] = checked["artifacts"][2]["differences"]
    assert difference["path"] == "metrics.jsonl"
    assert difference["problem"] == "original changed since it was registered"
    assert difference["recorded"] == difference["reproduced"] == adapter.manifest["files"]["metrics.jsonl"]


def test_inputs_are_copied_and_missing_fields_are_named(home, tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"messages": [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "hello"}]}])
    imported = resolve_dataset(str(path), license="CC0-1.0")
    answers = register_dataset([{"text": "an answer"}], "answers", "CC0-1.0", "a script of mine",
                               parents_of=[imported.id])
    unseeded = register_dataset([{"text": "2020-01-01"}], "dates-train", "CC0-1.0", "kaiyuan.data.synthetic:dates",
                                {"task": "dates"})

    report = reproduce(answers.id, home=tmp_path / "a")
    assert [(a.id, a.status, a.how) for a in report.artifacts] == [
        (imported.id, INPUT, "input: copied, sha256 verified"),
        (answers.id, CANNOT, "source 'a script of mine'; copied, sha256 verified")]
    assert report.artifacts[1].reason == "no kaiyuan stage re-makes source 'a script of mine'"
    assert (tmp_path / "a" / "artifacts" / imported.id / "data.jsonl").read_bytes() == path.read_bytes()

    [missing] = reproduce(unseeded.id, home=tmp_path / "b").artifacts
    assert missing.status == CANNOT
    assert missing.missing == ["config.n_train", "config.n_heldout", "config.split", "seed"]
    assert missing.reason == "the manifest does not record config.n_train, config.n_heldout, config.split, seed"

    (imported.path / "data.jsonl").write_text("changed\n", encoding="utf-8")
    [changed] = reproduce(imported.id).artifacts
    assert changed.status == DIFFERS and [d.path for d in changed.differences] == ["data.jsonl"]
    assert changed.reason == "its files no longer match its manifest: not copied"

    env = {**os.environ, "KAIYUAN_HOME": str(home), "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "reproduce", unseeded.id], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 1, done.stderr
    assert "cannot reproduce" in done.stdout and "missing: config.n_train, config.n_heldout" in done.stdout
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "reproduce", "no-such-model"], capture_output=True,
                          text=True, env=env)
    assert done.returncode == 2 and "error: no artifact 'no-such-model' in the registry" in done.stderr
