"""The generation_config fields (``GENERATION_FIELDS``) on the transformers engine and tiny-llama: each one applied
exactly as transformers' own logits processor applies it (the engine's next-token scores equal the processor's output
on the same logits, and greedy text equals ``model.generate`` with the field), from the model's generation_config or
from the request (``extra_body``); a field no engine applies is warned about at load time and refused (400 naming it)
in a request."""

from __future__ import annotations

import dataclasses
import warnings

import openai
import pytest
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

from kaiyuan.serve.engines import transformers_batching
from kaiyuan.serve.engines.base import GENERATION_FIELDS, SamplingParams, split_generation_config
from kaiyuan.serve.engines.transformers_batching import BatchScheduler
from kaiyuan.serve.engines.transformers_engine import TransformersEngine, Vocabulary
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer

PROMPT = "Convert March 3, 1999 to ISO"  # 13 tokens; greedy: " ISO" again and again
MESSAGES = [{"role": "user", "content": "hello"}]
TOKENS = 12
ISO, TILDE = 329, 102  # tiny-llama's " ISO" and "~"
STOPS = [0, 2, 7, 8]  # its end-of-turn tokens

# each field: the values set, and the processors transformers' generate builds for them (given the prompt length)
CASES = {
    "repetition_penalty": ({"repetition_penalty": 20.0}, lambda p: [RepetitionPenaltyLogitsProcessor(20.0)]),
    "no_repeat_ngram_size": ({"no_repeat_ngram_size": 2}, lambda p: [NoRepeatNGramLogitsProcessor(2)]),
    "min_new_tokens": ({"min_new_tokens": 4, "eos_token_id": ISO},
                       lambda p: [MinNewTokensLengthLogitsProcessor(p, 4, [*STOPS, ISO])]),
    "min_length": ({"min_length": 13 + 5, "eos_token_id": [ISO]},
                   lambda p: [MinLengthLogitsProcessor(p + 5, [*STOPS, ISO])]),
    "eos_token_id": ({"eos_token_id": [ISO, TILDE]}, lambda p: []),
    "suppress_tokens": ({"suppress_tokens": [ISO, TILDE]},
                        lambda p: [SuppressTokensLogitsProcessor([ISO, TILDE])]),
    "begin_suppress_tokens": ({"begin_suppress_tokens": [ISO]},
                              lambda p: [SuppressTokensAtBeginLogitsProcessor([ISO], p)]),
    "bad_words_ids": ({"bad_words_ids": [[ISO, ISO], [TILDE]]},
                      lambda p: [NoBadWordsLogitsProcessor([[ISO, ISO], [TILDE]], STOPS)]),
    "forced_eos_token_id": ({"forced_eos_token_id": 2}, lambda p: [ForcedEOSTokenLogitsProcessor(p + TOKENS, 2)]),
    "exponential_decay_length_penalty": ({"exponential_decay_length_penalty": (2, 1.5), "eos_token_id": ISO},
                                         lambda p: [ExponentialDecayLengthPenalty((2, 1.5), [*STOPS, ISO], p)]),
}


def test_every_applied_field_has_a_case():
    assert set(CASES) == set(GENERATION_FIELDS)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(tmp_path_factory.mktemp("serve-fields-home")))
        from kaiyuan.models import resolve_model

        yield TransformersEngine.from_reference(resolve_model("tiny-llama").id, "tiny")


def greedy(**generation) -> SamplingParams:
    return SamplingParams(max_tokens=TOKENS, temperature=0, generation=generation)


def reference(engine: TransformersEngine, fields: dict) -> tuple[str, int]:
    """transformers' generate, greedy, with the fields (eos_token_id: added to the engine's stop tokens)."""
    ids = engine.tokenizer(PROMPT)["input_ids"]
    options = dict(fields)
    extra = options.pop("eos_token_id", [])
    eos = sorted({*STOPS, *([extra] if isinstance(extra, int) else extra)})
    with torch.inference_mode():
        output = engine.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=TOKENS, do_sample=False, eos_token_id=eos, **options)
    new = output[0, len(ids):]
    return engine.tokenizer.decode(new, skip_special_tokens=True), len(new)


