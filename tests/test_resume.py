"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys

from .conftest import write_jsonl

ROWS = [{"messages": [{"role": "user", "content": f"Convert March {d}, 19{d + 10}"},
                      {"role": "assistant", "content": f"19{d + 10}-03-{d:02d}"}]} for d in range(1, 17)]


def kaiyuan(home, *args):
    env = {**os.environ, "KAIYUAN_HOME": str(home)}
    kill_at = env.pop("KAIYUAN_KILL_AT_STEP_FOR_TEST", None)
    if kill_at:
        env["KAIYUAN_KILL_AT_STEP"] = kill_at
    return subprocess.run([sys.executable, "-m", "kaiyuan.cli", *args], capture_output=True, text=True, env=env)


def test_sigkill_then_resume_is_bit_identical(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    args = ["train", "sft", "--model", "tiny-llama", "--data", str(data), "--max-steps", "6", "--batch-size", "4",
            "--checkpoint-steps", "2", "--learning-rate", "0.01", "--seed", "7", "--logging-steps", "1",
            "--data-license", "CC0-1.0", "--json"]

    whole = kaiyuan(tmp_path / "a", *args)
    assert whole.returncode == 0, whole.stderr
    expected = json.loads(whole.stdout)

    monkeypatch.setenv("KAIYUAN_KILL_AT_STEP_FOR_TEST", "3")
    killed = kaiyuan(tmp_path / "b", *args)
    monkeypatch.delenv("KAIYUAN_KILL_AT_STEP_FOR_TEST")
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
