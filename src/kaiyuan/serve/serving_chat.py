"""``POST /v1/chat/completions``: ``n`` choices generated at once, so that the engine batches them (choice *i* with
``seed + i`` when a seed is given: the same text as a request of its own with that seed), and streamed as they come,
interleaved. With tools offered, a streamed reply is held back until it is
complete (to tell a tool call from text) and then sent as one delta."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kaiyuan.serve.engines.base import Engine, StreamEvent, UnsupportedRequestError
from kaiyuan.serve.engines.json_constraint import compiled_schema
from kaiyuan.serve.errors import ENGINE_ERRORS, engine_error, error_response
from kaiyuan.serve.protocol import (
    ChatCompletionRequest,
    chat_choice,
    chat_chunk,
    chat_completion,
    completion_id,
    parse_tool_calls,
    tool_call_schema,
    usage,
)
from kaiyuan.serve.serving_engine import (
    DONE,
    ChoiceStreams,
    find_engine,
    refuse_generation_fields,
    run_choices,
    sampling_params,
    seeded,
    sse_data,
)
from kaiyuan.serve.streaming import Drain, event_stream


async def create_chat_completion(engines: dict[str, Engine], body: ChatCompletionRequest, *,
                                 default_max_tokens: int, drain: Drain) -> Any:
    """The chat completion (or its event stream) for ``body``, or the error response."""
    engine, missing = find_engine(engines, body.model)
    if missing:
        return missing
    try:
        messages = body.chat()
    except ValueError as exc:
        return error_response(400, str(exc), param="messages")
    try:
        forced = body.forced_tools()
    except ValueError as exc:
        return error_response(400, str(exc), param="tool_choice")
    params = sampling_params(body, body.token_limit(default_max_tokens), fit_context=not body.limit_given())
    params.logprobs = body.logprobs
    params.top_logprobs = body.top_logprobs or 0
    params.tools = body.active_tools() or None
    schema = body.response_format.schema_or_none() if body.response_format else None
    if forced:
        if schema is not None:
            return error_response(400, "response_format cannot be combined with a required or named tool_choice",
                                  param="response_format")
        schema = tool_call_schema(forced)
    if schema is not None:
        try:
            compiled_schema(schema)  # unsupported keywords and malformed schemas are refused before generating
        except UnsupportedRequestError as exc:
            return error_response(400, f"response_format: {exc}" if not forced else f"tools: {exc}",
                                  param="tools" if forced else "response_format")
    params.json_schema = schema
    if (refused := refuse_generation_fields(engine, params)) is not None:
        return refused
    tool_names = {t["function"]["name"] for t in params.tools or []}
    request_id = completion_id()

    def reply(text: str) -> tuple[str | None, list[dict[str, Any]]]:
        if not tool_names:
            return text, []
        content, calls = parse_tool_calls(text, tool_names)
        return content, calls[:1] if body.parallel_tool_calls is False else calls

    if not body.stream:
        try:  # the n choices at once: the engine batches them
            results = await run_choices([lambda i=i: engine.generate(messages, seeded(params, i))
                                         for i in range(body.n)])
        except ENGINE_ERRORS as exc:
            return engine_error(exc, "messages")
        choices = []
        for i, result in enumerate(results):
            content, calls = reply(result.text)
            finish = "tool_calls" if calls else result.finish_reason
            choices.append(chat_choice(i, content, finish, result.logprobs, calls or None))
        return chat_completion(request_id, body.model, choices, results[0].prompt_tokens,
                               sum(r.completion_tokens for r in results))

    streams = ChoiceStreams([lambda i=i: engine.stream(messages, seeded(params, i)) for i in range(body.n)])
    try:
        await streams.start()
    except ENGINE_ERRORS as exc:
        return engine_error(exc, "messages")

    def sse() -> Iterator[str]:
        started: set[int] = set()
        held: dict[int, list[StreamEvent]] = {}  # with tools: each whole reply, to parse once it is complete
        prompt_tokens = completion_tokens = 0
        for i, event in streams:  # the choices' events as they come, interleaved
            if i not in started:
                started.add(i)
                yield sse_data(chat_chunk(request_id, body.model, {"role": "assistant", "content": ""}, index=i))
            if tool_names:
                held.setdefault(i, []).append(event)
            elif event.text or event.logprobs:
                yield sse_data(chat_chunk(request_id, body.model, {"content": event.text}, index=i,
                                          logprobs=event.logprobs if body.logprobs else None))
            if event.finish is None:
                continue
            finish = event.finish
            prompt_tokens, completion_tokens = finish.prompt_tokens, completion_tokens + finish.completion_tokens
            reason = finish.finish_reason
            if tool_names:
                events = held.pop(i, [])
                content, calls = reply("".join(e.text for e in events))
                logprobs = [lp for e in events for lp in e.logprobs or []] if body.logprobs else None
                if calls:
                    reason = "tool_calls"
                    deltas = [{**call, "index": k} for k, call in enumerate(calls)]
                    yield sse_data(chat_chunk(request_id, body.model, {"content": content, "tool_calls": deltas},
                                              index=i, logprobs=logprobs))
                elif content:
                    yield sse_data(chat_chunk(request_id, body.model, {"content": content}, index=i,
                                              logprobs=logprobs))
            yield sse_data(chat_chunk(request_id, body.model, {}, reason, index=i))
        if body.include_usage():
            yield sse_data(chat_chunk(request_id, body.model, {}, usage=usage(prompt_tokens, completion_tokens),
                                      with_choice=False))
        yield DONE

    return event_stream(sse(), drain)
