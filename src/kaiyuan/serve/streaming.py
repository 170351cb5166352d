"""Server-sent events from a blocking generator, without leaks on disconnect or shutdown.

Starlette iterates a plain generator in worker threads and, when the client goes away, just stops: the generator
is left to the garbage collector, which may close it on any thread — the engine's own scheduler thread included,
where closing (cancelling the generation) would wait for that very thread. Here the generator is always closed
explicitly, on a worker thread, as soon as the response ends for any reason; closing it cancels the generation.

On shutdown (``Drain.start``) streams still running when the grace period is over end with an OpenAI-shaped error
event and ``data: [DONE]``, so a client can tell a cut reply from a finished one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from kaiyuan.serve.engines.base import EngineUnavailableError
from kaiyuan.serve.protocol import error_body

_END = object()
SHUTDOWN_MESSAGE = "The server is shutting down; the reply was cut short."


class Drain:
    """The server's shutdown state: ``start(grace_s)`` when it stops accepting; streams are cut ``grace_s`` later."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # time.monotonic() after which running streams are cut
        self._cut: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def bind(self) -> asyncio.Event:
        """The event set when streams must be cut (made on the server's event loop at first use)."""
        if self._cut is None:
            self._cut = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            if self.deadline is not None:
                self._schedule()
        return self._cut

    def start(self, grace_s: float) -> None:
        """Begin draining (callable from a signal handler or another thread)."""
        if self.deadline is not None:
            return
        self.deadline = time.monotonic() + max(grace_s, 0.0)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        assert self._loop is not None and self._cut is not None and self.deadline is not None
        self._loop.call_later(max(self.deadline - time.monotonic(), 0.0), self._cut.set)


def _error_event(exc: Exception) -> str:

    code = "engine_unavailable" if isinstance(exc, EngineUnavailableError) else None
    body = error_body(f"The server had an error while generating ({type(exc).__name__}: {exc}).", "server_error",
                      code=code)
    return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"


def _shutdown_event() -> str:
    body = error_body(SHUTDOWN_MESSAGE, "server_error", code="server_shutdown")
    return f"data: {json.dumps(body)}\n\ndata: [DONE]\n\n"


async def _pull(chunks: Iterator[str], drain: Drain) -> AsyncIterator[str]:
    cut = drain.bind()
    cut_waiter = asyncio.ensure_future(cut.wait())
    pending: asyncio.Future | None = None
    try:
        while True:
            pending = asyncio.ensure_future(run_in_threadpool(next, chunks, _END))
            await asyncio.wait({pending, cut_waiter}, return_when=asyncio.FIRST_COMPLETED)
            if not pending.done():  # the grace period is over: end the reply so the client knows
                yield _shutdown_event()
                return
            try:
                chunk = pending.result()
            except Exception as exc:  # the engine failed mid-stream: say so in OpenAI's shape, then end
                pending = None
                yield _error_event(exc)
                return
            pending = None
            if chunk is _END:
                return
            yield chunk
    finally:
        cut_waiter.cancel()
        with anyio.CancelScope(shield=True):
            if pending is not None:  # a step still running in a worker thread: let it end, then close
                await asyncio.wait({pending})
            await run_in_threadpool(_close, chunks)


def _close(chunks: Iterator[str]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class EventStreamResponse(StreamingResponse):
    """A streaming response that watches for the client going away while it waits for the next event (whatever
    ASGI version the server speaks) and always closes its body iterator when it ends."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = self.body_iterator
        try:
            async with anyio.create_task_group() as group:
                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the connection broke under a send
                        pass
                    group.cancel_scope.cancel()

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                group.start_soon(watch)
        finally:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def event_stream(chunks: Iterator[str], drain: Drain) -> StreamingResponse:
    """A text/event-stream response of ``chunks`` (each a complete ``data: ...\\n\\n`` event)."""
    return EventStreamResponse(_pull(chunks, drain), media_type="text/event-stream")
