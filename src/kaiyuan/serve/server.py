"""Run the app with uvicorn, in the foreground or in a background thread (for the demo and tests)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, which on SIGTERM / SIGINT also starts the app's drain: streams still running when the
    grace period is over get an error event and ``[DONE]`` before their connections close."""

    def __init__(self, config: uvicorn.Config, drain: Any, grace_s: float) -> None:
        super().__init__(config)
        self.drain, self.grace_s = drain, grace_s

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.drain.start(self.grace_s)
        super().handle_exit(sig, frame)


class QueryRedactor(logging.Filter):
    """Keeps query strings out of the access log: a client that puts a key in the URL (``?api_key=…``) must not
    find it in the logs. uvicorn's access record is (client, method, path with query, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


EXIT_ENGINE_DIED = 3  # the exit status when an engine can never serve again (for a supervisor to restart us)


def run_until_signalled(app: Any, drain: Any, host: str, port: int, grace_s: float,
                        engines: dict[str, Any] | None = None) -> None:
    """Serve ``app`` until SIGTERM / SIGINT; then stop accepting, let requests in flight finish within ``grace_s``
    and end the streams still running with an error event (a few seconds more for that). When an engine turns
    ``fatal`` the server drains the same way and the process exits with status 3, for a supervisor to restart it."""
    import sys

    config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=grace_s + 5)
    logging.getLogger("uvicorn.access").addFilter(QueryRedactor())
    server = _DrainingServer(config, drain, grace_s)
    died: list[str] = []

    def watch() -> None:
        while not server.should_exit:
            dead = [name for name, engine in (engines or {}).items() if getattr(engine, "fatal", False)]
            if dead:
                died.extend(dead)
                print(f"engine {', '.join(dead)} stopped for good: shutting down (exit status "
                      f"{EXIT_ENGINE_DIED})", file=sys.stderr, flush=True)
                drain.start(min(grace_s, 5.0))
                server.should_exit = True
                return
            time.sleep(0.5)

    threading.Thread(target=watch, name="engine-watchdog", daemon=True).start()
    server.run()
    if died:
        sys.exit(EXIT_ENGINE_DIED)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class BackgroundServer:
    """``with BackgroundServer(app) as server: server.base_url`` — stopped on leaving the block."""

    app: FastAPI
    host: str = "127.0.0.1"
    port: int = 0

    def __enter__(self) -> BackgroundServer:
        self.port = self.port or free_port(self.host)
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not start on {self.url}")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
