"""What the endpoint handlers share: finding the engine, the sampling parameters of a request (and the refusal of
generation fields the engine does not apply), and running the ``n`` choices of a request at once, so that the engine
batches them: their results, or their event streams merged (every stream's first event pulled up front, so that a
bad request is answered with an error before the stream begins)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kaiyuan.serve.engines.base import (
    Engine,
    Generation,
    SamplingParams,
    StreamEvent,
    UnsupportedRequestError,
    check_generation_fields,
)
from kaiyuan.serve.errors import error_response, model_not_found
from kaiyuan.serve.protocol import SamplingRequest

DONE = "data: [DONE]\n\n"  # the last server-sent event of every stream


def find_engine(engines: dict[str, Engine], name: str) -> tuple[Any, JSONResponse | None]:
    """The engine serving ``name``, or the 404 to answer with."""
    engine = engines.get(name)
    if engine is None:
        return None, model_not_found(name, engines)
    return engine, None


def sse_data(chunk: dict[str, Any]) -> str:
    """One server-sent event carrying ``chunk`` as JSON."""
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def seeded(params: SamplingParams, i: int) -> SamplingParams:
    """The parameters of choice ``i``: seed + i when a seed is given."""
    return dataclasses.replace(params, seed=None if params.seed is None else params.seed + i)


def sampling_params(body: SamplingRequest, max_tokens: int, fit_context: bool) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=max(body.top_k, 0), stop=body.stop or [], seed=body.seed, fit_context=fit_context,
                          logit_bias=body.token_bias(), presence_penalty=body.presence_penalty or 0.0,
                          frequency_penalty=body.frequency_penalty or 0.0, generation=body.generation_fields())


def refuse_generation_fields(engine: Any, params: SamplingParams) -> JSONResponse | None:
    """The 400 for a generation field the request sets that the engine does not apply (its ``generation_fields``,
    none when it has no such attribute), naming the field; None when it applies them all."""
    try:
        check_generation_fields(params.generation, getattr(engine, "generation_fields", frozenset()),
                                type(engine).__name__)
    except UnsupportedRequestError as exc:
        return error_response(400, str(exc), param=exc.param)
    return None


async def run_choices(calls: list[Callable[[], Generation]]) -> list[Generation]:
    """Run the choices' calls at once, each on a worker thread of its own, so that the engine batches them (its
    scheduler shares forward passes among concurrent requests); their results in order. The first error is raised
    once every call has ended."""
    results = await asyncio.gather(*(run_in_threadpool(call) for call in calls), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


_ENDED = None  # a stream's last item on the queue


class ChoiceStreams:
    """The event streams of several choices, run at once, each on a thread of its own (so the engine batches them),
    their events merged in the order they come as ``(choice, event)``. ``await streams.start()`` waits for every
    stream's first event, so that a bad request is answered with an error before the stream begins; ``close()``
    (called when the merged iteration ends, for any reason) stops the streams still running at their next event,
    closing their generators, which cancels their generations."""

    def __init__(self, runs: list[Callable[[], Iterator[StreamEvent]]]) -> None:
        self.runs = runs
        self._queue: queue.Queue[tuple[int, StreamEvent | BaseException | None]] = queue.Queue()
        self._stop = threading.Event()
        self._buffered: list[tuple[int, StreamEvent | BaseException | None]] = []
        self._started = False

    def _produce(self, i: int, run: Callable[[], Iterator[StreamEvent]]) -> None:
        events: Iterator[StreamEvent] | None = None
        try:
            events = run()
            for event in events:
                self._queue.put((i, event))
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, which raises it
            self._queue.put((i, exc))
            return
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # on this thread, never the engine's: cancels the generation if it is still running
        self._queue.put((i, _ENDED))

    def _first_events(self) -> None:
        for i, run in enumerate(self.runs):
            threading.Thread(target=self._produce, args=(i, run), name=f"choice-{i}", daemon=True).start()
        waiting = set(range(len(self.runs)))
        while waiting:
            item = self._queue.get()
            self._buffered.append(item)
            waiting.discard(item[0])
            if isinstance(item[1], BaseException):
                self.close()
                raise item[1]

    async def start(self) -> None:
        self._started = True
        await run_in_threadpool(self._first_events)

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[tuple[int, StreamEvent]]:
        assert self._started, "await start() first"
        running = len(self.runs) - sum(1 for _, item in self._buffered if item is _ENDED)
        try:
            for i, item in self._buffered:
                if isinstance(item, StreamEvent):
                    yield i, item
            self._buffered = []
            while running:
                i, item = self._queue.get()
                if item is _ENDED:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield i, item
        finally:
            self.close()
