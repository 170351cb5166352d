"""The OpenAI-compatible API beyond basic chat, driven with the official ``openai`` client against tiny-llama:
text completions, n / seeds / top_k / token limits, logprobs, embeddings, JSON-constrained output and tools."""

from __future__ import annotations

import asyncio
import json
import math
from enum import StrEnum
from typing import Literal

import httpx
import openai
import pytest
import torch
from pydantic import BaseModel, Field

from kaiyuan.serve.engines.base import SamplingParams
from kaiyuan.serve.engines.json_constraint import advance, compile_schema, finished, initial_state, residual
from kaiyuan.serve.engines.transformers_engine import TransformersEngine, Vocabulary
from kaiyuan.serve.protocol import parse_tool_calls
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer

MESSAGES = [{"role": "user", "content": "Convert March 3, 1999"}]
PROMPT = "Convert March 3, 1999 to ISO"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                   "required": ["city"]}}}
ADD = {"type": "function", "function": {
    "name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                                  "required": ["a", "b"]}}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", str(tmp_path_factory.mktemp("serve-api-home")))
        from kaiyuan.models import resolve_model

        tiny = resolve_model("tiny-llama")
        engine = TransformersEngine.from_reference(tiny.id, "tiny")
        with BackgroundServer(create_app({"tiny": engine})) as server:
            yield server, engine


@pytest.fixture(scope="module")
def engine(served):
    return served[1]


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served[0].base_url, api_key="none", max_retries=0)


def chat_prompt_ids(engine, messages=MESSAGES, tools=None):
    return engine.tokenizer(engine.render(messages, tools), add_special_tokens=False)["input_ids"]


def token_ids(engine, entries):
    """The token ids behind logprob entries (byte-level BPE: bytes -> the token's piece)."""
    piece_of = {byte: ch for ch, byte in Vocabulary(engine.tokenizer).byte_decoder.items()}
    return [engine.tokenizer.convert_tokens_to_ids("".join(piece_of[b] for b in e.bytes)) for e in entries]


def model_logprobs(engine, prompt_ids, generated_ids):
    """log_softmax of the model's logits at each generated position (one full forward pass)."""
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([prompt_ids + generated_ids])).logits[0].float()
    rows = torch.log_softmax(logits[len(prompt_ids) - 1: -1], dim=-1)
    return rows


# --- /v1/completions ------------------------------------------------------------------------------------------------

def test_completion_usage_and_stream_agree(client, engine):
    reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0)
    choice = reply.choices[0]
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    assert reply.usage.prompt_tokens == len(engine.tokenizer(PROMPT)["input_ids"])
    assert 0 < reply.usage.completion_tokens <= 8
    if choice.finish_reason == "length":
        assert reply.usage.completion_tokens == 8
    chunks = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == choice.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == reply.usage.model_dump()


def test_completion_prompt_list_n_and_seeds(client):
    many = client.completions.create(model="tiny", prompt=[PROMPT, "hello world"], max_tokens=6, n=2, seed=5)
    assert [c.index for c in many.choices] == [0, 1, 2, 3]
    single = {(prompt, seed): client.completions.create(model="tiny", prompt=prompt, max_tokens=6,
                                                        seed=seed).choices[0].text
              for prompt in (PROMPT, "hello world") for seed in (5, 6)}
    # choice i of a prompt is sampled with seed + i
    assert [c.text for c in many.choices] == [single[PROMPT, 5], single[PROMPT, 6],
                                               single["hello world", 5], single["hello world", 6]]
    prompt_ids = client.completions.create(model="tiny", prompt=[5, 80, 281], max_tokens=3, temperature=0)
    assert prompt_ids.usage.prompt_tokens == 3


def test_completion_default_max_tokens_is_openais(client):
    reply = client.completions.create(model="tiny", prompt=PROMPT, temperature=0)
    assert reply.usage.completion_tokens <= 16


