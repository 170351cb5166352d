"""The FastAPI app: OpenAI-compatible routes over the engine interface.

Routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` (the last two for
engines that are a ``CompletionEngine`` / ``EmbeddingEngine``), and a public ``/health``. Each route is thin: the
handlers are :mod:`kaiyuan.serve.serving_chat`, :mod:`~kaiyuan.serve.serving_completion` and
:mod:`~kaiyuan.serve.serving_embedding`; errors are answered by :mod:`kaiyuan.serve.errors`. The API-key check and
body validation are :class:`kaiyuan.serve.guard.RequestGuard`; ``/metrics`` and the admission limits are added
around the app by :func:`kaiyuan.serve.operations.with_operations`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from kaiyuan import __version__
from kaiyuan.serve.engines.base import Engine
from kaiyuan.serve.errors import add_error_handlers
from kaiyuan.serve.guard import PUBLIC_PATHS, RequestGuard, hash_api_key
from kaiyuan.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from kaiyuan.serve.serving_chat import create_chat_completion
from kaiyuan.serve.serving_completion import create_completion
from kaiyuan.serve.serving_embedding import create_embedding
from kaiyuan.serve.streaming import Drain

__all__ = ["PUBLIC_PATHS", "create_app", "hash_api_key"]


def _openapi(app: FastAPI, engines: dict[str, Engine]) -> Any:
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

    return openapi


def create_app(engines: dict[str, Engine], api_key_hashes: list[str] | None = None,
               default_max_tokens: int = 256, with_ui: bool = False) -> FastAPI:
    """An app serving ``engines`` by model name. With ``api_key_hashes`` (sha256 hex of each key),
    every route but ``/health`` needs ``Authorization: Bearer <key>``. ``with_ui``: the web UI is mounted beside
    (:func:`kaiyuan.web.app.mount_ui`): the key check and JSON body checks then apply to the API's paths only."""
    app = FastAPI(title="kaiyuan", version=__version__)
    drain = Drain()
    app.state.drain = drain  # the server starts it on SIGTERM; streams past the grace period end with an error event
    app.state.engines = engines
    app.state.default_max_tokens = default_max_tokens
    key_hashes = [h.lower() for h in api_key_hashes or []]
    for stored in key_hashes:
        if stored == hash_api_key(""):
            raise ValueError("an empty API key would let anyone in: give a non-empty key")

    app.add_middleware(RequestGuard, api_key_hashes=key_hashes, api_paths_only=with_ui)
    add_error_handlers(app)
    app.openapi = _openapi(app, engines)  # type: ignore[method-assign]

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
        return await create_chat_completion(engines, body, default_max_tokens=default_max_tokens, drain=drain)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest) -> Any:
        return await create_completion(engines, body, drain=drain)

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest) -> Any:
        return await create_embedding(engines, body)

    return app
