"""The engine interface: the API layer talks to nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


class ContextLengthError(ValueError):
    """The prompt plus the requested tokens do not fit the model's context window."""


class UnsupportedRequestError(ValueError):
    """The engine cannot honour a (well-formed) request option, e.g. a JSON schema feature it does not know.
    ``param``: the request field to blame (the API layer names it in the 400), when the raiser knows it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class EngineUnavailableError(RuntimeError):
    """The engine cannot take requests (its scheduler stopped): the API answers 503."""


STALL_AFTER_S = 60.0  # an engine with work that has not advanced for this long reports itself unhealthy

SAMPLING_EPSILON = 1e-5  # a temperature below this samples greedily (as vLLM does): 1 / 2.2e-308 overflows


def is_greedy(temperature: float) -> bool:
    return temperature < SAMPLING_EPSILON


def check_logit_bias(params: SamplingParams, vocab_size: int) -> None:
    """Refuse a ``logit_bias`` naming a token the model does not have."""
    for token in params.logit_bias or {}:
        if not 0 <= token < vocab_size:
            raise UnsupportedRequestError(f"logit_bias names token {token}, but this model's token ids lie in "
                                          f"[0, {vocab_size})", param="logit_bias")


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    top_k: int = 0  # 0: no top-k filtering
    logprobs: bool = False  # report each generated token's log-probability (Generation/StreamEvent.logprobs)
    top_logprobs: int = 0  # and this many most likely alternatives at each position
    json_schema: dict[str, Any] | None = None  # constrain the output to JSON matching this schema ({} = any JSON)
    tools: list[dict[str, Any]] | None = None  # OpenAI-style tool definitions to render into the prompt
    fit_context: bool = False  # shrink max_tokens to the room the prompt leaves instead of raising ContextLengthError
    logit_bias: dict[int, float] | None = None  # added to the token's logit before sampling (-100 bans it)
    presence_penalty: float = 0.0  # subtracted from the logit of every token generated so far (OpenAI's rule)
    frequency_penalty: float = 0.0  # times the number of times the token was generated so far


@dataclass
class TokenLogprob:
    """One token's log-probability (and, as the outer entry, its most likely alternatives)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None = None  # set when SamplingParams.logprobs asked for them


@dataclass
class StreamEvent:
    """A piece of text; the last event also carries the finish reason and token counts."""

    text: str
    finish: Generation | None = None
    logprobs: list[TokenLogprob] | None = None  # the tokens generated since the previous event


@dataclass
class Embedding:
    vector: list[float]
    tokens: int


class Engine(Protocol):
    """Optional besides: ``health() -> str | None`` (what is wrong, for /health) and ``fatal`` (True once the engine
    can never serve again: the server then exits so that a supervisor restarts it)."""

    model_id: str
    context_length: int

    def generate(self, messages: list[dict[str, Any]], params: SamplingParams) -> Generation: ...

    def stream(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[StreamEvent]: ...


@runtime_checkable
class CompletionEngine(Engine, Protocol):
    """Optional: raw-text completion (``/v1/completions``); the prompt is text or token ids, no chat template.
    The API checks for it with ``isinstance(engine, CompletionEngine)``."""

    def complete(self, prompt: str | list[int], params: SamplingParams) -> Generation: ...

    def complete_stream(self, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]: ...


@runtime_checkable
class EmbeddingEngine(Protocol):
    """Optional: ``/v1/embeddings``; one L2-normalized vector per input (text or token ids). The API checks for it
    with ``isinstance(engine, EmbeddingEngine)``."""

    context_length: int

    def embed(self, inputs: list[str] | list[list[int]]) -> list[Embedding]: ...
