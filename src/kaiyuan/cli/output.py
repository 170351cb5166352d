"""What every command prints with: the consoles, ``--json`` output, and where library chatter goes.

A command's results go to the stdout it was started with; everything else printed to stdout while it runs
(transformers' and TRL's dicts and progress bars, DeepSpeed's and llama.cpp's log lines) goes to stderr, so
``kaiyuan … --json | jq`` always reads clean JSON.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from rich.console import Console


class _Results:
    """The stream a command's results are written to: the stdout of the invocation (captured when it starts)."""

    stream: Any = None

    def write(self, text: str) -> int:
        return (self.stream or sys.stdout).write(text)

    def flush(self) -> None:
        (self.stream or sys.stdout).flush()

    def isatty(self) -> bool:
        return bool(getattr(self.stream or sys.stdout, "isatty", lambda: False)())

    def fileno(self) -> int:
        return (self.stream or sys.stdout).fileno()


results = _Results()
console = Console(file=results)  # type: ignore[arg-type]
err_console = Console(stderr=True)


def echo(text: str) -> None:
    results.write(text + "\n")


def print_json(data: Any) -> None:
    results.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    results.flush()


def keep_stdout_for_results() -> Any:
    """From here until the returned function is called, stdout is stderr: only :data:`results` reaches the
    invocation's stdout. Returns the function that restores stdout."""
    results.stream, saved = sys.stdout, sys.stdout
    sys.stdout = sys.stderr

    def restore() -> None:
        sys.stdout = saved
        results.stream = None

    return restore


def library_chatter_to_stderr() -> contextlib.AbstractContextManager:
    """Libraries (transformers' Trainer, datasets) print progress to stdout; keep stdout for results."""
    return contextlib.redirect_stdout(sys.stderr)
