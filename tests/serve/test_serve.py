import httpx
import openai
import pytest

from kaiyuan.serve.engines.chat_messages import StopTrimmer
from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.guard import hash_api_key
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer

MESSAGES = [{"role": "user", "content": "Convert March 3, 1999"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import os

    os.environ["KAIYUAN_HOME"] = str(tmp_path_factory.mktemp("serve-home"))
    engine = TransformersEngine.from_reference("tiny-llama", model_id="tiny")
    app = create_app({"tiny": engine}, api_key_hashes=[hash_api_key("sk-test")])
    with BackgroundServer(app) as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}


def test_chat_and_stream_agree_at_temperature_zero(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == reply.choices[0].finish_reason


def test_same_seed_same_sample(client):
    texts = [client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, temperature=1.0,
                                            seed=11).choices[0].message.content for _ in range(2)]
    assert texts[0] == texts[1]


def test_stop_sequence_cuts_the_reply(client):
    full = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0)
    text = full.choices[0].message.content
    assert len(text) >= 3
    stop = text[2:4] if text[2:4].strip() else text[2:3]
    cut = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_errors_are_openai_shaped(server, client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert info.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=600)
    assert info.value.body["code"] == "context_length_exceeded"
    assert "maximum context length is 512 tokens" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, temperature=5)
    assert info.value.body["param"] == "temperature"


def test_api_key_is_required_except_for_health(server):
    bad = openai.OpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(f"{server.base_url}/models").status_code == 401


def test_stop_trimmer_holds_back_partial_stop_strings():
    trimmer = StopTrimmer(["END"])
    assert [trimmer.feed(p) for p in ["ab", "cE", "N", "Dxyz"]] == ["ab", "c", "", ""]
    assert trimmer.stopped and trimmer.flush() == ""
    trimmer = StopTrimmer(["END"])
    assert trimmer.feed("xE") == "x" and trimmer.flush() == "E"


def test_abandoned_stream_stops_generation():
    import threading
    import time

    from kaiyuan.serve.engines.base import SamplingParams

    engine = TransformersEngine.from_reference("tiny-llama")
    engine.stop_token_ids = [10**9]  # never stop by itself
    events = engine.stream(MESSAGES, SamplingParams(max_tokens=400, temperature=1.0, seed=1))
    next(events)
    events.close()  # what the server does when the client goes away
    stats = engine.scheduler.stats
    produced = stats.tokens_generated
    assert not engine._lock.locked() and threading.active_count() < 50
    assert produced < 50 and stats.requests_finished == 1  # it stopped long before max_tokens
    time.sleep(0.3)
    assert stats.tokens_generated == produced  # and nothing more came after the close
