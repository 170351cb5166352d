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
from kaiyuan.hub.registry import Registry
from kaiyuan.models import create_tiny_llama
from kaiyuan.pipeline.reproduce import (
    CANNOT,
    DIFFERS,
    IDENTICAL,
    INPUT,
    MERGE_COMMAND,
    recipe_of,
    remake_merge,
    remake_synthetic,
    remake_tiny,
    remake_trained,
    remake_unknown_stage,
    reproduce,
)
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
    assert [a.manifest["stage"] for a in (data["train"], adapter, merged)] == ["synthetic", "sft", "merge"]

    runs_before = sorted(p.name for p in (home / "runs").iterdir())
    report = reproduce(merged.id, home=tmp_path / "again")
    assert [(a.id, a.status, a.reproduced_id, a.differences) for a in report.artifacts] == [
        (i, IDENTICAL, i, []) for i in lineage]
    # the re-run trained in the fresh home: its run folder is there, and the original home's runs are untouched
    assert sorted(p.name for p in (home / "runs").iterdir()) == runs_before
    assert [p.name[:4] for p in (tmp_path / "again" / "runs").iterdir()] == ["sft-"]
    assert [a.how for a in report.artifacts] == ["kaiyuan models create-tiny", "kaiyuan data synthetic",
                                                 "kaiyuan train sft", "kaiyuan export --to merged"]
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


class RecordingEnviron(dict):
    """os.environ, recording every write."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append(("set", key))
        super().__setitem__(key, value)

    def __delitem__(self, key):
        self.writes.append(("del", key))
        super().__delitem__(key)

    def pop(self, key, *default):
        self.writes.append(("pop", key))
        return super().pop(key, *default)

    def setdefault(self, key, default=None):
        if key not in self:
            self.writes.append(("setdefault", key))
        return super().setdefault(key, default)

    def update(self, *args, **kwargs):
        self.writes.append(("update", tuple(dict(*args, **kwargs))))
        super().update(*args, **kwargs)

    def clear(self):
        self.writes.append(("clear", None))
        super().clear()


def test_reproduce_leaves_kaiyuan_home_in_the_environment_alone(home, tmp_path, monkeypatch):
    tiny = create_tiny_llama()
    data = run_synthetic(SyntheticConfig(n_train=4, n_heldout=2, seed=2))
    made = register_dataset([{"text": "x"}], "made", "CC0-1.0", "a script", parents_of=[tiny.id])
    before = sorted(a.id for a in Registry().list())
    environ = RecordingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", environ)

    synthetic = reproduce(data["train"].id, home=tmp_path / "a")
    lineage = reproduce(made.id, home=tmp_path / "b")
    in_temp = reproduce(tiny.id)

    assert [w for w in environ.writes if "KAIYUAN_HOME" in str(w)] == []
    assert os.environ["KAIYUAN_HOME"] == str(home)
    assert [(a.id, a.status) for a in synthetic.artifacts] == [(data["train"].id, IDENTICAL)]
    assert [(a.id, a.status) for a in lineage.artifacts] == [(tiny.id, IDENTICAL), (made.id, CANNOT)]
    assert [(a.id, a.status) for a in in_temp.artifacts] == [(tiny.id, IDENTICAL)]
    assert (tmp_path / "a" / "artifacts" / data["train"].id / "data.jsonl").is_file()
    assert sorted(a.id for a in Registry(tmp_path / "b").list()) == sorted([tiny.id, made.id])
    assert sorted(a.id for a in Registry().list()) == before  # nothing re-made into the original home
    assert sorted(p.name for p in (home / "artifacts").iterdir()) == before


def test_recipe_of_looks_the_manifest_stage_up_in_the_stage_table():
    assert recipe_of({"stage": "sft", "source": "not what it says", "config": {}}) == (
        "kaiyuan train sft", remake_trained)
    assert recipe_of({"stage": "dpo", "source": "kaiyuan.tiny (random weights)"}) == (
        "kaiyuan train dpo", remake_trained)
    assert recipe_of({"stage": "synthetic", "source": "x"}) == ("kaiyuan data synthetic", remake_synthetic)
    assert recipe_of({"stage": "create_tiny", "source": "x"}) == ("kaiyuan models create-tiny", remake_tiny)
    assert recipe_of({"stage": "merge", "source": "x"}) == (MERGE_COMMAND, remake_merge)
    assert MERGE_COMMAND == "kaiyuan export --to merged"
    assert recipe_of({"stage": "eval", "source": "kaiyuan train sft", "config": {"stage": "sft"}}) == (
        "kaiyuan eval --data", None)
    assert recipe_of({"stage": "export", "source": "x"}) == ("kaiyuan export", None)
    assert recipe_of({"stage": "no-such-stage", "source": "x"})[1] is remake_unknown_stage
    # manifests from before the field: their source
    assert recipe_of({"source": "kaiyuan train sft", "config": {"stage": "sft"}}) == (
        "kaiyuan train sft", remake_trained)
    assert recipe_of({"source": "kaiyuan.data.synthetic:dates"}) == ("kaiyuan data synthetic", remake_synthetic)
    assert recipe_of({"source": "kaiyuan merge (peft merge_and_unload)", "config": {"stage": "merge"}}) == (
        MERGE_COMMAND, remake_merge)
    assert recipe_of({"source": "a script of mine", "stage": None}) == ("source 'a script of mine'", None)
