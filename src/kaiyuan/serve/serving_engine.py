"""What the endpoint handlers share: finding the engine, the sampling parameters of a request, and the event
streams of several choices run one after another (the first event pulled up front, so that a bad request is
answered with an error before the stream begins)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from kaiyuan.serve.engines.base import Engine, SamplingParams, StreamEvent
from kaiyuan.serve.errors import model_not_found
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
                          frequency_penalty=body.frequency_penalty or 0.0)


class ChoiceStreams:
    """The event streams of several choices, run one after another; the first event of the first is pulled up
    front (``await streams.start()``), so a bad request is answered with an error before the stream begins."""

    def __init__(self, runs: list[Callable[[], Iterator[StreamEvent]]]) -> None:
        self.runs = runs
        self.first: StreamEvent | None = None
        self.events: Iterator[StreamEvent] | None = None

    async def start(self) -> None:
        self.events = self.runs[0]()
        self.first = await run_in_threadpool(next, self.events, None)

    def __iter__(self) -> Iterator[tuple[int, StreamEvent]]:
        for i, run in enumerate(self.runs):
            events = self.events if i == 0 else run()
            assert events is not None
            event = self.first if i == 0 else next(events, None)
            while event is not None:
                yield i, event
                event = next(events, None)