def test_completion_logprobs_legacy_shape(client):
    reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2)
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 6 \
        or reply.choices[0].finish_reason == "stop"
    assert logprobs.text_offset[0] == 0
    for k, token in enumerate(logprobs.tokens):
        top = logprobs.top_logprobs[k]
        assert len(top) <= 3 and top[token] == logprobs.token_logprobs[k]
        assert logprobs.token_logprobs[k] == max(top.values())  # greedy takes the most likely token
        if k:
            assert logprobs.text_offset[k] == logprobs.text_offset[k - 1] + len(logprobs.tokens[k - 1])
    streamed = list(client.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2,
                                              stream=True))
    tokens = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    offsets = [t for c in streamed if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.text_offset]
    assert tokens == logprobs.tokens and offsets == logprobs.text_offset


# --- chat: n, seeds, top_k, limits, context window ----------------------------------------------------------------

def test_chat_n_choices_use_consecutive_seeds(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, n=3, seed=11)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    for i, choice in enumerate(reply.choices):
        alone = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, seed=11 + i)
        assert choice.message.content == alone.choices[0].message.content
    assert reply.usage.prompt_tokens == alone.usage.prompt_tokens  # the prompt counts once
    streamed = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, n=3, seed=11,
                                                   stream=True, stream_options={"include_usage": True}))
    texts = ["", "", ""]
    for chunk in streamed:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in reply.choices]
    assert streamed[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_top_k_one_is_greedy(client):
    greedy = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    top1 = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=1.5, seed=3,
                                          extra_body={"top_k": 1})
    assert top1.choices[0].message.content == greedy.choices[0].message.content


def test_max_completion_tokens_and_usage(client, engine):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_completion_tokens=3, temperature=0)
    assert reply.usage.prompt_tokens == len(chat_prompt_ids(engine))
    assert reply.usage.completion_tokens <= 3


def test_context_window_rule(client, engine):
    prompt_tokens = len(chat_prompt_ids(engine))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=MESSAGES, max_completion_tokens=600)
    assert info.value.body["code"] == "context_length_exceeded" and info.value.body["param"] == "messages"
    assert info.value.body["message"] == (
        f"This model's maximum context length is 512 tokens. However, you requested {prompt_tokens + 600} tokens "
        f"({prompt_tokens} in the messages, 600 in the completion). Please reduce the length of the messages or "
        "completion.")
    completion_tokens = len(engine.tokenizer(PROMPT)["input_ids"])
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=PROMPT, max_tokens=500)
    assert info.value.body["code"] == "context_length_exceeded"
    assert info.value.body["message"] == (
        f"This model's maximum context length is 512 tokens, however you requested {completion_tokens + 500} tokens "
        f"({completion_tokens} in your prompt; 500 for the completion). Please reduce your prompt; or completion "
        "length.")
    # without max_tokens the reply fits in what is left; a prompt that fills the window is refused
    long_prompt = [5] * 510
    reply = client.completions.create(model="tiny", prompt=long_prompt, temperature=0)
    assert reply.usage.completion_tokens <= 2
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt=[5] * 512)
    assert info.value.body["code"] == "context_length_exceeded"


def test_async_client_concurrent_requests(served, client):
    greedy_chat = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0)
    greedy_text = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0)

    async def main():
        aclient = openai.AsyncOpenAI(base_url=served[0].base_url, api_key="none", max_retries=0)

        async def streamed():
            stream = await aclient.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6,
                                                           temperature=0, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        return await asyncio.gather(
            aclient.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0),
            aclient.completions.create(model="tiny", prompt=PROMPT, max_tokens=6, temperature=0),
            streamed(), aclient.embeddings.create(model="tiny", input="hello"))

    chat, text, stream_text, embedding = asyncio.run(main())
    assert chat.choices[0].message.content == greedy_chat.choices[0].message.content == stream_text
    assert text.choices[0].text == greedy_text.choices[0].text
    assert len(embedding.data[0].embedding) == 64


# --- logprobs -------------------------------------------------------------------------------------------------------

