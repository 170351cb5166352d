"""Fault injection for the resume tests: ``kaiyuan`` that SIGKILLs itself when training step N begins.

    python -m tests.kill_at_step N ARGS...    # as ``python -m kaiyuan.cli ARGS...``

The kill is a trainer callback added through :data:`kaiyuan.train.common.extra_callbacks`; production code
knows nothing about it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any


def kill_at_step(step: int) -> Any:
    """A trainer callback that SIGKILLs this process when step ``step`` begins."""
    from transformers import TrainerCallback

    class KillAtStep(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == step:
                os.kill(os.getpid(), signal.SIGKILL)

    return KillAtStep()


def main() -> None:
    from kaiyuan.cli import main as kaiyuan_main
    from kaiyuan.train import common

    step, args = int(sys.argv[1]), sys.argv[2:]
    common.extra_callbacks.append(kill_at_step(step))
    sys.argv = ["kaiyuan", *args]
    kaiyuan_main()


if __name__ == "__main__":
    main()
