"""Replies for the pages, through the API's own chat handler, relayed as server-sent events.

:func:`reply_stream` builds a :class:`~kaiyuan.serve.protocol.ChatCompletionRequest` and calls
:func:`kaiyuan.serve.serving_chat.create_chat_completion` — what ``POST /v1/chat/completions`` runs — then relays
its events to the page unchanged, taps the text on its way, and when the stream ends calls ``on_end(text, status,
error)`` exactly once: ``done``; ``stopped`` (the page pressed Stop or went away: the connection closed, which
closes the engine's generator and cancels the generation in the engine); or ``error`` (the engine failed). What
``on_end`` returns is sent as a last ``{"kaiyuan": …}`` event (the reply rendered, its position) before ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError

from kaiyuan.serve.errors import validation_message
from kaiyuan.serve.protocol import ChatCompletionRequest
from kaiyuan.serve.serving_chat import create_chat_completion
from kaiyuan.serve.serving_engine import DONE
from kaiyuan.serve.streaming import EventStreamResponse
from kaiyuan.web.context import api_error, ui_state

OnEnd = Callable[[str, str, str | None], Awaitable[dict[str, Any]]]


def meta_event(meta: dict[str, Any]) -> str:
    return f"data: {json.dumps({'kaiyuan': meta}, ensure_ascii=False)}\n\n"


def _events(chunk: str) -> list[str]:
    return [event for event in chunk.split("\n\n") if event.strip()]


async def reply_stream(request: Request, model: str, messages: list[dict[str, str]], temperature: float,
                       max_tokens: int | None, on_end: OnEnd, first: dict[str, Any] | None = None,
                       hide_model: str | None = None) -> Response:
    """The streamed reply of ``model`` to ``messages``, or the API's error response when it cannot start.
    ``hide_model``: the name the relayed events carry instead of the model's (an anonymous battle)."""
    ui = ui_state(request)
    try:
        body = ChatCompletionRequest.model_validate({
            "model": model, "messages": messages, "stream": True, "temperature": temperature,
            **({"max_tokens": max_tokens} if max_tokens else {})})
    except ValidationError as exc:
        message, _param = validation_message(exc.errors())
        return api_error(400, message, "invalid_request")
    response = await create_chat_completion(ui.engines, body, default_max_tokens=ui.default_max_tokens,
                                            drain=request.app.state.drain)
    if not isinstance(response, EventStreamResponse):  # an error before the first token (unknown model, …)
        return response
    inner: AsyncIterator[str] = response.body_iterator  # type: ignore[assignment]
    return EventStreamResponse(_relay(inner, on_end, first, hide_model), media_type="text/event-stream")


async def _relay(inner: AsyncIterator[str], on_end: OnEnd, first: dict[str, Any] | None,
                 hide_model: str | None) -> AsyncIterator[str]:
    pieces: list[str] = []
    status, error, ended = "stopped", None, False
    try:
        if first:
            yield meta_event(first)
        async for chunk in inner:
            for event in _events(chunk):
                data = event.removeprefix("data: ")
                if data == "[DONE]":
                    status = "done" if status != "error" else status
                    continue
                try:
                    parsed = json.loads(data)
                except json.JSONDecodeError:
                    continue
                if "error" in parsed:
                    status, error = "error", parsed["error"].get("message", "the model failed")
                for choice in parsed.get("choices", []):
                    pieces.append((choice.get("delta") or {}).get("content") or "")
                if hide_model is not None and "model" in parsed:
                    parsed["model"] = hide_model
                    event = f"data: {json.dumps(parsed, ensure_ascii=False)}"
                yield event + "\n\n"
        ended = True
        meta = await on_end("".join(pieces), status, error)
        yield meta_event(meta)
        yield DONE
    finally:
        with anyio.CancelScope(shield=True):  # the response's task may be cancelled (the page went away)
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:  # closes the engine's generator: the generation stops in the engine
                await aclose()
            if not ended:  # Stop, a closed tab, a broken connection: keep what was generated, marked as stopped
                await on_end("".join(pieces), "stopped", None)