def test_chat_logprobs_are_the_models(client, engine):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                           logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert "".join(e.token for e in content) == reply.choices[0].message.content
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob == max(t.logprob for t in entry.top_logprobs) == entry.top_logprobs[0].logprob
        assert entry.bytes == list(entry.token.encode("utf-8")) and entry.logprob <= 0
    rows = model_logprobs(engine, chat_prompt_ids(engine), token_ids(engine, content))
    assert [e.logprob for e in content] == pytest.approx(
        [float(rows[k].max()) for k in range(len(content))], abs=1e-4)
    # sampled hot, the numbers are still the model's own distribution (not the temperature-scaled one)
    hot = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=1.8, seed=2,
                                         logprobs=True, top_logprobs=1).choices[0].logprobs.content
    ids = token_ids(engine, hot)
    rows = model_logprobs(engine, chat_prompt_ids(engine), ids)
    assert [e.logprob for e in hot] == pytest.approx([float(rows[k, i]) for k, i in enumerate(ids)], abs=1e-4)
    assert [e.top_logprobs[0].logprob for e in hot] == pytest.approx([float(r.max()) for r in rows], abs=1e-4)
    streamed = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                                   logprobs=True, top_logprobs=3, stream=True))
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert tokens == [e.token for e in content]


def test_no_logprobs_unless_asked(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].logprobs is None
    reply = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=3)
    assert reply.choices[0].logprobs is None


# --- /v1/embeddings ---------------------------------------------------------------------------------------------

def test_embeddings(client, engine):
    texts = ["hello world", "the date format"]
    as_floats = client.embeddings.create(model="tiny", input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model="tiny", input=texts)  # the client asks for base64 and decodes it
    assert [d.index for d in as_floats.data] == [0, 1]
    assert as_floats.usage.prompt_tokens == as_floats.usage.total_tokens == sum(
        len(engine.tokenizer(t)["input_ids"]) for t in texts)
    for floats, packed in zip(as_floats.data, as_base64.data, strict=True):
        assert packed.embedding == pytest.approx(floats.embedding, abs=1e-6)
        assert math.isclose(math.fsum(v * v for v in floats.embedding), 1.0, rel_tol=1e-5)
    ids = engine.tokenizer(texts[0])["input_ids"]
    with torch.inference_mode():
        hidden = engine.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
    expected = torch.nn.functional.normalize(hidden.float().mean(0), dim=0).tolist()
    assert as_floats.data[0].embedding == pytest.approx(expected, abs=1e-5)
    single = client.embeddings.create(model="tiny", input=texts[0], encoding_format="float")
    assert single.data[0].embedding == pytest.approx(expected, abs=1e-5)
    by_ids = client.embeddings.create(model="tiny", input=[ids], encoding_format="float")
    assert by_ids.data[0].embedding == pytest.approx(expected, abs=1e-5)
    short = client.embeddings.create(model="tiny", input=texts[0], dimensions=16, encoding_format="float")
    assert len(short.data[0].embedding) == 16
    assert math.isclose(math.fsum(v * v for v in short.data[0].embedding), 1.0, rel_tol=1e-5)


# --- response_format ------------------------------------------------------------------------------------------------

class Color(StrEnum):
    red = "red"
    green = "green"


class Item(BaseModel):
    name: str = Field(max_length=10)
    count: int
    color: Color
    size: Literal["S", "M", "L"]
    tags: list[Literal["new", "old"]] = Field(max_length=3)


def test_json_schema_output_validates(client):
    for seed in range(3):  # the client sends a strict json_schema and validates the reply with pydantic
        reply = client.chat.completions.parse(model="tiny", messages=MESSAGES, max_tokens=60, seed=seed,
                                              temperature=1.0, response_format=Item)
        assert isinstance(reply.choices[0].message.parsed, Item)
        assert reply.choices[0].finish_reason == "stop"


def test_json_schema_by_hand_stream_and_tight_budget(client):
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"enum": ["a", "b"]},
                                               "words": {"type": "array", "items": {"type": "string"},
                                                         "minItems": 1, "maxItems": 2}},
              "required": ["id", "kind", "words"], "additionalProperties": False}
    response_format = {"type": "json_schema", "json_schema": {"name": "thing", "schema": schema}}
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=50, seed=4, stream=True,
                                                 response_format=response_format))
    value = json.loads("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
    assert set(value) == {"id", "kind", "words"} and isinstance(value["id"], int) and value["kind"] in "ab"
    assert 1 <= len(value["words"]) <= 2 and all(isinstance(w, str) for w in value["words"])
    # '{"id":0,"kind":"a","words":[""]}' is 32 characters: 34 tokens are enough to finish (and end the turn)
    tight = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=34, seed=1,
                                           response_format=response_format)
    assert set(json.loads(tight.choices[0].message.content)) == {"id", "kind", "words"}


