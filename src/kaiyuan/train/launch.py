"""``--nproc N``: run ``kaiyuan train STAGE`` in N torchrun workers (see :mod:`kaiyuan.train.distributed`).

The launching process resolves the model and data first (registering whatever is new), so the workers only
read the registry; rank 0 registers the result and prints the JSON summary returned here.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404: argv lists, never a shell
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from kaiyuan.data.datasets import resolve_dataset
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.models import resolve_model
from kaiyuan.train.common import finished_run
from kaiyuan.train.distributed import deepspeed_config, is_worker, torch_cuda

__all__ = ["is_worker", "launch"]


def launch(cfg: Any, stage: str, registry: Registry | None = None) -> dict[str, Any]:
    """Run ``kaiyuan train STAGE`` in ``cfg.nproc`` torchrun workers and return rank 0's summary. The workers use
    ``registry``'s home (default: KAIYUAN_HOME) as theirs."""

    deepspeed_config(getattr(cfg, "deepspeed", None))  # a wrong name or a missing package fails here, not in N workers
    registry = registry or Registry()
    resolved = replace(cfg, model=resolve_model(cfg.model, registry).id,
                       data=resolve_dataset(cfg.data, registry, license=cfg.data_license).id)
    if (done := finished_run(resolved, stage, registry, resolved.model, resolved.data)) is not None:
        return done.summary()  # the workers' run (their options are these resolved ones) already finished
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / f"{stage}.json"
        config_file.write_text(json.dumps(asdict(resolved)))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc}",
                   "-m", "kaiyuan.cli", "train", stage, "--config", str(config_file), "--json"]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "KAIYUAN_HOME": str(registry.home)}  # the workers' home
        if getattr(cfg, "deepspeed", None) and not torch_cuda():
            env["DS_ACCELERATOR"] = "cpu"
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)  # nosec B603: torchrun relaunching this command
    if done.returncode != 0:
        raise KaiyuanError(f"the distributed {stage} run failed (torchrun exit code {done.returncode}); "
                           "see the workers' output above")
    return json.loads(done.stdout[done.stdout.index("{"):])
