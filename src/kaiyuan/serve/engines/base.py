"""The engine interface: the API layer talks to nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol


class ContextLengthError(ValueError):
    """The prompt plus the requested tokens do not fit the model's context window."""


@dataclass
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StreamEvent:
    """A piece of text; the last event also carries the finish reason and token counts."""

    text: str
    finish: Generation | None = None


class Engine(Protocol):
    model_id: str
    context_length: int

    def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Generation: ...

    def stream(self, messages: list[dict[str, str]], params: SamplingParams) -> Iterator[StreamEvent]: ...
