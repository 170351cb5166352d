"""What makes the server fit to put in front of a team: admission limits and Prometheus metrics.

``with_operations(app, limits)`` wraps any ASGI app (the OpenAI-compatible one) in a pure ASGI middleware —
streaming and client disconnects pass through untouched — and adds a public ``/metrics`` route:

* at most ``max_concurrent`` requests to ``/v1/*`` run at once; up to ``max_queue`` more wait; beyond that
  the answer is 503 with ``Retry-After``; bodies over ``max_body_bytes`` get 413; a request still running
  after ``request_timeout_s`` is cancelled (504 if nothing was sent yet);
* metrics: requests by route and status, prompt and completion tokens, time to first token, inter-token
  latency and request latency histograms, queue depth and running requests.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kaiyuan.serve.guard import replay, send_json
from kaiyuan.serve.protocol import error_body

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class ServerLimits:
    max_concurrent: int = 8
    max_queue: int = 64
    max_body_bytes: int = 2_000_000
    request_timeout_s: float = 600.0
    retry_after_s: int = 1


class ServerMetrics:
    """The Prometheus series of one app (their own registry, so several apps in a process don't collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("kaiyuan_requests", "Requests by route and HTTP status.", ["route", "status"],
                                registry=self.registry)
        self.prompt_tokens = Counter("kaiyuan_prompt_tokens", "Prompt tokens processed.", registry=self.registry)
        self.completion_tokens = Counter("kaiyuan_completion_tokens", "Tokens generated.", registry=self.registry)
        self.ttft = Histogram("kaiyuan_time_to_first_token_seconds", "Time to the first streamed token.",
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=self.registry)
        self.itl = Histogram("kaiyuan_inter_token_latency_seconds", "Time between streamed tokens.",
                             buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=self.registry)
        self.latency = Histogram("kaiyuan_request_latency_seconds", "Whole request, first byte in to last byte out.",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=self.registry)
        self.queue_depth = Gauge("kaiyuan_queue_depth", "Requests waiting for a slot.", registry=self.registry)
        self.running = Gauge("kaiyuan_running_requests", "Requests being served.", registry=self.registry)

    def watch_engines(self, engines: dict[str, Any]) -> None:
        """Per-model gauges read at scrape time: sequences running in the engine and KV cells they hold."""
        from prometheus_client.core import GaugeMetricFamily

        class EngineCollector:
            def collect(self) -> Any:
                running = GaugeMetricFamily("kaiyuan_engine_running_sequences", "Sequences the engine is decoding.",
                                            labels=["model"])
                cells = GaugeMetricFamily("kaiyuan_engine_kv_cells", "KV cache cells held by running sequences.",
                                          labels=["model"])
                for name, engine in engines.items():
                    running.add_metric([name], float(getattr(engine, "active_requests", 0) or 0))
                    cells.add_metric([name], float(getattr(engine, "kv_cells_in_use", 0) or 0))
                yield running
                yield cells

        self.registry.register(EngineCollector())

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _ResponseWatcher:
    """Wraps ``send``: records the status, streamed-token timings and token usage of one response."""

    def __init__(self, send: Send, metrics: ServerMetrics, started: float) -> None:
        self.send, self.metrics, self.started = send, metrics, started
        self.status = 0
        self.streaming = False
        self.last_token: float | None = None
        self.body = b""
        self.tokens_streamed = 0
        self.usage: dict[str, int] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = dict(message.get("headers") or [])
            self.streaming = headers.get(b"content-type", b"").startswith(b"text/event-stream")
        elif message["type"] == "http.response.body":
            self._observe(message.get("body", b""))
        await self.send(message)

    def _observe(self, chunk: bytes) -> None:
        if not self.streaming:
            if len(self.body) < 1_000_000:
                self.body += chunk
            return
        for line in chunk.decode("utf-8", "replace").splitlines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                self.usage = event["usage"]
            if any(_has_text(c) for c in event.get("choices", [])):
                now = time.perf_counter()
                if self.last_token is None:
                    self.metrics.ttft.observe(now - self.started)
                else:
                    self.metrics.itl.observe(now - self.last_token)
                self.last_token = now
                self.tokens_streamed += 1

    def finish(self, route: str) -> None:
        self.metrics.requests.labels(route, str(self.status or 499)).inc()
        self.metrics.latency.observe(time.perf_counter() - self.started)
        usage = self.usage
        if not self.streaming and self.body:
            try:
                usage = json.loads(self.body).get("usage")
            except (ValueError, AttributeError):
                usage = None
        if usage:
            self.metrics.prompt_tokens.inc(usage.get("prompt_tokens", 0))
            self.metrics.completion_tokens.inc(usage.get("completion_tokens", 0))
        elif self.tokens_streamed:
            self.metrics.completion_tokens.inc(self.tokens_streamed)


