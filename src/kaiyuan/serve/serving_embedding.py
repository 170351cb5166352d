"""``POST /v1/embeddings``, for engines that are an :class:`~kaiyuan.serve.engines.base.EmbeddingEngine`: one
L2-normalized vector per input; with ``dimensions``, cut to that length and normalized again."""

from __future__ import annotations

import math
from typing import Any

from starlette.concurrency import run_in_threadpool

from kaiyuan.serve.engines.base import EmbeddingEngine, Engine
from kaiyuan.serve.errors import ENGINE_ERRORS, engine_error, error_response, model_not_supported
from kaiyuan.serve.protocol import EmbeddingRequest, embedding_item
from kaiyuan.serve.serving_engine import find_engine


async def create_embedding(engines: dict[str, Engine], body: EmbeddingRequest) -> Any:
    """The embeddings of ``body``'s inputs, or the error response."""
    engine, missing = find_engine(engines, body.model)
    if missing:
        return missing
    if not isinstance(engine, EmbeddingEngine):
        return model_not_supported(body.model, "embeddings")
    try:
        results = await run_in_threadpool(engine.embed, body.inputs())
    except ENGINE_ERRORS as exc:
        return engine_error(exc, "input")
    data = []
    for i, result in enumerate(results):
        vector = result.vector
        if body.dimensions is not None:
            if body.dimensions > len(vector):
                return error_response(400, f"dimensions must be at most {len(vector)} for this model",
                                      param="dimensions")
            vector = vector[: body.dimensions]
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vector = [v / norm for v in vector]
        data.append(embedding_item(i, vector, body.encoding_format))
    tokens = sum(r.tokens for r in results)
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
