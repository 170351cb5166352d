"""The FastAPI app: OpenAI-compatible routes over the engine interface.

Routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (the last two when the
engine has ``complete``/``embed``). ``n`` choices are generated one after another (choice *i* with ``seed + i``
when a seed is given) and streamed one after another. With tools offered, a streamed reply is held back until it
is complete (to tell a tool call from text) and then sent as one delta.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from kaiyuan import __version__
from kaiyuan.serve.engines.base import (
    ContextLengthError,
    Engine,
    EngineUnavailableError,
    Generation,
    SamplingParams,
    StreamEvent,
    UnsupportedRequestError,
)
from kaiyuan.serve.engines.json_constraint import compiled_schema
from kaiyuan.serve.guard import PUBLIC_PATHS, RequestGuard, hash_api_key
from kaiyuan.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    SamplingRequest,
    chat_choice,
    chat_chunk,
    chat_completion,
    completion_id,
    completion_logprobs,
    embedding_item,
    error_body,
    parse_tool_calls,
    text_choice,
    text_completion,
    text_completion_id,
    tool_call_schema,
    usage,
)
from kaiyuan.serve.streaming import Drain, event_stream

__all__ = ["PUBLIC_PATHS", "create_app", "hash_api_key"]
DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions


def validation_message(errors: list[Any]) -> tuple[str, str | None]:
    """The 400's message and ``param`` for pydantic's errors: the first one, naming the field as OpenAI does."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())[1:]]
    param = ".".join(loc) or None
    kind = first.get("type")
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param
    if kind == "json_invalid":
        return "We could not parse the JSON body of your request; the API expects a JSON object.", None
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    where = param or ("" if kind == "value_error" else "body")  # a whole-request check says it all
    return (f"{where}: {message}" if where else message), param


def _error(status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
           code: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status_code=status)


def _engine_error(exc: Exception, param: str) -> JSONResponse:
    code = "context_length_exceeded" if isinstance(exc, ContextLengthError) else None
    return _error(400, str(exc), param=getattr(exc, "param", None) or param, code=code)


ENGINE_ERRORS = (ContextLengthError, UnsupportedRequestError)


def _send(chunk: dict[str, Any]) -> str:
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"


def _seeded(params: SamplingParams, i: int) -> SamplingParams:
    return dataclasses.replace(params, seed=None if params.seed is None else params.seed + i)


def _sampling(body: SamplingRequest, max_tokens: int, fit_context: bool) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=max(body.top_k, 0), stop=body.stop or [], seed=body.seed, fit_context=fit_context,
                          logit_bias=body.token_bias(), presence_penalty=body.presence_penalty or 0.0,
                          frequency_penalty=body.frequency_penalty or 0.0)


class _Streams:
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


