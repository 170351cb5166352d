"""``n > 1`` runs the choices at once, so that the engine batches them: on tiny-llama through the real ``openai``
client, n choices take about as many forward passes as one (not n times as many), run in one batch, and each is
exactly what a request of its own with the seed derived for it gives (greedy and seeded sampling, streamed or not)."""

from __future__ import annotations

import openai
import pytest

from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer

MESSAGES = [{"role": "user", "content": "Convert March 3, 1999"}]
PROMPT = "Convert March 3, 1999 to ISO"
TOKENS = 10
N = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(tmp_path_factory.mktemp("serve-n-home")))
        from kaiyuan.models import resolve_model

        engine = TransformersEngine.from_reference(resolve_model("tiny-llama").id, "tiny")
        with BackgroundServer(create_app({"tiny": engine})) as server:
            yield openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0), engine


def counted(engine, call):
    """``call()``'s result and the scheduler's forward passes, sequences per pass and running rows it took."""
    stats = engine.scheduler.stats
    stats.max_batch_sequences = stats.max_running = 0
    before = (stats.forward_calls, stats.tokens_generated)
    result = call()
    return result, stats.forward_calls - before[0], stats.tokens_generated - before[1], stats.max_running


def chat(client, **options):
    return client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=TOKENS, **options)


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "top_p": 0.9, "seed": 11}],
                         ids=["greedy", "seeded"])
def test_chat_choices_run_in_one_batch_and_equal_single_requests(served, sampling):
    client, engine = served
    single, single_forwards, single_tokens, _ = counted(engine, lambda: chat(client, **sampling))
    reply, forwards, tokens, running = counted(engine, lambda: chat(client, n=N, **sampling))
    assert single_tokens == TOKENS and tokens == N * TOKENS  # the budget is spent (no end-of-turn on the way)
    assert running == N  # all four rows decoded together
    # one prefill and TOKENS - 1 decode steps for one choice; four: at most one more prefill per latecomer
    assert single_forwards == TOKENS and forwards <= single_forwards + N - 1 < 2 * single_forwards
    assert [c.index for c in reply.choices] == list(range(N))
    for i, choice in enumerate(reply.choices):
        seed = {"seed": sampling["seed"] + i} if "seed" in sampling else {}
        alone = chat(client, **{**sampling, **seed}).choices[0]
        assert (choice.message.content, choice.finish_reason) == (alone.message.content, alone.finish_reason)
    assert reply.choices[0].message.content == single.choices[0].message.content
    if "seed" in sampling:
        assert len({c.message.content for c in reply.choices}) > 1  # the seeds differ, and so do the texts


def test_streamed_choices_run_together_and_equal_the_non_streamed(served):
    client, engine = served
    reply = chat(client, n=N, temperature=1.0, seed=5)
    chunks, forwards, _, running = counted(engine, lambda: list(chat(
        client, n=N, temperature=1.0, seed=5, stream=True, stream_options={"include_usage": True})))
    assert running == N and forwards <= TOKENS + N - 1
    texts, finishes, order = [""] * N, [None] * N, []
    for chunk in chunks:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            finishes[c.index] = c.finish_reason or finishes[c.index]
            if c.delta.content:
                order.append(c.index)
    assert texts == [c.message.content for c in reply.choices]
    assert finishes == ["length"] * N and chunks[-1].usage.completion_tokens == N * TOKENS
    assert order != sorted(order)  # the choices' chunks come interleaved, not one choice after another


def test_completion_prompts_and_choices_run_in_one_batch(served):
    client, engine = served
    prompts = [PROMPT, "hello"]
    reply, forwards, tokens, running = counted(engine, lambda: client.completions.create(
        model="tiny", prompt=prompts, n=2, max_tokens=TOKENS, temperature=1.0, seed=3))
    assert running == 4 and tokens == 4 * TOKENS and forwards <= TOKENS + 3
    for choice in reply.choices:
        prompt, i = divmod(choice.index, 2)
        alone = client.completions.create(model="tiny", prompt=prompts[prompt], max_tokens=TOKENS, temperature=1.0,
                                          seed=3 + i)
        assert choice.text == alone.choices[0].text
    streamed = list(client.completions.create(model="tiny", prompt=prompts, n=2, max_tokens=TOKENS, temperature=1.0,
                                              seed=3, stream=True))
    texts = [""] * 4
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == [c.text for c in reply.choices]


def test_a_bad_choice_is_a_400_before_the_stream(served):
    client, engine = served
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError, match="maximum context length") as caught:
            client.completions.create(model="tiny", prompt=["hi", "hi " * 3000], max_tokens=4, n=2, stream=stream)
        assert caught.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert chat(client, n=2, temperature=0).choices[1].message.content  # the engine still serves
