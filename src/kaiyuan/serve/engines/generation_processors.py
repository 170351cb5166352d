"""The :data:`~kaiyuan.serve.engines.base.GENERATION_FIELDS` of one request as transformers' own logits processors
(``transformers.generation.logits_process``), built as ``generate`` builds them and in its order, for one row of
logits at a time: the input ids they see are the request's prompt and the tokens generated so far (no padding),
the end-of-sequence ids are the request's stop tokens.

Both engines use them: the transformers engine on each row of a batched decode step, the llama.cpp engine on the
logits row llama.cpp returns (as a tensor). ``penalty`` (the repetition penalty) runs before the log-probabilities
are taken, ``rest`` after them (so reported log-probabilities stay the model's, with no banned ``-inf``); ``settle``
keeps what comes out drawable (no ``+inf`` or NaN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.generation.logits_process import (
    ExponentialDecayLengthPenalty,
    ForcedEOSTokenLogitsProcessor,
    LogitsProcessorList,
    MinLengthLogitsProcessor,
    MinNewTokensLengthLogitsProcessor,
    NoBadWordsLogitsProcessor,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)

from kaiyuan.serve.engines.base import UnsupportedRequestError


def stop_ids_with(stop_ids: list[int] | set[int], fields: dict[str, Any]) -> list[int]:
    """The engine's end-of-turn tokens plus the ``eos_token_id`` field's."""
    extra = fields.get("eos_token_id")
    extra = [] if extra is None else [extra] if isinstance(extra, int) else list(extra)
    return sorted({*stop_ids, *extra})


@dataclass
class GenerationProcessors:
    penalty: LogitsProcessorList
    rest: LogitsProcessorList
    end: int  # the token that ends a row the processors leave nothing finite in (the first stop token)

    def __bool__(self) -> bool:
        return bool(self.penalty or self.rest)

    def settle(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores the samplers can draw from: ``+inf`` (an overflowing length penalty or a tiny repetition penalty)
        becomes the largest float, NaN ``-inf``; a row with no finite score left gets ``end`` alone."""
        if bool(torch.isfinite(scores).all()):
            return scores
        scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=torch.finfo(scores.dtype).max, neginf=float("-inf"))
        if not bool(torch.isfinite(scores).any()):
            scores = torch.full_like(scores, float("-inf"))
            scores[..., self.end] = 0.0
        return scores

    @staticmethod
    def input_ids(prompt_ids: list[int], generated: list[int], device: Any = None) -> torch.Tensor:
        return torch.tensor([prompt_ids + generated], dtype=torch.long, device=device)


def generation_processors(fields: dict[str, Any], prompt_length: int, max_tokens: int,
                          stop_ids: list[int]) -> GenerationProcessors:
    """The processors for ``fields`` (GENERATION_FIELDS by name) of a request whose prompt has ``prompt_length``
    tokens and which may generate ``max_tokens``; ``stop_ids``: the tokens that end it (``eos_token_id`` included).
    A value transformers refuses raises UnsupportedRequestError naming the field."""
    try:  # the processors check their values as they are made
        return _processors(fields, prompt_length, max_tokens, stop_ids)
    except ValueError as exc:
        field = next((f for f in fields if f in str(exc)), None)
        raise UnsupportedRequestError(f"{field or 'generation fields'}: {exc}", param=field) from exc


def _processors(fields: dict[str, Any], prompt_length: int, max_tokens: int,
                stop_ids: list[int]) -> GenerationProcessors:
    penalty, rest = LogitsProcessorList(), LogitsProcessorList()
    eos = torch.tensor(stop_ids, dtype=torch.long)
    if (value := fields.get("repetition_penalty")) is not None and value != 1.0:
        penalty.append(RepetitionPenaltyLogitsProcessor(float(value)))
    if (value := fields.get("no_repeat_ngram_size")) is not None and value > 0:
        rest.append(NoRepeatNGramLogitsProcessor(int(value)))
    if value := fields.get("bad_words_ids"):  # [] bans nothing
        rest.append(NoBadWordsLogitsProcessor([list(word) for word in value], eos))
    if (value := fields.get("min_length")) is not None and value > 0:
        rest.append(MinLengthLogitsProcessor(int(value), eos))
    if (value := fields.get("min_new_tokens")) is not None and value > 0:
        rest.append(MinNewTokensLengthLogitsProcessor(prompt_length, int(value), eos))
    if (value := fields.get("forced_eos_token_id")) is not None:
        rest.append(ForcedEOSTokenLogitsProcessor(prompt_length + max_tokens, value))
    if (value := fields.get("exponential_decay_length_penalty")) is not None:
        start, factor = value
        rest.append(ExponentialDecayLengthPenalty((int(start), float(factor)), eos, prompt_length))
    if (value := fields.get("suppress_tokens")) is not None:
        rest.append(SuppressTokensLogitsProcessor(list(value)))
    if (value := fields.get("begin_suppress_tokens")) is not None:
        rest.append(SuppressTokensAtBeginLogitsProcessor(list(value), prompt_length))
    return GenerationProcessors(penalty, rest, stop_ids[0])