def test_json_object_mode(client):
    for seed in (1, 2):
        reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=60, seed=seed,
                                               response_format={"type": "json_object"})
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_json_grammar_states():
    node = compile_schema(Item.model_json_schema())
    start = initial_state(node)
    good = '{"size": "M", "name":"a\\u00e9\\n", "count":-12, "color":"green","tags":["new","old"]}'
    assert finished(advance(start, good))
    assert not advance(start, '{"nme"')  # unknown key
    assert not advance(start, '{"count":1.5')  # not an integer
    assert not advance(start, '{"size":"XL"')  # not in the enum
    assert not advance(start, ' {')  # no whitespace before the value
    assert not finished(advance(start, '{"size":"M"}'))  # required keys missing: "}" refused
    assert not advance(start, '{"size":"M"}')
    assert residual(start) == len('{"name":"","count":0,"color":"red","size":"S","tags":[]}')
    number = initial_state(compile_schema({"anyOf": [{"type": "number"}, {"type": "null"}]}))
    assert finished(advance(number, "-1.5e+3")) and finished(advance(number, "null"))
    assert not finished(advance(number, "1.")) and not advance(number, "01")
    short = initial_state(compile_schema({"type": "string", "maxLength": 2}))
    assert finished(advance(short, '"ab"')) and not advance(short, '"abc')
    nested = compile_schema({"$defs": {"P": {"type": "object", "properties": {"x": {"type": "boolean"}}}},
                             "type": "array", "items": {"$ref": "#/$defs/P"}})
    assert finished(advance(initial_state(nested), '[{"x":true},{}]'))
    anything = initial_state(compile_schema({}))
    assert finished(advance(anything, '{"a":[1,{"b":null}],"c":"d"}'))


# --- tools -----------------------------------------------------------------------------------------------------------

def test_tool_choice_required_returns_a_valid_call(client):
    reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=60, seed=1, tools=[WEATHER],
                                           tool_choice="required")
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str) and len(arguments["city"]) <= 12


def test_tool_choice_named_and_required_among_several(client):
    named = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=55, seed=2,
                                           tools=[WEATHER, ADD],
                                           tool_choice={"type": "function", "function": {"name": "add"}})
    (call,) = named.choices[0].message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "add" and set(arguments) == {"a", "b"}
    assert all(isinstance(v, int) for v in arguments.values())
    for seed in (3, 4):
        reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=55, seed=seed,
                                               tools=[WEATHER, ADD], tool_choice="required")
        (call,) = reply.choices[0].message.tool_calls
        expected = {"get_weather": {"city"}, "add": {"a", "b"}}[call.function.name]
        assert set(json.loads(call.function.arguments)) == expected


def test_tool_call_streams_as_one_delta(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=60, seed=1,
                                                 tools=[WEATHER], tool_choice="required", stream=True))
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tools_are_rendered_unless_none(client, engine):
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0)
    auto = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0,
                                          tools=[WEATHER])
    none = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4, temperature=0,
                                          tools=[WEATHER], tool_choice="none")
    assert auto.usage.prompt_tokens == len(chat_prompt_ids(engine, tools=[WEATHER])) > plain.usage.prompt_tokens
    assert none.usage.prompt_tokens == plain.usage.prompt_tokens
    # tiny-llama's random text is no tool call: it comes back as content
    assert auto.choices[0].finish_reason != "tool_calls" and auto.choices[0].message.content is not None
    history = [*MESSAGES,
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}]
    reply = client.chat.completions.create(model="tiny", messages=history, max_tokens=4, tools=[WEATHER])
    assert reply.usage.prompt_tokens == len(chat_prompt_ids(engine, history, [WEATHER]))
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in engine.render(
        history)
    assert "<tool_response>\nsunny\n</tool_response>" in engine.render(history)


def test_templates_that_know_tools_render_them(engine):
    import copy

    tokenizer = copy.deepcopy(engine.tokenizer)
    tokenizer.chat_template = (
        "{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}{{ '\\n' }}{% endif %}"
        "{% for m in messages %}{{ m.role }}: {{ m.content }}"
        "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }}({{ c.function.arguments.city }}){% endfor %}"
        "{{ '\\n' }}{% endfor %}assistant:")
    aware = TransformersEngine(engine.model, tokenizer, "aware")
    history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}]
    assert aware.render(history, [WEATHER]) == (
        "TOOLS:get_weather;\nuser: Convert March 3, 1999\nassistant: CALL get_weather(Oslo)\nassistant:")


