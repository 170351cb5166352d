"""The transformers engine's batching: concurrent requests to tiny-llama share forward passes and still give what
each gives alone (greedy and seeded sampling, JSON-constrained, with logprobs); an abandoned request stops; requests
for different adapters never share a forward pass."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable

import pytest

from kaiyuan.serve.engines.base import Generation, SamplingParams
from kaiyuan.serve.engines.transformers_batching import BatchRequest, BatchScheduler, sample
from kaiyuan.serve.engines.transformers_engine import TransformersEngine

PROMPTS = ["hello", "Convert March 3, 1999 to ISO", "the model is open source and you can train it on your data",
           "date format reply only"]  # 3, 13, 14 and 5 tokens: the batch is left-padded
GREEDY = SamplingParams(max_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(tmp_path_factory.mktemp("serve-batching-home")))
        from kaiyuan.models import resolve_model

        yield TransformersEngine.from_reference(resolve_model("tiny-llama").id, "tiny")


def engine_over(engine: TransformersEngine, **options) -> tuple[TransformersEngine, threading.Lock]:
    """Another engine over the same model, with a scheduler of its own whose forward passes hold the lock returned."""
    lock = threading.Lock()
    scheduler = BatchScheduler(engine.model, select=lambda group: lock, **options)
    return TransformersEngine(engine.model, engine.tokenizer, "other", scheduler=scheduler), lock


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def run_together(engine: TransformersEngine, lock: threading.Lock, jobs: list[Callable[[], object]],
                 submitted: list[BatchRequest] | None = None) -> list:
    """Run ``jobs`` on threads, one after another submitting its request while ``lock`` holds every forward pass
    back, so they all arrive before the first token; their results. ``submitted`` gets the requests in order."""
    submitted = [] if submitted is None else submitted
    scheduler = engine.scheduler
    original = scheduler.submit

    def spy(request: BatchRequest) -> None:
        submitted.append(request)
        original(request)

    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        results[i] = jobs[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    scheduler.submit = spy  # type: ignore[method-assign]
    try:
        with lock:
            for i, thread in enumerate(threads):
                thread.start()
                wait_until(lambda count=i + 1: len(submitted) == count)
    finally:
        del scheduler.submit
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_greedy_requests_equal_their_solo_results(engine):
    fresh = TransformersEngine(engine.model, engine.tokenizer, "fresh")  # the default scheduler, counting from 0
    solo = [fresh.complete(p, GREEDY) for p in PROMPTS]
    assert len({g.text for g in solo}) == 4 and all(g.finish_reason == "length" for g in solo)
    before = dataclasses.replace(fresh.scheduler.stats)
    assert before.max_batch_sequences == 1
    batched = run_together(fresh, fresh._lock, [lambda p=p: fresh.complete(p, GREEDY) for p in PROMPTS])
    assert [g.text for g in batched] == [g.text for g in solo]
    assert [(g.prompt_tokens, g.completion_tokens) for g in batched] == [(g.prompt_tokens, 12) for g in solo]
    stats = fresh.scheduler.stats
    assert stats.max_batch_sequences == 4 and stats.max_running == 4  # all four decoded in one forward pass
    assert stats.forward_calls - before.forward_calls < 4 * 12  # fewer passes than one request at a time
    assert stats.tokens_generated - before.tokens_generated == 4 * 12
    wait_until(lambda: fresh.scheduler.active_requests == fresh.scheduler.waiting_requests == 0)


def test_dynamic_batching_without_joining_gives_the_same_text(engine):
    solo = [engine.complete(p, GREEDY).text for p in PROMPTS]
    other, lock = engine_over(engine, continuous=False)
    batched = run_together(other, lock, [lambda p=p: other.complete(p, GREEDY) for p in PROMPTS])
    assert [g.text for g in batched] == solo
    # the first request may have started alone; the rest waited for its batch to end and went together
    assert other.scheduler.stats.requests_joined == 0 and other.scheduler.stats.max_batch_sequences >= 2


def test_seeded_sampling_in_a_batch_equals_the_request_alone(engine):
    params = [SamplingParams(max_tokens=10, temperature=1.2, seed=seed, top_p=0.95, top_k=40) for seed in (1, 2, 3)]
    params.append(SamplingParams(max_tokens=10, temperature=0.8, seed=1))
    solo = [engine.complete(PROMPTS[1], p).text for p in params]
    assert len(set(solo)) > 1  # the seeds matter
    other, lock = engine_over(engine)
    batched = run_together(other, lock, [lambda p=p: other.complete(PROMPTS[1], p).text for p in params])
    assert batched == solo
    assert other.scheduler.stats.max_batch_sequences == 4


def test_cancelled_row_stops_and_leaves_the_others_unchanged(engine):
    other, lock = engine_over(engine)
    other.stop_token_ids = [10**9]  # nothing ends a reply but its token budget
    keep = SamplingParams(max_tokens=48, temperature=0)
    solo = [other.complete(p, keep).text for p in PROMPTS[:2]]
    submitted: list[BatchRequest] = []
    at_close: list[int] = []

    def abandon() -> str:
        events = other.complete_stream(PROMPTS[2], SamplingParams(max_tokens=400, temperature=1.0, seed=7))
        first = next(events)
        events.close()  # what the server does when the client goes away
        at_close.append(len(submitted[2].generated))
        return first.text

    jobs = [lambda p=p: other.complete(p, keep).text for p in PROMPTS[:2]] + [abandon]
    results = run_together(other, lock, jobs, submitted)
    victim = submitted[2]
    assert results[:2] == solo and results[2]
    assert other.scheduler.stats.max_batch_sequences == 3
    assert len(victim.generated) == at_close[0] < 48  # no token after the close, and long before the budget
    assert victim.cancelled.is_set() and victim.finish_reason is None
    assert other.scheduler.stats.tokens_generated == 2 * 48 + 2 * 48 + at_close[0]  # solo runs + batch


def test_json_schema_and_logprobs_requests_batch_too(engine):
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"enum": ["a", "b"]}},
              "required": ["id", "kind"], "additionalProperties": False}
    runs: list[tuple[str, SamplingParams]] = [
        (PROMPTS[1], SamplingParams(max_tokens=30, temperature=1.0, seed=4, json_schema=schema)),
        (PROMPTS[0], SamplingParams(max_tokens=8, temperature=0, logprobs=True, top_logprobs=3)),
        (PROMPTS[2], SamplingParams(max_tokens=8, temperature=1.5, seed=2, logprobs=True, top_logprobs=1)),
        (PROMPTS[3], SamplingParams(max_tokens=25, temperature=0, json_schema={})),
    ]
    solo = [engine.complete(prompt, params) for prompt, params in runs]
    assert set(json.loads(solo[0].text)) == {"id", "kind"} and solo[0].finish_reason == "stop"
    json.loads(solo[3].text)
    other, lock = engine_over(engine)
    batched = run_together(other, lock, [lambda r=r: other.complete(*r) for r in runs])
    assert other.scheduler.stats.max_batch_sequences == 4
    for alone, together in zip(solo, batched, strict=True):
        assert together.text == alone.text and together.finish_reason == alone.finish_reason
        assert (together.logprobs is None) == (alone.logprobs is None)
        for a, b in zip(alone.logprobs or [], together.logprobs or [], strict=True):
            assert (b.token, [t.token for t in b.top_logprobs]) == (a.token, [t.token for t in a.top_logprobs])
            assert b.logprob == pytest.approx(a.logprob, abs=1e-5)
    greedy: Generation = batched[1]
    assert "".join(e.token for e in greedy.logprobs) == greedy.text
    assert all(e.logprob == e.top_logprobs[0].logprob for e in greedy.logprobs)


def test_requests_for_different_adapters_never_share_a_forward_pass(engine):
    lock = threading.Lock()
    groups: list[str | None] = []  # the group of each forward pass

    def select(group: str | None) -> threading.Lock:
        groups.append(group)
        return lock

    scheduler = BatchScheduler(engine.model, select=select)
    engines = {name: TransformersEngine(engine.model, engine.tokenizer, name, scheduler=scheduler, adapter=name)
               for name in ("a", "b")}
    expected = engine.complete(PROMPTS[1], GREEDY).text
    jobs = [lambda name=name: engines[name].complete(PROMPTS[1], GREEDY).text for name in ("a", "b", "a")]
    results = run_together(engines["a"], lock, jobs)
    assert results == [expected] * 3
    # a arrived first, then b, then a again: the second a waits for b's turn instead of joining the first a
    assert [g for i, g in enumerate(groups) if i == 0 or groups[i - 1] != g] == ["a", "b", "a"]
    assert scheduler.stats.max_batch_sequences == 1


def test_a_failing_row_fails_alone(engine):
    other, lock = engine_over(engine)
    expected = other.complete(PROMPTS[1], GREEDY).text

    def broken(ids, scores):
        raise RuntimeError("broken constraint")

    def failing() -> bool:
        request = BatchRequest([5, 6, 7], GREEDY, set(), constraint=broken)
        other.scheduler.submit(request)
        with pytest.raises(RuntimeError, match="broken constraint"):
            list(request.tokens())
        return request.released.is_set()

    results = run_together(other, lock, [lambda: other.complete(PROMPTS[1], GREEDY).text, failing])
    assert results == [expected, True]


def test_repetition_penalty_of_the_generation_config_is_applied_as_transformers_does(engine, monkeypatch):
    import torch

    monkeypatch.setattr(engine.model.generation_config, "repetition_penalty", 20.0)
    penalized = TransformersEngine(engine.model, engine.tokenizer, "penalized")
    ids = engine.tokenizer(PROMPTS[1])["input_ids"]
    with torch.inference_mode():
        output = engine.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                       max_new_tokens=12, do_sample=False, eos_token_id=penalized.stop_token_ids)
    expected = engine.tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)
    assert penalized.complete(PROMPTS[1], GREEDY).text == expected != engine.complete(PROMPTS[1], GREEDY).text


def test_sample_greedy_top_k_and_top_p():
    import torch

    scores = torch.tensor([1.0, 3.0, 2.0, 0.5])
    generator = torch.Generator().manual_seed(0)
    assert sample(scores, SamplingParams(temperature=0), None) == 1
    assert {sample(scores, SamplingParams(temperature=5.0, top_k=1), generator) for _ in range(20)} == {1}
    top2 = {sample(scores, SamplingParams(temperature=5.0, top_k=2), generator) for _ in range(200)}
    assert top2 == {1, 2}
    nucleus = {sample(scores, SamplingParams(temperature=1.0, top_p=0.5), generator) for _ in range(50)}
    assert nucleus == {1}  # token 1 alone holds more than half of the mass
