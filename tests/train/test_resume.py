"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl

ROWS = [{"messages": [{"role": "user", "content": f"Convert March {d}, 19{d + 10}"},
                      {"role": "assistant", "content": f"19{d + 10}-03-{d:02d}"}]} for d in range(1, 17)]


REPO = Path(__file__).resolve().parents[2]


def kaiyuan(home, *args, kill_at_step=None):
    """``kaiyuan ARGS`` in a subprocess; with ``kill_at_step=N`` it SIGKILLs itself when training step N begins
    (:mod:`tests.kill_at_step`)."""
    env = {**os.environ, "KAIYUAN_HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = ["-m", "kaiyuan.cli"] if kill_at_step is None else ["-m", "tests.kill_at_step", str(kill_at_step)]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, env=env)


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    args = ["train", "sft", "--model", "tiny-llama", "--data", str(data), "--max-steps", "6", "--batch-size", "4",
            "--checkpoint-steps", "2", "--learning-rate", "0.01", "--seed", "7", "--logging-steps", "1",
            "--data-license", "CC0-1.0", "--json"]

    whole = kaiyuan(tmp_path / "a", *args)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads(whole.stdout)

    killed = kaiyuan(tmp_path / "b", *args, kill_at_step=3)
    assert killed.returncode == -signal.SIGKILL
    runs = list((tmp_path / "b" / "runs").iterdir())
    assert [sorted(p.name for p in run.glob("checkpoint-*")) for run in runs] == [["checkpoint-2"]]
    assert not any((tmp_path / "b" / "artifacts").glob("adapter-*"))  # nothing half-registered

    resumed = kaiyuan(tmp_path / "b", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-2" in resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["artifact_id"] == expected["artifact_id"]  # same files, same parents → same content hash
    weights = [(tmp_path / home / "artifacts" / expected["artifact_id"] / "adapter_model.safetensors").read_bytes()
               for home in ("a", "b")]
    assert weights[0] == weights[1]
    metrics = [(tmp_path / home / "artifacts" / expected["artifact_id"] / "metrics.jsonl").read_text()
               for home in ("a", "b")]
    assert metrics[0] == metrics[1]
    # the intermediate parameters are part of the artifact (hashed), without optimizer state or pickles
    kept = sorted(p.relative_to(tmp_path / "b" / "artifacts" / expected["artifact_id"]).as_posix()
                  for p in (tmp_path / "b" / "artifacts" / expected["artifact_id"]).glob("checkpoint-*/*"))
    assert [k for k in kept if k.startswith("checkpoint-2/")] == [
        "checkpoint-2/adapter_config.json", "checkpoint-2/adapter_model.safetensors",
        "checkpoint-2/tokenizer_config.json"]
    assert sorted({k.split("/")[0] for k in kept}) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    assert result["metrics"]["checkpoints"] == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]


def test_resume_of_a_finished_run_answers_already_complete_without_training(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    args = ["train", "sft", "--model", "tiny-llama", "--data", str(data), "--max-steps", "6", "--batch-size", "4",
            "--checkpoint-steps", "2", "--learning-rate", "0.01", "--seed", "7", "--logging-steps", "1",
            "--data-license", "CC0-1.0", "--json"]
    home = tmp_path / "home"
    first = kaiyuan(home, *args)
    assert first.returncode == 0, first.stderr
    done = json.loads(first.stdout)
    assert done["metrics"]["steps"] == 6 and not done.get("already_complete")
    run = next((home / "runs").iterdir())
    checkpoints = sorted(p.name for p in run.glob("checkpoint-*"))
    adapters = sorted(p.name for p in (home / "artifacts").glob("adapter-*"))

    again = kaiyuan(home, *args, "--resume")
    assert again.returncode == 0, again.stderr
    assert f"already complete: {done['artifact_id']}" in again.stderr
    result = json.loads(again.stdout)
    assert result["artifact_id"] == done["artifact_id"]
    assert result["already_complete"] is True
    assert result["message"] == f"already complete: {done['artifact_id']}"
    assert result["metrics"]["steps"] == 6
    # nothing trained: no new checkpoint, no new artifact, no step 7 logged anywhere
    assert sorted(p.name for p in run.glob("checkpoint-*")) == checkpoints
    assert sorted(p.name for p in (home / "artifacts").glob("adapter-*")) == adapters == [done["artifact_id"]]
    assert "'loss'" not in again.stderr and "Running training" not in again.stderr

    # the same in human-readable form
    plain = kaiyuan(home, *args[:-1], "--resume")
    assert plain.returncode == 0, plain.stderr
    assert f"already complete: {done['artifact_id']}" in plain.stderr + plain.stdout

    # a run registered without the run directory's completion record (older kaiyuan): found by its options
    (run / "kaiyuan-complete.json").unlink()
    older = kaiyuan(home, *args, "--resume")
    assert older.returncode == 0, older.stderr
    assert json.loads(older.stdout)["already_complete"] is True
    assert f"already complete: {done['artifact_id']}" in older.stderr

    # finished training but never registered (e.g. killed while registering): the final checkpoint is the
    # result — registered as the same artifact, without a step past max_steps
    other = tmp_path / "other"
    shutil.copytree(home / "runs", other / "runs")
    unregistered = kaiyuan(other, *args, "--resume")
    assert unregistered.returncode == 0, unregistered.stderr
    assert "nothing left to train" in unregistered.stderr and "'loss'" not in unregistered.stderr
    registered = json.loads(unregistered.stdout)
    assert registered["artifact_id"] == done["artifact_id"] and registered["already_complete"] is False
    assert registered["metrics"]["steps"] == 6
    assert sorted(p.name for p in (other / "runs" / run.name).glob("checkpoint-*")) == checkpoints
    assert ((other / "artifacts" / done["artifact_id"] / "metrics.jsonl").read_text()
            == (home / "artifacts" / done["artifact_id"] / "metrics.jsonl").read_text())


def test_resume_passes_over_a_checkpoint_a_crash_cut_short(tmp_path, capsys):
    from kaiyuan.train.common import last_complete_checkpoint

    for step, state in ((2, '{"global_step": 2}'), (4, '{"global_step": 4}'), (6, '{"global_st')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-8").mkdir()  # killed before trainer_state.json was written
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-4")
    err = capsys.readouterr().err
    assert "checkpoint-8: an incomplete checkpoint (no readable trainer_state.json): passed over" in err
    assert "checkpoint-6: an incomplete checkpoint" in err


def test_a_damaged_dataset_is_refused_before_training(home):
    from kaiyuan.data.datasets import DATA_FILE, dataset_records, register_dataset
    from kaiyuan.errors import KaiyuanError

    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    artifact = register_dataset(rows, "tiny-data", "CC0-1.0", "test")
    assert len(dataset_records(artifact)) == 1
    path = artifact.path / DATA_FILE
    path.write_text(path.read_text().replace('"b"', '"c"'))
    with pytest.raises(KaiyuanError, match=rf"artifact {artifact.id}: file {DATA_FILE} does not match its manifest"):
        dataset_records(artifact)