@pytest.mark.parametrize("name", list(CASES))
def test_next_token_scores_are_transformers_processors_on_the_same_logits(engine, name, monkeypatch):
    fields, processors = CASES[name]
    scheduler = BatchScheduler(engine.model)
    probe = TransformersEngine(engine.model, engine.tokenizer, "probe", scheduler=scheduler)
    seen: list[tuple[torch.Tensor, list[int]]] = []  # each step's raw logits row and the ids so far
    scored: list[torch.Tensor] = []  # the scores the engine sampled from
    advance, sample = scheduler._advance, transformers_batching.sample

    def spy_advance(request, logits):
        seen.append((logits.float().clone(), request.prompt_ids + request.generated))
        return advance(request, logits)

    def spy_sample(scores, params, generator):
        scored.append(scores.clone())
        return sample(scores, params, generator)

    monkeypatch.setattr(scheduler, "_advance", spy_advance)
    monkeypatch.setattr(transformers_batching, "sample", spy_sample)
    result = probe.complete(PROMPT, greedy(**fields))
    prompt_length = len(engine.tokenizer(PROMPT)["input_ids"])
    expected = LogitsProcessorList(processors(prompt_length))
    assert len(seen) == len(scored) == result.completion_tokens
    for (logits, ids), scores in zip(seen, scored, strict=True):
        assert torch.equal(scores, expected(torch.tensor([ids]), logits[None])[0])
    assert (result.text, result.completion_tokens) == reference(engine, fields)


@pytest.mark.parametrize("name", list(CASES))
def test_fields_from_the_generation_config_apply_to_every_request(engine, name, monkeypatch):
    fields = CASES[name][0]
    for key, value in fields.items():
        monkeypatch.setattr(engine.model.generation_config, key, list(value) if isinstance(value, tuple) else value)
    configured = TransformersEngine(engine.model, engine.tokenizer, "configured")
    assert set(fields) <= set(configured.generation_defaults) <= {*fields, "eos_token_id"}  # tiny's own eos: 2
    assert configured.complete(PROMPT, greedy()) == engine.complete(PROMPT, greedy(**fields))


def test_fields_change_the_greedy_output(engine):
    def complete(**generation):
        return engine.complete(PROMPT, greedy(**generation))

    assert complete().text == " ISO" * TOKENS
    assert complete(eos_token_id=ISO).completion_tokens == 1
    assert complete(eos_token_id=ISO, exponential_decay_length_penalty=(2, 1.5)).completion_tokens == 1
    assert complete(eos_token_id=ISO, min_new_tokens=4).completion_tokens == TOKENS  # " ISO" never once allowed
    assert complete(eos_token_id=ISO, min_length=13 + 4).completion_tokens == TOKENS
    assert complete(no_repeat_ngram_size=2).text.count(" ISO") == 3  # no " ISO ISO", and no bigram twice
    for banned in (complete(suppress_tokens=[ISO]), complete(begin_suppress_tokens=[ISO]),
                   complete(bad_words_ids=[[ISO, ISO]])):
        assert not banned.text.startswith(" ISO")
    forced = complete(forced_eos_token_id=2)
    assert (forced.text, forced.finish_reason, forced.completion_tokens) == (" ISO" * (TOKENS - 1), "stop", TOKENS)
    assert complete(repetition_penalty=20.0).text.count(" ISO") == 0


def test_bad_token_ids_are_refused(engine):
    from kaiyuan.serve.engines.base import UnsupportedRequestError

    with pytest.raises(UnsupportedRequestError, match="suppress_tokens names token 512") as caught:
        engine.complete(PROMPT, greedy(suppress_tokens=[512]))
    assert caught.value.param == "suppress_tokens"


def test_unapplied_generation_config_fields_are_warned_about_at_load(engine, monkeypatch):
    monkeypatch.setattr(engine.model.generation_config, "num_beams", 4)
    monkeypatch.setattr(engine.model.generation_config, "typical_p", 0.5)
    monkeypatch.setattr(engine.model.generation_config, "temperature", 0.7)  # the request's own: no warning
    with pytest.warns(UserWarning, match=r"model warned: its generation_config sets num_beams, typical_p, which no"):
        warned = TransformersEngine(engine.model, engine.tokenizer, "warned")
    assert warned.generation_defaults == {"eos_token_id": 2}  # and it serves, without them
    assert warned.complete(PROMPT, greedy()) == engine.complete(PROMPT, greedy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.undo()
        TransformersEngine(engine.model, engine.tokenizer, "quiet")
    assert split_generation_config({"eos_token_id": [1, 2], "pad_token_id": 0, "do_sample": True,
                                    "repetition_penalty": 1.0, "min_p": 0.1}) == ({"eos_token_id": [1, 2]}, ["min_p"])


# --- through the API, with the openai client ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(engine):
    class Refusing:  # an engine that applies no generation field
        model_id, context_length, generation_fields = "refusing", 512, frozenset()

        def generate(self, messages, params):
            raise AssertionError("not reached")

        def stream(self, messages, params):
            raise AssertionError("not reached")

    with BackgroundServer(create_app({"tiny": engine, "refusing": Refusing()})) as server:
        yield openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)


