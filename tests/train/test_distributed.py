"""2-process DDP SFT on CPU (torchrun, gloo) matches the 1-process run with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.conftest import write_jsonl

ROWS = [{"messages": [{"role": "user", "content": f"Convert May {d}, 19{d + 20}"},
                      {"role": "assistant", "content": f"19{d + 20}-05-{d:02d}"}]} for d in range(1, 17)]


def train(home, data, *extra):
    env = {**os.environ, "KAIYUAN_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "train", "sft", "--model", "tiny-llama", "--data",
                           str(data), "--max-steps", "3", "--learning-rate", "0.01", "--logging-steps", "1",
                           "--seed", "5", "--data-license", "CC0-1.0", "--json", *extra],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    path = home / "artifacts" / summary["artifact_id"]
    losses = [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]
    return summary, losses, load_file(path / "adapter_model.safetensors")


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    data = write_jsonl(tmp_path / "train.jsonl", ROWS)
    one, one_losses, one_weights = train(tmp_path / "one", data, "--batch-size", "4")
    two, two_losses, two_weights = train(tmp_path / "two", data, "--batch-size", "2", "--nproc", "2")
    assert two["metrics"]["steps"] == one["metrics"]["steps"] == 3
    assert two_losses == pytest.approx(one_losses, rel=1e-4)
    assert one_weights.keys() == two_weights.keys()
    for name, tensor in one_weights.items():
        assert (tensor - two_weights[name]).abs().max().item() < 1e-5, name