def create_app(engines: dict[str, Engine], api_key_hashes: list[str] | None = None,
               default_max_tokens: int = 256) -> FastAPI:
    """An app serving ``engines`` by model name. With ``api_key_hashes`` (sha256 hex of each key),
    every route but ``/health`` needs ``Authorization: Bearer <key>``."""
    app = FastAPI(title="kaiyuan", version=__version__)
    drain = Drain()
    app.state.drain = drain  # the server starts it on SIGTERM; streams past the grace period end with an error event
    app.state.engines = engines
    key_hashes = [h.lower() for h in api_key_hashes or []]
    for stored in key_hashes:
        if stored == hash_api_key(""):
            raise ValueError("an empty API key would let anyone in: give a non-empty key")

    app.add_middleware(RequestGuard, api_key_hashes=key_hashes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return _error(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Unknown route {request.method} {request.url.path}."
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        return JSONResponse(error_body(message, "invalid_request_error"), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(EngineUnavailableError)
    async def engine_unavailable(request: Request, exc: EngineUnavailableError) -> JSONResponse:
        return _error(503, str(exc), "server_error", code="engine_unavailable")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"The server had an error while processing your request ({type(exc).__name__}).",
                      "server_error")

    def find_engine(name: str) -> tuple[Any, JSONResponse | None]:
        engine = engines.get(name)
        if engine is None:
            return None, _error(404, f"The model '{name}' does not exist. Available: {', '.join(engines)}.",
                                param="model", code="model_not_found")
        return engine, None

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with ``model`` an enum of the served names (what the server accepts, for clients and
        fuzzers alike)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for name, component in schema.get("components", {}).get("schemas", {}).items():
                model = component.get("properties", {}).get("model")
                if name.endswith("Request") and model is not None and engines:
                    model["enum"] = list(engines)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/health")
    async def health() -> Any:
        """200 {"status": "ok"}; 503 while draining, or when an engine says what is wrong with it."""
        if drain.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        problems = {name: problem for name, engine in engines.items()
                    if (problem := getattr(engine, "health", lambda: None)())}
        if problems:
            return JSONResponse({"status": "unhealthy", "engines": problems}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "kaiyuan"}
                                           for name in engines]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest) -> Any:
        engine, missing = find_engine(body.model)
        if missing:
            return missing
        try:
            messages = body.chat()
        except ValueError as exc:
            return _error(400, str(exc), param="messages")
        try:
            forced = body.forced_tools()
        except ValueError as exc:
            return _error(400, str(exc), param="tool_choice")
        params = _sampling(body, body.token_limit(default_max_tokens), fit_context=not body.limit_given())
        params.logprobs = body.logprobs
        params.top_logprobs = body.top_logprobs or 0
        params.tools = body.active_tools() or None
        schema = body.response_format.schema_or_none() if body.response_format else None
        if forced:
            if schema is not None:
                return _error(400, "response_format cannot be combined with a required or named tool_choice",
                              param="response_format")
            schema = tool_call_schema(forced)
        if schema is not None:
            try:
                compiled_schema(schema)  # unsupported keywords and malformed schemas are refused before generating
            except UnsupportedRequestError as exc:
                return _error(400, f"response_format: {exc}" if not forced else f"tools: {exc}",
                              param="tools" if forced else "response_format")
        params.json_schema = schema
        tool_names = {t["function"]["name"] for t in params.tools or []}
        request_id = completion_id()

        def reply(text: str) -> tuple[str | None, list[dict[str, Any]]]:
            if not tool_names:
                return text, []
            content, calls = parse_tool_calls(text, tool_names)
            return content, calls[:1] if body.parallel_tool_calls is False else calls

        if not body.stream:
            results: list[Generation] = []
            for i in range(body.n):
                try:
                    results.append(await run_in_threadpool(engine.generate, messages, _seeded(params, i)))
                except ENGINE_ERRORS as exc:
                    return _engine_error(exc, "messages")
            choices = []
            for i, result in enumerate(results):
                content, calls = reply(result.text)
                finish = "tool_calls" if calls else result.finish_reason
                choices.append(chat_choice(i, content, finish, result.logprobs, calls or None))
            return chat_completion(request_id, body.model, choices, results[0].prompt_tokens,
                                   sum(r.completion_tokens for r in results))

        streams = _Streams([lambda i=i: engine.stream(messages, _seeded(params, i)) for i in range(body.n)])
        try:
            await streams.start()
        except ENGINE_ERRORS as exc:
            return _engine_error(exc, "messages")

        def sse() -> Iterator[str]:
            started: set[int] = set()
            held: list[StreamEvent] = []  # with tools: the whole reply, to parse once it is complete
            prompt_tokens = completion_tokens = 0
            for i, event in streams:
                if i not in started:
                    started.add(i)
                    yield _send(chat_chunk(request_id, body.model, {"role": "assistant", "content": ""}, index=i))
                if tool_names:
                    held.append(event)
                elif event.text or event.logprobs:
                    yield _send(chat_chunk(request_id, body.model, {"content": event.text}, index=i,
                                           logprobs=event.logprobs if body.logprobs else None))
                if event.finish is None:
                    continue
                finish = event.finish
                prompt_tokens, completion_tokens = finish.prompt_tokens, completion_tokens + finish.completion_tokens
                reason = finish.finish_reason
                if tool_names:
                    content, calls = reply("".join(e.text for e in held))
                    logprobs = [lp for e in held for lp in e.logprobs or []] if body.logprobs else None
                    held = []
                    if calls:
                        reason = "tool_calls"
                        deltas = [{**call, "index": k} for k, call in enumerate(calls)]
                        yield _send(chat_chunk(request_id, body.model, {"content": content, "tool_calls": deltas},
                                               index=i, logprobs=logprobs))
                    elif content:
                        yield _send(chat_chunk(request_id, body.model, {"content": content}, index=i,
                                               logprobs=logprobs))
                yield _send(chat_chunk(request_id, body.model, {}, reason, index=i))
            if body.include_usage():
                yield _send(chat_chunk(request_id, body.model, {}, usage=usage(prompt_tokens, completion_tokens),
                                       with_choice=False))
            yield "data: [DONE]\n\n"

        return event_stream(sse(), drain)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        engine, missing = find_engine(body.model)
        if missing:
            return missing
        if not hasattr(engine, "complete_stream"):
            return _error(400, f"The model '{body.model}' does not support text completions.", param="model",
                          code="model_not_supported")
        params = _sampling(body, body.max_tokens or DEFAULT_COMPLETION_TOKENS, fit_context=body.max_tokens is None)
        params.logprobs = body.logprobs is not None
        params.top_logprobs = body.logprobs or 0
        prompts = body.prompts()
        jobs = [(p * body.n + i, prompt, _seeded(params, i)) for p, prompt in enumerate(prompts)
                for i in range(body.n)]
        request_id = text_completion_id()

        if not body.stream:
            choices, prompt_tokens, completion_tokens = [], 0, 0
            for index, prompt, job_params in jobs:
                try:
                    result = await run_in_threadpool(engine.complete, prompt, job_params)
                except ENGINE_ERRORS as exc:
                    return _engine_error(exc, "prompt")
                if index % body.n == 0:
                    prompt_tokens += result.prompt_tokens
                completion_tokens += result.completion_tokens
                choices.append(text_choice(index, result.text, result.finish_reason,
                                           completion_logprobs(result.logprobs)))
            return text_completion(request_id, body.model, choices, usage(prompt_tokens, completion_tokens))

        streams = _Streams([lambda prompt=prompt, job_params=job_params: engine.complete_stream(prompt, job_params)
                            for _, prompt, job_params in jobs])
        try:
            await streams.start()
        except ENGINE_ERRORS as exc:
            return _engine_error(exc, "prompt")

        def sse() -> Iterator[str]:
            prompt_tokens = completion_tokens = 0
            offsets = [0] * len(jobs)
            for job, event in streams:
                index = jobs[job][0]
                if event.text or event.logprobs or event.finish is not None:
                    logprobs = completion_logprobs(event.logprobs, offsets[job]) if event.logprobs is not None \
                        else None
                    offsets[job] += sum(len(e.token) for e in event.logprobs or [])
                    reason = event.finish.finish_reason if event.finish is not None else None
                    yield _send(text_completion(request_id, body.model,
                                                [text_choice(index, event.text, reason, logprobs)], None))
                if event.finish is not None:
                    if index % body.n == 0:
                        prompt_tokens += event.finish.prompt_tokens
                    completion_tokens += event.finish.completion_tokens
            if body.include_usage():
                chunk = text_completion(request_id, body.model, [], usage(prompt_tokens, completion_tokens))
                yield _send(chunk)
            yield "data: [DONE]\n\n"

        return event_stream(sse(), drain)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Any:
        engine, missing = find_engine(body.model)
        if missing:
            return missing
        if not hasattr(engine, "embed"):
            return _error(400, f"The model '{body.model}' does not support embeddings.", param="model",
                          code="model_not_supported")
        try:
            results = await run_in_threadpool(engine.embed, body.inputs())
        except ENGINE_ERRORS as exc:
            return _engine_error(exc, "input")
        data = []
        for i, result in enumerate(results):
            vector = result.vector
            if body.dimensions is not None:
                if body.dimensions > len(vector):
                    return _error(400, f"dimensions must be at most {len(vector)} for this model",
                                  param="dimensions")
                vector = vector[: body.dimensions]
                norm = math.sqrt(sum(v * v for v in vector)) or 1.0
                vector = [v / norm for v in vector]
            data.append(embedding_item(i, vector, body.encoding_format))
        tokens = sum(r.tokens for r in results)
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return app