def token_ids(engine, entries):
    piece_of = {byte: ch for ch, byte in Vocabulary(engine.tokenizer).byte_decoder.items()}
    return [engine.tokenizer.convert_tokens_to_ids("".join(piece_of[b] for b in e.bytes)) for e in entries]


def bigrams(ids):
    return list(zip(ids, ids[1:], strict=False))


def test_no_repeat_ngram_size_through_the_api(client, engine):
    def reply(**extra):
        return client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=TOKENS, temperature=0,
                                              logprobs=True, extra_body=extra or None).choices[0]

    plain, banned = reply(), reply(no_repeat_ngram_size=2)
    plain_ids, banned_ids = token_ids(engine, plain.logprobs.content), token_ids(engine, banned.logprobs.content)
    assert len(set(bigrams(plain_ids))) < len(bigrams(plain_ids))  # greedy alone repeats a bigram ("\n\n" …)
    assert len(set(bigrams(banned_ids))) == len(bigrams(banned_ids)) == TOKENS - 1  # not with the field
    direct = engine.generate(MESSAGES, greedy(no_repeat_ngram_size=2))
    assert banned.message.content == direct.text != plain.message.content
    streamed = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=TOKENS, temperature=0, stream=True,
                                         extra_body={"no_repeat_ngram_size": 2})
    assert "".join(c.choices[0].text for c in streamed if c.choices) == \
        engine.complete(PROMPT, greedy(no_repeat_ngram_size=2)).text


@pytest.mark.parametrize(("model", "extra", "param", "message"), [
    ("tiny", {"num_beams": 4}, "num_beams", "generation_config field is applied by no engine"),
    ("tiny", {"typical_p": 0.5}, "typical_p", "generation_config field is applied by no engine"),
    ("tiny", {"suppress_tokens": [99999]}, "suppress_tokens", "names token 99999"),
    ("tiny", {"bad_words_ids": [[]]}, "bad_words_ids", "1 to 256 token ids"),
    ("refusing", {"no_repeat_ngram_size": 2}, "no_repeat_ngram_size", "does not apply this generation field"),
])
def test_refused_fields_are_400s_naming_them(client, model, extra, param, message):
    for create in (lambda: client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4,
                                                          extra_body=extra),
                   lambda: client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=4,
                                                          extra_body=extra, stream=True, n=2)):
        with pytest.raises(openai.BadRequestError, match=message) as caught:
            create()
        assert caught.value.response.json()["error"]["param"] == param


def test_sampled_choices_keep_their_fields(engine):
    params = dataclasses.replace(greedy(no_repeat_ngram_size=2), temperature=1.0, seed=4)
    text = engine.complete(PROMPT, params).text
    assert engine.complete(PROMPT, params).text == text  # seeded and reproducible with the processors on


def test_overflowing_and_all_banning_fields_still_sample(engine):
    sampled = SamplingParams(max_tokens=4, temperature=1.0, seed=0)
    tiny_penalty = dataclasses.replace(sampled, generation={"repetition_penalty": 5e-324})  # logits / 5e-324: inf
    assert engine.complete(PROMPT, tiny_penalty).completion_tokens == 4
    everything = dataclasses.replace(sampled, generation={"suppress_tokens": list(range(512))})
    ended = engine.complete(PROMPT, everything)  # nothing left to draw: the row ends on its first stop token
    assert (ended.text, ended.finish_reason, ended.completion_tokens) == ("", "stop", 1)
    decay = dataclasses.replace(sampled, max_tokens=300, generation={"exponential_decay_length_penalty": (0, 10.0)})
    assert engine.complete(PROMPT, decay).finish_reason == "stop"  # 10 ** n overflows: the end token wins
