"""The llama.cpp engine (SmolLM2-135M-Instruct GGUF) applies every generation field as transformers' own logits
processor does, on the logits row llama.cpp returns; and ``n > 1`` through the API runs the choices in one batch
(about as many ``llama_decode`` calls as one choice takes, not n times as many)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

import torch  # noqa: E402
from transformers.generation.logits_process import (  # noqa: E402
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

from kaiyuan.serve.engines import llamacpp_engine  # noqa: E402
from kaiyuan.serve.engines.base import GENERATION_FIELDS, SamplingParams  # noqa: E402
from kaiyuan.serve.engines.llamacpp_engine import LlamaCppEngine  # noqa: E402

TOKENS = 10
MESSAGES = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def engine():
    from kaiyuan.models import smollm2_gguf_path

    with LlamaCppEngine.from_path(smollm2_gguf_path(), n_ctx=512, n_parallel=4) as running:
        yield running


def recording(engine, monkeypatch):
    """Each sampled step's raw logits, ids so far (prompt + generated) and the scores sampled from."""
    steps: list[list] = []
    choose, sample = engine._choose, llamacpp_engine.sample_token

    def spy_choose(request, logits):
        steps.append([logits.copy(), request.prompt_ids + request.generated])
        return choose(request, logits)

    def spy_sample(scores, params, rng):
        steps[-1].append(np.array(scores, copy=True))
        return sample(scores, params, rng)

    monkeypatch.setattr(engine, "_choose", spy_choose)
    monkeypatch.setattr(llamacpp_engine, "sample_token", spy_sample)
    return steps


@pytest.fixture(scope="module")
def greedy_ids(engine):
    """The greedy continuation's token ids (for fields that name tokens it would produce)."""
    with pytest.MonkeyPatch.context() as patch:
        steps = recording(engine, patch)
        result = engine.generate(MESSAGES, SamplingParams(max_tokens=TOKENS, temperature=0))
    generated = steps[-1][1][-(result.completion_tokens - 1):]
    return [*generated, int(np.argmax(steps[-1][0]))]


def cases(first: int, second: int, stops: list[int], prompt: int) -> dict:
    """Field values and the processors transformers builds for them."""
    return {
        "repetition_penalty": ({"repetition_penalty": 1.5}, [RepetitionPenaltyLogitsProcessor(1.5)]),
        "no_repeat_ngram_size": ({"no_repeat_ngram_size": 1}, [NoRepeatNGramLogitsProcessor(1)]),
        "min_new_tokens": ({"min_new_tokens": 3, "eos_token_id": second},
                           [MinNewTokensLengthLogitsProcessor(prompt, 3, sorted({*stops, second}))]),
        "min_length": ({"min_length": prompt + 3, "eos_token_id": [second]},
                       [MinLengthLogitsProcessor(prompt + 3, sorted({*stops, second}))]),
        "eos_token_id": ({"eos_token_id": [second]}, []),
        "suppress_tokens": ({"suppress_tokens": [first, second]}, [SuppressTokensLogitsProcessor([first, second])]),
        "begin_suppress_tokens": ({"begin_suppress_tokens": [first]},
                                  [SuppressTokensAtBeginLogitsProcessor([first], prompt)]),
        "bad_words_ids": ({"bad_words_ids": [[first, second]]}, [NoBadWordsLogitsProcessor([[first, second]], stops)]),
        "forced_eos_token_id": ({"forced_eos_token_id": stops[0]},
                                [ForcedEOSTokenLogitsProcessor(prompt + TOKENS, stops[0])]),
        "exponential_decay_length_penalty": ({"exponential_decay_length_penalty": (1, 2.0)},
                                             [ExponentialDecayLengthPenalty((1, 2.0), stops, prompt)]),
    }


def test_every_field_is_applied(engine):
    assert engine.generation_fields == set(GENERATION_FIELDS)
    assert set(cases(1, 2, [3], 4)) == set(GENERATION_FIELDS)


@pytest.mark.parametrize("name", GENERATION_FIELDS)
def test_scores_are_transformers_processors_on_llamacpps_logits(engine, greedy_ids, name, monkeypatch):
    prompt = len(engine.prompt_ids(MESSAGES, SamplingParams()))
    fields, processors = cases(greedy_ids[0], greedy_ids[1], engine._stop_ids, prompt)[name]
    steps = recording(engine, monkeypatch)
    result = engine.generate(MESSAGES, SamplingParams(max_tokens=TOKENS, temperature=0, generation=fields))
    assert len(steps) == result.completion_tokens
    expected = LogitsProcessorList(processors)
    for logits, ids, scores in steps:
        want = expected(torch.tensor([ids]), torch.from_numpy(logits.astype(np.float32))[None])[0].numpy()
        assert np.array_equal(scores, want)
    changed = engine.generate(MESSAGES, SamplingParams(max_tokens=TOKENS, temperature=0))
    assert result.text != changed.text or name == "exponential_decay_length_penalty"  # each field shows


def test_n_choices_share_llama_decode_calls(engine):
    import openai

    from kaiyuan.serve.routes import create_app
    from kaiyuan.serve.server import BackgroundServer

    def decode_calls(**options):
        before = engine.stats.decode_calls
        engine.stats.max_running = 0
        reply = client.chat.completions.create(model="smol", messages=MESSAGES, max_tokens=TOKENS, temperature=1.0,
                                               seed=1, **options)
        return reply, engine.stats.decode_calls - before, engine.stats.max_running

    with BackgroundServer(create_app({"smol": engine})) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        _, one, _ = decode_calls()
        reply, four, running = decode_calls(n=4)
    assert running == 4 and len(reply.choices) == 4
    assert four < 2 * one  # not 4 x: the choices decode in the same llama_decode calls
