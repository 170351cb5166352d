"""The API's front door, as a pure ASGI middleware (streams and disconnects pass through untouched).

* API keys: ``Authorization: Bearer <key>`` is hashed and compared with every stored hash in constant time; an
  empty key is never valid. A client (by address) with ``max_failures`` failed attempts within ``window_s`` gets
  429 with ``Retry-After`` until the window has passed — no more guesses get checked meanwhile.
* Request bodies of POST routes must be JSON objects made of valid Unicode: malformed JSON, another JSON value or a
  lone surrogate (``"\\ud800"``, which no tokenizer can encode) get a 400 in OpenAI's shape, naming the field.
"""

from __future__ import annotations

import hmac
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from kaiyuan.serve.keys import check_api_key, hash_api_key
from kaiyuan.serve.protocol import error_body

__all__ = ["API_PREFIXES", "PUBLIC_PATHS", "RequestGuard", "SlidingWindowLimit", "check_api_key", "hash_api_key",
           "is_api_path", "replay", "send_json"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/health", "/metrics"})
API_PREFIXES = ("/v1/", "/docs", "/openapi.json", "/redoc", "/health", "/metrics")  # the rest is the web UI's


def is_api_path(path: str) -> bool:
    """Whether ``path`` is the API's (``/v1/…``, the docs, health, metrics) rather than the web UI's."""
    return path.startswith(API_PREFIXES) or path == "/v1"


async def send_json(send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()
                    ) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": data})


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path (``messages.0.content``) of the first string holding a lone surrogate, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body"
        elif isinstance(item, dict):
            for key, sub in item.items():
                if lone_surrogate(key) is not None:
                    return f"{where}.{key!r}".lstrip(".")
                stack.append((sub, f"{where}.{key}".lstrip(".")))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}.{i}".lstrip(".")) for i, sub in enumerate(item))
    return None


class SlidingWindowLimit:
    """At most ``max_failures`` events (failed log-ins, chat messages, votes) per client within a sliding window of
    ``window_s`` seconds: ``retry_after(client)`` says how long to wait, ``record(client)`` counts one."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        now = time.monotonic()
        times = self._recent(client, now)
        if len(times) < self.max_failures:
            if not times:
                self._failures.pop(client, None)  # the table holds only clients with recent failures
            return 0
        return max(int(self.window_s - (now - times[0])) + 1, 1)

    def record(self, client: str) -> None:
        self._recent(client, time.monotonic()).append(time.monotonic())
        if len(self._failures) > 100_000:  # bounded memory under a flood from many addresses
            oldest = min(self._failures, key=lambda c: self._failures[c][-1] if self._failures[c] else 0)
            self._failures.pop(oldest, None)


class RequestGuard:
    def __init__(self, app: Any, api_key_hashes: list[str] | None = None, max_auth_failures: int = 10,
                 auth_window_s: float = 60.0, api_paths_only: bool = False) -> None:
        self.app = app
        self.api_paths_only = api_paths_only  # with the web UI: its pages have their own log-in and CSRF checks
        self.key_hashes = [h.lower() for h in api_key_hashes or []]
        if hash_api_key("") in self.key_hashes:
            raise ValueError("an empty API key would let anyone in: give a non-empty key")
        self.limiter = SlidingWindowLimit(max_auth_failures, auth_window_s)

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers") or []:
            if name == b"authorization":
                header = value
        text = header.decode("latin-1")
        token = text[7:].strip() if text.lower().startswith("bearer ") else ""
        offered = hash_api_key(token)
        valid = False
        for stored in self.key_hashes:  # every key, in constant time, without stopping at the first match
            valid |= hmac.compare_digest(offered, stored)
        return valid and bool(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self.api_paths_only and not is_api_path(scope["path"])):
            await self.app(scope, receive, send)
            return
        if self.key_hashes and scope["path"] not in PUBLIC_PATHS:
            client = (scope.get("client") or ("?", 0))[0]
            wait = self.limiter.retry_after(client)
            if wait:
                await send_json(send, 429, error_body(
                    f"Too many failed authentication attempts; retry in {wait} s.", "rate_limit_error",
                    code="too_many_auth_failures"), headers=[(b"retry-after", str(wait).encode())])
                return
            if not self._authorized(scope):
                self.limiter.record(client)
                await send_json(send, 401, error_body("Invalid or missing API key.", "authentication_error",
                                                      code="invalid_api_key"))
                return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        problem = _body_problem(body)
        if problem is not None:
            message, param = problem
            await send_json(send, 400, error_body(message, param=param))
            return
        await self.app(scope, replay([{"type": "http.request", "body": body, "more_body": False}, *more], receive),
                       send)


async def _read_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The whole request body, and any other message that came first (a disconnect)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), []


def replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out ``messages`` (a body already read), then the client's next ones."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def _body_problem(body: bytes) -> tuple[str, str | None] | None:
    """(message, param) when the body is not a JSON object of valid Unicode."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"The request body is not valid UTF-8 (byte {exc.start}).", None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return (f"We could not parse the JSON body of your request: {exc.msg} at line {exc.lineno} column "
                f"{exc.colno}. The API expects a JSON object.", None)
    except RecursionError:
        return "We could not parse the JSON body of your request: it nests too deeply.", None
    if not isinstance(value, dict):
        return f"The request body must be a JSON object, not {type(value).__name__}.", None
    where = lone_surrogate(value)
    if where is not None:
        return (f"{where}: the string holds a lone surrogate (an unpaired \\ud800–\\udfff escape), which is not "
                "valid Unicode.", where)
    return None
