"""The FastAPI app: OpenAI-compatible routes over the engine interface."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from kaiyuan import __version__
from kaiyuan.serve.engines.base import ContextLengthError, Engine, SamplingParams
from kaiyuan.serve.protocol import (
    ChatCompletionRequest,
    chat_chunk,
    chat_completion,
    completion_id,
    error_body,
)

PUBLIC_PATHS = {"/health"}


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def create_app(engines: dict[str, Engine], api_key_hashes: list[str] | None = None,
               default_max_tokens: int = 256) -> FastAPI:
    """An app serving ``engines`` by model name. With ``api_key_hashes`` (sha256 hex of each key),
    every route but ``/health`` needs ``Authorization: Bearer <key>``."""
    app = FastAPI(title="kaiyuan", version=__version__)
    key_hashes = [h.lower() for h in api_key_hashes or []]

    @app.middleware("http")
    async def check_api_key(request: Request, call_next: Any) -> Any:
        if key_hashes and request.url.path not in PUBLIC_PATHS:
            header = request.headers.get("authorization", "")
            token = header[7:] if header.lower().startswith("bearer ") else ""
            offered = hash_api_key(token)
            # compare against every key, in constant time, without stopping at the first match
            valid = False
            for stored in key_hashes:
                valid |= hmac.compare_digest(offered, stored)
            if not valid:
                return _error(401, "Invalid or missing API key.", "authentication_error",
                              code="invalid_api_key")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return _error(400, f"{param or 'body'}: {first.get('msg', 'invalid request')}", param=param)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "kaiyuan"}
                                           for name in engines]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        engine = engines.get(body.model)
        if engine is None:
            return _error(404, f"The model '{body.model}' does not exist. Available: {', '.join(engines)}.",
                          param="model", code="model_not_found")
        try:
            messages = body.chat()
        except ValueError as exc:
            return _error(400, str(exc), param="messages")
        params = SamplingParams(max_tokens=body.token_limit(default_max_tokens), temperature=body.temperature,
                                top_p=body.top_p, stop=body.stop or [], seed=body.seed)
        request_id = completion_id()
        if not body.stream:
            try:
                result = await run_in_threadpool(engine.generate, messages, params)
            except ContextLengthError as exc:
                return _error(400, str(exc), param="messages", code="context_length_exceeded")
            return chat_completion(request_id, body.model, result.text, result.finish_reason,
                                   result.prompt_tokens, result.completion_tokens)
        events = engine.stream(messages, params)
        try:  # surface a bad request as a 400 before the stream starts
            first = await run_in_threadpool(next, events, None)
        except ContextLengthError as exc:
            return _error(400, str(exc), param="messages", code="context_length_exceeded")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def sse() -> Iterator[str]:
            def send(chunk: dict[str, Any]) -> str:
                return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

            yield send(chat_chunk(request_id, body.model, {"role": "assistant", "content": ""}))
            event = first
            while event is not None:
                if event.text:
                    yield send(chat_chunk(request_id, body.model, {"content": event.text}))
                if event.finish is not None:
                    finish = event.finish
                    yield send(chat_chunk(request_id, body.model, {}, finish.finish_reason))
                    if include_usage:
                        usage = {"prompt_tokens": finish.prompt_tokens,
                                 "completion_tokens": finish.completion_tokens,
                                 "total_tokens": finish.prompt_tokens + finish.completion_tokens}
                        yield send(chat_chunk(request_id, body.model, {}, usage=usage, with_choice=False))
                event = next(events, None)
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")

    return app
