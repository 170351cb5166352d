"""DeepSpeed ZeRO-2 / ZeRO-3 SFT on CPU (torchrun, gloo, DeepSpeed's CPU accelerator) matches the 2-process DDP
run with the same global batch.

Tolerances: weights within 1e-5, as for DDP against one process (tests/train/test_distributed.py); losses within a
relative 1e-5. Both runs see the same 2 × 2 examples per step and average the same gradients; only the order of
fp32 reductions differs (ZeRO reduce-scatters gradient buckets and computes the clipping norm per partition). Measured
after 3 AdamW steps: ZeRO-2 bit-identical to DDP (same artifact id), ZeRO-3 5.5e-6, ZeRO-2 in one process 6.3e-6 (as
plain 1 process vs DDP), with equal losses to 1e-7 — while one step at this learning rate moves weights by ~1e-2.

The first DeepSpeed run on a machine JIT-compiles its CPU communication op (deepspeed_shm_comm: 2-4 minutes on 2
busy cores; cached after in ~/.cache/torch_extensions or $TORCH_EXTENSIONS_DIR), hence the generous subprocess
timeout; warm, this file takes about 2.5 minutes.
"""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.conftest import write_jsonl
from tests.train.test_distributed import ROWS

pytest.importorskip("deepspeed", reason="--deepspeed needs the deepspeed package (pip install deepspeed)")

ARGS = ["--max-steps", "3", "--learning-rate", "0.01", "--logging-steps", "1", "--seed", "5", "--data-license",
        "CC0-1.0", "--checkpoint-steps", "2", "--json"]


def kaiyuan(home, data, *extra, timeout=900):
    env = {**os.environ, "KAIYUAN_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "kaiyuan.cli", "train", "sft", "--model", "tiny-llama", "--data",
                           str(data), *ARGS, *extra], capture_output=True, text=True, env=env, timeout=timeout)


def train(home, data, *extra):
    done = kaiyuan(home, data, *extra)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    path = home / "artifacts" / summary["artifact_id"]
    losses = [json.loads(line)["loss"] for line in (path / "metrics.jsonl").read_text().splitlines()]
    return summary, losses, load_file(path / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("deepspeed-data") / "train.jsonl", ROWS)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, data):
    return train(tmp_path_factory.mktemp("ddp"), data, "--batch-size", "2", "--nproc", "2")


def assert_matches(run, reference):
    (summary, losses, weights), (ref_summary, ref_losses, ref_weights) = run, reference
    assert summary["metrics"]["steps"] == ref_summary["metrics"]["steps"] == 3
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    assert weights.keys() == ref_weights.keys()
    for name, tensor in ref_weights.items():
        assert (tensor - weights[name]).abs().max().item() < 1e-5, name


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_process_zero_matches_ddp_with_the_same_global_batch(tmp_path, data, ddp, stage):
    home = tmp_path / stage
    run = train(home, data, "--batch-size", "2", "--nproc", "2", "--deepspeed", stage)
    assert_matches(run, ddp)
    summary = run[0]
    assert summary["metrics"]["deepspeed_zero_stage"] == int(stage[-1])
    assert summary["metrics"]["processes"] == 2
    assert summary["metrics"]["checkpoints"] == ["checkpoint-2", "checkpoint-3"]  # DeepSpeed checkpoints too
    kept = home / "artifacts" / summary["artifact_id"] / "checkpoint-2"
    assert sorted(p.name for p in kept.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"]  # no optimizer shards

    if stage == "zero3":
        return
    # resuming the finished run starts no workers: the registered result, as is
    again = kaiyuan(home, data, "--batch-size", "2", "--nproc", "2", "--deepspeed", stage, "--resume", timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    answer = json.loads(again.stdout[again.stdout.index("{"):])
    assert answer["already_complete"] is True and answer["artifact_id"] == summary["artifact_id"]
    assert "torch.distributed" not in again.stderr and "'loss'" not in again.stderr


def test_zero2_in_one_process_matches_ddp(tmp_path, data, ddp):
    """Without --nproc, DeepSpeed gets a rendezvous of one (it would otherwise look for MPI)."""
    run = train(tmp_path / "one", data, "--batch-size", "4", "--deepspeed", "zero2")
    assert_matches(run, ddp)
    assert run[0]["metrics"]["deepspeed_zero_stage"] == 2 and "processes" not in run[0]["metrics"]


def test_an_unknown_zero_stage_fails_before_any_worker_starts(tmp_path, data):
    done = kaiyuan(tmp_path / "bad", data, "--nproc", "2", "--deepspeed", "zero1", timeout=300)
    assert done.returncode != 0
    assert "deepspeed: expected one of zero2, zero3, got 'zero1'" in done.stderr + done.stdout
    assert "torch.distributed" not in done.stderr