def test_parse_tool_calls():
    names = {"get_weather", "add"}
    content, calls = parse_tool_calls(
        'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', names)
    assert content == "Sure."
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("add", {"a": 1, "b": 2}), ("get_weather", {"city": "Oslo"})]
    content, calls = parse_tool_calls(' {"name": "add", "arguments": {"a": 1, "b": 2}} ', names)
    assert content is None and calls[0]["function"]["arguments"] == '{"a": 1, "b": 2}'
    content, calls = parse_tool_calls('[{"name": "add", "parameters": {}}]', names)
    assert calls[0]["function"] == {"name": "add", "arguments": "{}"}
    for text in ('{"name": "unknown", "arguments": {}}', "<tool_call>{not json</tool_call>", "plain text",
                 '{"city": "Oslo"}'):
        assert parse_tool_calls(text, names) == (text, [])


# --- bad input is a 4xx in OpenAI's error shape ---------------------------------------------------------------------

@pytest.mark.parametrize(("route", "body", "param"), [
    ("chat/completions", {"messages": MESSAGES, "top_logprobs": 2}, None),
    ("chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("chat/completions", {"messages": MESSAGES, "n": 0}, "n"),
    ("chat/completions", {"messages": MESSAGES, "top_k": -2}, "top_k"),
    ("chat/completions", {"messages": MESSAGES, "tool_choice": "required"}, None),
    ("chat/completions", {"messages": MESSAGES, "tools": [WEATHER],
                          "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ("chat/completions", {"messages": MESSAGES, "tools": [{"type": "function", "function": {"name": "a b"}}]},
     "tools.0.function.name"),
    ("chat/completions", {"messages": MESSAGES, "response_format": {"type": "json_schema"}}, "response_format"),
    ("chat/completions", {"messages": MESSAGES, "response_format": {"type": "xml"}}, "response_format.type"),
    ("chat/completions", {"messages": MESSAGES, "max_tokens": 4,
                          "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "date"}}}},
     "response_format"),
    ("chat/completions", {"messages": MESSAGES, "tools": [WEATHER], "tool_choice": "required",
                          "response_format": {"type": "json_object"}}, "response_format"),
    ("chat/completions", {"messages": [*MESSAGES, {"role": "assistant", "tool_calls": [{"id": "c"}]}]},
     "messages.1.tool_calls.0.function"),
    ("chat/completions", {"messages": MESSAGES, "seed": 2**70}, "seed"),
    ("completions", {"prompt": []}, "prompt"),
    ("completions", {"prompt": "x", "logprobs": 6}, "logprobs"),
    ("completions", {"prompt": "x", "echo": True}, None),
    ("completions", {"prompt": [[5, 10**9]], "max_tokens": 2}, "prompt"),
    ("completions", {"prompt": "x", "stream": True, "max_tokens": 999}, "prompt"),
    ("embeddings", {"input": ""}, "input"),
    ("embeddings", {"input": []}, "input"),
    ("embeddings", {"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ("embeddings", {"input": "hello", "dimensions": 65}, "dimensions"),
])
def test_bad_requests_are_400s(served, route, body, param):
    response = httpx.post(f"{served[0].base_url}/{route}", json={"model": "tiny", **body}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] and error["param"] == param


def test_malformed_json_and_unknown_models(served, client):
    response = httpx.post(f"{served[0].base_url}/completions", content=b"{not json",
                          headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "error" in response.json()
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="x")


def test_engine_without_completions_or_embeddings():
    class ChatOnly:
        model_id, context_length = "chat-only", 512

        def generate(self, messages, params: SamplingParams):
            raise AssertionError

        def stream(self, messages, params):
            raise AssertionError

    with BackgroundServer(create_app({"c": ChatOnly()})) as server:
        bare = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        for call in (lambda: bare.completions.create(model="c", prompt="x"),
                     lambda: bare.embeddings.create(model="c", input="x")):
            with pytest.raises(openai.BadRequestError) as info:
                call()
            assert info.value.body["code"] == "model_not_supported"