UNMATCHED_ROUTE = "unmatched"  # the route label of requests to paths the app does not serve


def _has_text(choice: dict[str, Any]) -> bool:
    delta = choice.get("delta") or {}
    return bool(delta.get("content") or choice.get("text"))


class OperationsMiddleware:
    def __init__(self, app: Any, limits: ServerLimits, metrics: ServerMetrics) -> None:
        self.app, self.limits, self.metrics = app, limits, metrics
        self.routes = {getattr(r, "path", None) for r in getattr(app, "routes", [])} - {None}
        self.running = 0
        self.waiting = 0
        self._slot_freed: asyncio.Condition | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/metrics" and scope["method"] == "GET":
            data = self.metrics.exposition()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]})
            await send({"type": "http.response.body", "body": data})
            return
        started = time.perf_counter()
        route = path if path in self.routes else UNMATCHED_ROUTE  # unknown paths share one series
        if scope["method"] not in ("GET", "HEAD"):  # every body is bounded, whatever the path
            body = await self._read_body(scope, receive)
            if isinstance(body, int):  # over the limit: answered without reading the rest
                self.metrics.requests.labels(route, "413").inc()
                await send_json(send, 413, error_body(f"Request body of {body} bytes is over the limit of "
                                                       f"{self.limits.max_body_bytes} bytes."),
                                 headers=[(b"connection", b"close")])
                return
            receive = replay(body, receive)
        if not path.startswith("/v1/") or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if not await self._admit():
            self.metrics.requests.labels(route, "503").inc()
            await send_json(send, 503, error_body(
                f"Server busy: {self.running} requests running and {self.waiting} waiting; retry later.",
                "server_busy_error", code="server_busy"),
                headers=[(b"retry-after", str(self.limits.retry_after_s).encode())])
            return
        watcher = _ResponseWatcher(send, self.metrics, started)
        try:
            await asyncio.wait_for(self.app(scope, receive, watcher), self.limits.request_timeout_s)
        except TimeoutError:
            if not watcher.status:
                await send_json(send, 504, error_body(
                    f"The request took longer than {self.limits.request_timeout_s:g} s and was cancelled.",
                    "timeout_error", code="request_timeout"))
                watcher.status = 504
        finally:
            watcher.finish(route)
            await self._release()

    async def _read_body(self, scope: Scope, receive: Receive) -> list[Message] | int:
        """The request's body messages, counted as they arrive (a chunked body has no Content-Length to trust); the
        size seen so far (an int) as soon as it passes ``max_body_bytes``."""
        limit = self.limits.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return int(length)
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > limit:
                return size
            if not message.get("more_body", False):
                return messages

    async def _admit(self) -> bool:
        if self._slot_freed is None:
            self._slot_freed = asyncio.Condition()
        async with self._slot_freed:
            if self.running < self.limits.max_concurrent:
                self.running += 1
                self.metrics.running.set(self.running)
                return True
            if self.waiting >= self.limits.max_queue:
                return False
            self.waiting += 1
            self.metrics.queue_depth.set(self.waiting)
            try:
                await self._slot_freed.wait_for(lambda: self.running < self.limits.max_concurrent)
            finally:
                self.waiting -= 1
                self.metrics.queue_depth.set(self.waiting)
            self.running += 1
            self.metrics.running.set(self.running)
            return True

    async def _release(self) -> None:
        assert self._slot_freed is not None
        async with self._slot_freed:
            self.running -= 1
            self.metrics.running.set(self.running)
            self._slot_freed.notify()


def with_operations(app: Any, limits: ServerLimits | None = None) -> OperationsMiddleware:
    """The app behind admission limits, with a public Prometheus ``/metrics``."""
    metrics = ServerMetrics()
    engines = getattr(getattr(app, "state", None), "engines", None)
    if engines:
        metrics.watch_engines(engines)
    return OperationsMiddleware(app, limits or ServerLimits(), metrics)
