"""The engine interface: the API layer talks to nothing else."""

from __future__ import annotations

from collections.abc import Collection, Iterator
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


# --- generation_config.json: the capability contract -------------------------------------------------------------
#
# A model's generation_config.json may set more than the request's own sampling parameters. Every field it sets is
# one of three kinds:
#
# * GENERATION_FIELDS: applied to every request by an engine whose ``generation_fields`` names it (both built-in
#   engines apply all of them, as transformers' own logits processors do), over the prompt and the tokens generated
#   so far. A request may set them too (``extra_body``), over the model's values; a request setting one the engine
#   does not apply is refused (400, ``param`` naming the field). ``eos_token_id`` adds tokens that end generation to
#   the engine's end-of-turn tokens.
# * REQUEST_FIELDS and INERT_FIELDS: the request's own parameters decide (temperature, top_p, …, as OpenAI's API
#   has them), or the field does not change what tokens come out (token ids of padding, caching, output options).
# * anything else (num_beams, typical_p, min_p, sequence_bias, …): applied by no engine. A model setting one is
#   served with a warning naming it (:func:`split_generation_config`); a request naming one is refused (400).

GENERATION_FIELDS: tuple[str, ...] = (
    "repetition_penalty", "no_repeat_ngram_size", "min_length", "min_new_tokens", "suppress_tokens",
    "begin_suppress_tokens", "bad_words_ids", "forced_eos_token_id", "eos_token_id", "exponential_decay_length_penalty",
)
REQUEST_FIELDS: tuple[str, ...] = ("do_sample", "temperature", "top_p", "top_k", "max_new_tokens", "max_length",
                                   "num_return_sequences", "stop_strings")
INERT_FIELDS: tuple[str, ...] = (
    "_from_model_config", "transformers_version", "bos_token_id", "pad_token_id", "decoder_start_token_id",
    "use_cache", "cache_implementation", "cache_config", "max_cache_len", "compile_config", "disable_compile",
    "prefill_chunk_size", "continuous_batching_config", "return_dict_in_generate", "output_scores", "output_logits",
    "output_attentions", "output_hidden_states", "remove_invalid_values", "low_memory", "max_time",
)

# generation_config fields known to be applied by no engine (a request naming one is told so, with the 400)
UNAPPLIED_FIELDS: tuple[str, ...] = (
    "num_beams", "num_beam_groups", "diversity_penalty", "length_penalty", "early_stopping", "typical_p", "min_p",
    "top_h", "epsilon_cutoff", "eta_cutoff", "sequence_bias", "forced_bos_token_id", "encoder_repetition_penalty",
    "encoder_no_repeat_ngram_size", "penalty_alpha", "guidance_scale", "renormalize_logits", "watermarking_config",
    "force_words_ids", "constraints", "token_healing", "dola_layers",
)


def split_generation_config(config: Any) -> tuple[dict[str, Any], list[str]]:
    """The GENERATION_FIELDS a generation config (a transformers ``GenerationConfig``, or a dict) sets away from
    transformers' defaults, and the names of the fields it sets that no engine applies (to warn about)."""
    if config is None:
        return {}, []
    values = dict(config) if isinstance(config, dict) else config.to_diff_dict()
    applied = {k: v for k, v in values.items() if k in GENERATION_FIELDS and v is not None}
    if applied.get("repetition_penalty") == 1.0:
        del applied["repetition_penalty"]
    unapplied = sorted(k for k, v in values.items()
                       if k not in GENERATION_FIELDS + REQUEST_FIELDS + INERT_FIELDS and v is not None)
    return applied, unapplied


def unapplied_warning(model_id: str, fields: list[str]) -> str:
    return (f"model {model_id}: its generation_config sets {', '.join(fields)}, which no kaiyuan engine applies: "
            "served without (requests get what the model gives without them)")


def check_generation_fields(fields: dict[str, Any], applied: Collection[str], engine: str) -> None:
    """Refuse a request's generation field the engine does not apply (``applied``: its ``generation_fields``)."""
    for name in fields:
        if name not in applied:
            raise UnsupportedRequestError(f"{name}: the {engine} engine does not apply this generation field",
                                          param=name)


def check_generation_tokens(fields: dict[str, Any], vocab_size: int) -> None:
    """Refuse generation fields naming tokens the model does not have."""
    def ids(name: str, value: Any) -> list[int]:
        if name == "bad_words_ids":
            return [t for word in value for t in word]
        if name in ("suppress_tokens", "begin_suppress_tokens", "forced_eos_token_id", "eos_token_id"):
            return [value] if isinstance(value, int) else list(value)
        return []

    for name, value in fields.items():
        for token in ids(name, value):
            if not 0 <= token < vocab_size:
                raise UnsupportedRequestError(f"{name} names token {token}, but this model's token ids lie in "
                                              f"[0, {vocab_size})", param=name)


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
    generation: dict[str, Any] = field(default_factory=dict)  # GENERATION_FIELDS the request sets (over the model's)


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
