"""Distributed training on existing engines: ``--nproc N`` launches the stage under torchrun (DDP; gloo on
CPU, nccl on GPU); ``--deepspeed zero2|zero3`` hands the optimizer state to DeepSpeed ZeRO.

The launcher (:mod:`kaiyuan.train.launch`) resolves the model and data first (registering whatever is new), so the
workers only read the registry; rank 0 registers the result and prints the JSON summary the launcher returns.
"""

from __future__ import annotations

import os
from typing import Any

from kaiyuan.errors import KaiyuanError

DEEPSPEED_STAGES = {"zero2": 2, "zero3": 3}


def is_worker() -> bool:
    return "LOCAL_RANK" in os.environ


def is_main_process() -> bool:
    """Rank 0 of a distributed run, or a run of one process."""
    return int(os.environ.get("RANK", "0")) == 0


def deepspeed_config(name: str | None) -> dict[str, Any] | None:
    """A ZeRO config for TrainingArguments(deepspeed=...), with batch sizes, clipping and the optimizer left to
    the Trainer (its AdamW and schedule, as without DeepSpeed). ZeRO-3 gathers the sharded weights when the
    model is saved, so artifacts hold ordinary safetensors."""
    if not name:
        return None
    if name not in DEEPSPEED_STAGES:
        raise KaiyuanError(f"deepspeed: expected one of {', '.join(DEEPSPEED_STAGES)}, got {name!r}")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise KaiyuanError("--deepspeed needs the deepspeed package: pip install deepspeed")
    zero: dict[str, Any] = {"stage": DEEPSPEED_STAGES[name]}
    if zero["stage"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"zero_optimization": zero, "train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto"}


def is_zero3(trainer: Any) -> bool:
    """Whether the trainer runs DeepSpeed ZeRO-3 (weights sharded across the processes)."""
    plugin = getattr(getattr(trainer, "accelerator", None), "state", None)
    plugin = getattr(plugin, "deepspeed_plugin", None)
    return bool(getattr(trainer, "is_deepspeed_enabled", False) and plugin is not None and plugin.zero_stage == 3)


def deepspeed_environment(cpu: bool) -> dict[str, str]:
    """Environment DeepSpeed needs here: its CPU accelerator on a machine without CUDA (it would guess, with a
    warning), and a rendezvous of one when not launched by torchrun (else it looks for MPI)."""
    env = {"DS_ACCELERATOR": "cpu"} if cpu else {}
    if "WORLD_SIZE" not in os.environ:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port))
    return env


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
