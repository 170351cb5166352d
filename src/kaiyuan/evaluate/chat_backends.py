"""Chat backends: one small interface for "send messages, get a reply", used by the judge and the arena.

``LocalChat`` runs any model kaiyuan can load (registry id or name, local directory, ``.gguf``, hub id,
``tiny-llama``) through the transformers engine; ``EndpointChat`` talks to any OpenAI-compatible server
(kaiyuan's own ``kaiyuan serve``, vLLM, llama.cpp, a hosted API). ``backend_from_spec`` picks one from a
string: an ``http(s)://`` URL is an endpoint (the model name comes from ``model=`` or the URL's
``#fragment``), anything else a local model.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

from kaiyuan.data.templates import prompt_text
from kaiyuan.errors import KaiyuanError
from kaiyuan.models import resolve_model
from kaiyuan.serve.engines.base import SamplingParams


@runtime_checkable
class ChatBackend(Protocol):
    """Something that answers a conversation. ``temperature=0`` means greedy / deterministic."""

    name: str

    def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0) -> str: ...


class LocalChat:
    """A model kaiyuan can load, run with the transformers engine (loaded on first use)."""

    def __init__(self, ref: str, registry: Any = None) -> None:

        self.ref = ref
        self.artifact = resolve_model(ref, registry)
        self.name = self.artifact.name
        self._engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            from kaiyuan.serve.engines.transformers_engine import TransformersEngine

            self._engine = TransformersEngine.from_reference(self.artifact.id, model_id=self.name)
        return self._engine

    def prompt_tokens(self, messages: list[dict[str, str]]) -> int:

        tokenizer = self.engine.tokenizer
        return len(tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"])

    def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0) -> str:

        engine = self.engine
        used = self.prompt_tokens(messages)
        room = engine.context_length - used
        if room < 1:
            raise KaiyuanError(f"{self.name}: the prompt has {used} tokens, more than the model's context of "
                               f"{engine.context_length} tokens; use shorter questions or a model with a longer "
                               "context")
        params = SamplingParams(max_tokens=min(max_tokens, room), temperature=temperature)
        return engine.generate(messages, params).text


class EndpointChat:
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 600,
                 max_retries: int = 3, http_client: Any = None) -> None:
        from openai import OpenAI

        if not model:
            raise KaiyuanError(f"{base_url}: an endpoint needs a model name (--judge-model NAME, or URL#NAME)")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.name = model
        key = api_key or os.environ.get("KAIYUAN_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries,
                             http_client=http_client)

    def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0) -> str:
        import openai

        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages,  # type: ignore[arg-type]
                                                           max_tokens=max_tokens, temperature=temperature)
        except openai.APIStatusError as exc:
            raise KaiyuanError(f"{self.base_url} (model {self.model!r}): HTTP {exc.status_code}: "
                               f"{_first_line(exc.message)}") from None
        except openai.APIError as exc:
            raise KaiyuanError(f"{self.base_url} (model {self.model!r}): {type(exc).__name__}: "
                               f"{_first_line(str(exc))}") from None
        if not response.choices:
            raise KaiyuanError(f"{self.base_url} (model {self.model!r}): the reply has no choices")
        return response.choices[0].message.content or ""


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def normalize_base_url(url: str) -> str:
    """Drop a ``#fragment``; a bare ``http://host:port`` gets ``/v1`` (where OpenAI-compatible servers live)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def is_endpoint(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def backend_from_spec(spec: str, model: str | None = None, api_key: str | None = None,
                      registry: Any = None) -> ChatBackend:
    """An endpoint for ``http(s)://…`` (model from ``model`` or the URL's ``#fragment``), else a local model."""
    if is_endpoint(spec):
        name = model or urlsplit(spec).fragment
        if not name:
            raise KaiyuanError(f"{spec}: which model at this endpoint? Pass --judge-model NAME "
                               "(or write the URL as URL#NAME)")
        return EndpointChat(spec, name, api_key=api_key)
    if model:
        raise KaiyuanError(f"--judge-model {model!r} is only for an http(s):// endpoint; {spec!r} is a local model")
    return LocalChat(spec, registry=registry)
