"""``POST /v1/completions``: raw-text completion, for engines that are a
:class:`~kaiyuan.serve.engines.base.CompletionEngine`. Each prompt gets ``n`` choices (choice *i* with
``seed + i``), indexed prompt by prompt; all of them generated at once, so that the engine batches them, and
streamed as they come, interleaved."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kaiyuan.serve.engines.base import CompletionEngine, Engine
from kaiyuan.serve.errors import ENGINE_ERRORS, engine_error, model_not_supported
from kaiyuan.serve.protocol import (
    CompletionRequest,
    completion_logprobs,
    text_choice,
    text_completion,
    text_completion_id,
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

DEFAULT_COMPLETION_TOKENS = 16  # OpenAI's default max_tokens for /v1/completions


async def create_completion(engines: dict[str, Engine], body: CompletionRequest, *, drain: Drain) -> Any:
    """The text completion (or its event stream) for ``body``, or the error response."""
    engine, missing = find_engine(engines, body.model)
    if missing:
        return missing
    if not isinstance(engine, CompletionEngine):
        return model_not_supported(body.model, "text completions")
    params = sampling_params(body, body.max_tokens or DEFAULT_COMPLETION_TOKENS, fit_context=body.max_tokens is None)
    params.logprobs = body.logprobs is not None
    params.top_logprobs = body.logprobs or 0
    if (refused := refuse_generation_fields(engine, params)) is not None:
        return refused
    prompts = body.prompts()
    jobs = [(p * body.n + i, prompt, seeded(params, i)) for p, prompt in enumerate(prompts)
            for i in range(body.n)]
    request_id = text_completion_id()

    if not body.stream:
        choices, prompt_tokens, completion_tokens = [], 0, 0
        try:  # every prompt's n choices at once: the engine batches them
            results = await run_choices([lambda prompt=prompt, job=job: engine.complete(prompt, job)
                                         for _, prompt, job in jobs])
        except ENGINE_ERRORS as exc:
            return engine_error(exc, "prompt")
        for (index, _, _), result in zip(jobs, results, strict=True):
            if index % body.n == 0:
                prompt_tokens += result.prompt_tokens
            completion_tokens += result.completion_tokens
            choices.append(text_choice(index, result.text, result.finish_reason,
                                       completion_logprobs(result.logprobs)))
        return text_completion(request_id, body.model, choices, usage(prompt_tokens, completion_tokens))

    streams = ChoiceStreams([lambda prompt=prompt, job_params=job_params: engine.complete_stream(prompt, job_params)
                             for _, prompt, job_params in jobs])
    try:
        await streams.start()
    except ENGINE_ERRORS as exc:
        return engine_error(exc, "prompt")

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
                yield sse_data(text_completion(request_id, body.model,
                                               [text_choice(index, event.text, reason, logprobs)], None))
            if event.finish is not None:
                if index % body.n == 0:
                    prompt_tokens += event.finish.prompt_tokens
                completion_tokens += event.finish.completion_tokens
        if body.include_usage():
            chunk = text_completion(request_id, body.model, [], usage(prompt_tokens, completion_tokens))
            yield sse_data(chunk)
        yield DONE

    return event_stream(sse(), drain)
