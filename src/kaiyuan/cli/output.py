"""What every command prints with: the consoles, ``--json`` output, and where library chatter goes.

A command's results go to the stdout it was started with; everything else printed to stdout while it runs
(transformers' and TRL's dicts and progress bars, DeepSpeed's and llama.cpp's log lines) goes to stderr, so
``kaiyuan … --json | jq`` always reads clean JSON.

Library chatter is not shown by default (:func:`quiet_library_chatter`): what the libraries write to stdout or
stderr while a command runs — warnings, the log lines of transformers, datasets, huggingface_hub, DeepSpeed and
llama.cpp, their tqdm bars, the trainers' ``{'loss': …}`` dicts — goes to a log file,
``KAIYUAN_HOME/logs/<command>-<time>-<pid>.log`` (made when there is something to write). kaiyuan's own
messages and progress bars still reach stderr. ``kaiyuan --verbose`` shows the chatter live on stderr.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.file_proxy import FileProxy


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


# ------------------------------------------------------------------------------------------------ library chatter

#: Loggers whose lines are kaiyuan's own output, not chatter (a server's startup and access lines are its output).
OWN_LOGGERS = ("kaiyuan", "uvicorn")


def _own_module(name: str) -> bool:
    return name == "kaiyuan" or name.startswith("kaiyuan.")


class ChatterLog(FileProxy):
    """What ``sys.stdout`` and ``sys.stderr`` are while a quiet command runs.

    Writes made by kaiyuan's own code (``print(..., file=sys.stderr)`` in a kaiyuan module, a log line of an
    :data:`OWN_LOGGERS` logger) go to the command's real stderr; everything else goes to the log file, opened on
    the first write. Rich consoles (kaiyuan's progress bars and messages) write to the real stderr directly: a
    :class:`~rich.file_proxy.FileProxy` is unwrapped by Rich (``rich_proxied_file``), and a live progress bar
    leaves it in place instead of wrapping it."""

    def __init__(self, stderr: TextIO, command: str, home: Path | None = None) -> None:
        super().__init__(err_console, stderr)
        self._stderr = stderr
        self._command = command
        self._home = home
        self._path: Path | None = None
        self._file: TextIO | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path | None:
        """The log file, once something was written to it."""
        return self._path if self._file is not None else None

    def _command_name(self) -> str:
        """The running command (``models create-tiny``): the group it was started as, and the word after it on
        the command line when that is a subcommand."""
        args = sys.argv[1:]
        if self._command in args:
            after = args[args.index(self._command) + 1:][:1]
            if after and re.fullmatch(r"[a-z][a-z0-9-]*", after[0]):
                return f"{self._command} {after[0]}"
        return self._command

    def _target(self) -> TextIO:
        """Where a write goes, by who makes it (the caller of :meth:`write`)."""
        caller = sys._getframe(2)
        if _own_module(caller.f_globals.get("__name__", "")):
            return self._stderr
        record = caller.f_locals.get("record") if caller.f_code.co_name == "emit" else None
        if isinstance(record, logging.LogRecord) and record.name.split(".")[0] in OWN_LOGGERS:
            return self._stderr
        if self._closed:
            return self._stderr
        with self._lock:
            if self._file is None:
                try:
                    self._path = chatter_log_path(self._command_name(), self._home)
                    self._path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self._path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
                except OSError:
                    self._closed = True  # no log file: the chatter is shown, as with --verbose
                    return self._stderr
            return self._file

    def write(self, text: str) -> int:
        self._write(self._target(), text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        self._write(self._target(), "".join(lines))

    def _write(self, target: TextIO, text: str) -> None:
        if target is not self._file:
            target.write(text)
            return
        try:
            target.write(text)
            target.flush()
        except OSError:  # e.g. a full disk: the chatter must not fail the command; show it instead
            with self._lock:
                self._closed = True
            self._stderr.write(text)

    def flush(self) -> None:
        self._stderr.flush()

    def isatty(self) -> bool:
        return False  # bars drawn with carriage returns are for terminals; the log is a file

    def close(self) -> None:
        """Stop logging (later writes, e.g. by a handler that kept this stream, go to stderr)."""
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()


def chatter_log_path(command: str, home: Path | None = None) -> Path:
    """``KAIYUAN_HOME/logs/<command>-<time>-<pid>.log``."""
    if home is None:
        home = Path(os.environ.get("KAIYUAN_HOME") or Path.home() / ".kaiyuan").expanduser()
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", command).strip("-.") or "kaiyuan"
    return home / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def _stream_handlers(streams: tuple[Any, ...]) -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler) and any(handler.stream is s for s in streams)
            and not isinstance(handler, logging.FileHandler)
            and not isinstance(getattr(type(handler), "stream", None), property)]  # e.g. logging.lastResort


def quiet_library_chatter(command: str) -> Any:
    """From here until the returned function is called, library chatter goes to a log file (see the module's
    docstring). Returns the function that restores stdout and stderr (call it after
    :func:`keep_stdout_for_results`)."""
    saved_stdout, saved_stderr = sys.stdout, sys.stderr
    log = ChatterLog(saved_stderr, command)
    handlers = [(h, h.stream) for h in _stream_handlers((saved_stdout, saved_stderr, sys.__stdout__, sys.__stderr__))]
    for handler, _ in handlers:
        handler.setStream(log)  # type: ignore[arg-type]
    sys.stdout = sys.stderr = log  # type: ignore[assignment]

    def restore() -> None:
        if sys.stdout is log:
            sys.stdout = saved_stdout
        if sys.stderr is log:
            sys.stderr = saved_stderr
        for handler, stream in handlers:
            if handler.stream is log:
                handler.setStream(stream)
        log.close()

    restore.log = log  # type: ignore[attr-defined]
    return restore
