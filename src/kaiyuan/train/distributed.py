"""Distributed training on existing engines: ``--nproc N`` launches the stage under torchrun (DDP; gloo on
CPU, nccl on GPU); ``--deepspeed zero2|zero3`` hands the optimizer state to DeepSpeed ZeRO.

The launching process resolves the model and data first (registering whatever is new), so the workers only
read the registry; rank 0 registers the result and prints the JSON summary the launcher returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError

DEEPSPEED_STAGES = {"zero2": 2, "zero3": 3}


def is_worker() -> bool:
    return "LOCAL_RANK" in os.environ


def deepspeed_config(name: str | None) -> dict[str, Any] | None:
    """A ZeRO config for TrainingArguments(deepspeed=...), with batch sizes left to the Trainer."""
    if not name:
        return None
    if name not in DEEPSPEED_STAGES:
        raise KaiyuanError(f"deepspeed: expected one of {', '.join(DEEPSPEED_STAGES)}, got {name!r}")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise KaiyuanError("--deepspeed needs the deepspeed package: pip install deepspeed")
    return {"zero_optimization": {"stage": DEEPSPEED_STAGES[name]}, "train_batch_size": "auto",
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "gradient_clipping": "auto"}


def launch(cfg: Any, stage: str) -> dict[str, Any]:
    """Run ``kaiyuan train STAGE`` in ``cfg.nproc`` torchrun workers and return rank 0's summary."""
    from kaiyuan.models import resolve_model
    from kaiyuan.train.common import resolve_dataset

    resolved = replace(cfg, model=resolve_model(cfg.model).id,
                       data=resolve_dataset(cfg.data, license=cfg.data_license).id)
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / f"{stage}.json"
        config_file.write_text(json.dumps(asdict(resolved)))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
                   "-m", "kaiyuan.cli", "train", stage, "--config", str(config_file), "--json"]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise KaiyuanError(f"the distributed {stage} run failed (torchrun exit code {done.returncode}); "
                           "see the workers' output above")
    return json.loads(done.stdout[done.stdout.index("{"):])
