"""Several LoRA adapters of tiny-llama served at once (one base model in memory, the adapter picked per request by
model name), driven with the official ``openai`` client; and the vLLM engine's guard when vLLM is missing."""

from __future__ import annotations

import threading

import openai
import pytest
import torch
from typer.testing import CliRunner

from kaiyuan.serve.engines.base import SamplingParams
from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer

MESSAGES = [{"role": "user", "content": "Convert March 3, 1999"}]
PROMPT = "Convert March 3, 1999 to ISO"
GREEDY = SamplingParams(max_tokens=8, temperature=0)


def make_adapter(base, name: str, seed: int):
    """A LoRA adapter on ``base`` with random (non-zero) weights, registered as an adapter artifact."""
    from peft import LoraConfig, get_peft_model

    from kaiyuan.hub.manifest import Parent
    from kaiyuan.hub.registry import ArtifactWriter
    from kaiyuan.models import load_model

    model = load_model(base).model
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with ArtifactWriter("adapter", name, license=base.license, source="test", parents=[Parent(base.id, "adapter")],
                        seed=seed) as writer:
        peft_model.save_pretrained(writer.path, safe_serialization=True)
    return writer.artifact


def direct(ref, prompt=None):
    """Greedy output of ``ref`` loaded on its own with load_model (chat, or raw completion of ``prompt``)."""
    from kaiyuan.models import load_model

    loaded = load_model(ref)
    engine = TransformersEngine(loaded.model, loaded.tokenizer, "direct")
    return engine.complete(prompt, GREEDY).text if prompt else engine.generate(MESSAGES, GREEDY).text


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = str(tmp_path_factory.mktemp("serve-adapters-home"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAIYUAN_HOME", home)
        from transformers import AutoModelForCausalLM

        from kaiyuan.models import resolve_model
        from kaiyuan.serve.engines.adapters import AdapterSet

        tiny = resolve_model("tiny-llama")
        a1, a2 = make_adapter(tiny, "a1", seed=1), make_adapter(tiny, "a2", seed=2)
        expected = {"tiny-llama": direct(tiny.id), "tiny-llama:a1": direct(a1.id), "tiny-llama:a2": direct(a2.id)}
        completions = {"tiny-llama": direct(tiny.id, PROMPT), "tiny-llama:a1": direct(a1.id, PROMPT)}

        loads = []
        original = AutoModelForCausalLM.from_pretrained.__func__

        def counting(cls, *args, **kwargs):
            loads.append(args[0] if args else kwargs.get("pretrained_model_name_or_path"))
            return original(cls, *args, **kwargs)

        with pytest.MonkeyPatch.context() as counted:
            counted.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(counting))
            engines = AdapterSet.from_references(["tiny-llama", "a1", a2.id])
        with BackgroundServer(create_app(engines)) as server:
            yield {"server": server, "engines": engines, "loads": loads, "expected": expected,
                   "completions": completions, "home": home, "tiny": tiny, "a1": a1, "a2": a2}


@pytest.fixture(scope="module")
def client(setup):
    return openai.OpenAI(base_url=setup["server"].base_url, api_key="none", max_retries=0)


def chat(client, model, stream=False):
    if stream:
        chunks = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8, temperature=0,
                                                stream=True)
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=8,
                                          temperature=0).choices[0].message.content


def test_models_lists_base_and_adapters(client):
    assert sorted(m.id for m in client.models.list().data) == ["tiny-llama", "tiny-llama:a1", "tiny-llama:a2"]


def test_base_weights_loaded_once(setup):
    engines = setup["engines"]
    assert len(setup["loads"]) == 1  # one from_pretrained: the base, shared by both adapters
    models = {id(engines[name].model) for name in engines}
    assert len(models) == 1
    assert set(engines[name].adapter for name in engines) == {None, "adapter0", "adapter1"}


def test_outputs_match_each_model_loaded_alone(client, setup):
    expected = setup["expected"]
    assert len(set(expected.values())) == 3, expected  # the adapters really change the greedy output
    for name, text in expected.items():
        assert chat(client, name) == text, name
        assert chat(client, name, stream=True) == text, name
    for name, text in setup["completions"].items():
        reply = client.completions.create(model=name, prompt=PROMPT, max_tokens=8, temperature=0)
        assert reply.choices[0].text == text, name


def test_concurrent_requests_do_not_mix_adapters(client, setup):
    expected = setup["expected"]
    names = list(expected) * 3
    results: dict[int, str] = {}

    def ask(i: int, name: str) -> None:
        results[i] = chat(client, name, stream=i % 2 == 0)

    threads = [threading.Thread(target=ask, args=(i, name)) for i, name in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert {i: results.get(i) for i in range(len(names))} == {i: expected[n] for i, n in enumerate(names)}


def test_embeddings_follow_the_adapter(client):
    vectors = {name: client.embeddings.create(model=name, input="hello").data[0].embedding
               for name in ("tiny-llama", "tiny-llama:a1")}
    assert vectors["tiny-llama"] != vectors["tiny-llama:a1"]


def test_adapter_without_its_base_loads_the_base(setup, monkeypatch):
    from kaiyuan.serve.engines.adapters import AdapterSet

    monkeypatch.setenv("KAIYUAN_HOME", setup["home"])
    engines = AdapterSet.from_references([setup["a2"].id])
    assert list(engines) == ["tiny-llama:a2"]
    assert engines["tiny-llama:a2"].generate(MESSAGES, GREEDY).text == setup["expected"]["tiny-llama:a2"]


# --- vLLM -----------------------------------------------------------------------------------------------------------

def test_vllm_missing_gives_a_clear_error(monkeypatch, home):
    from kaiyuan.cli import app
    from kaiyuan.errors import KaiyuanError
    from kaiyuan.serve.engines import vllm_engine

    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    with pytest.raises(KaiyuanError, match=r"the vLLM engine needs a CUDA GPU and `pip install vllm`"):
        vllm_engine.VLLMEngine.from_reference("tiny-llama")
    result = CliRunner().invoke(app, ["serve", "tiny-llama", "--engine", "vllm"])
    assert isinstance(result.exception, KaiyuanError) and "pip install vllm" in str(result.exception)


@pytest.mark.skipif(not __import__("kaiyuan.serve.engines.vllm_engine", fromlist=["x"]).vllm_available(),
                    reason="needs vllm and a CUDA GPU")
def test_vllm_engine_serves_tiny_llama(tiny):
    from kaiyuan.serve.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine.from_reference(tiny.id, gpu_memory_utilization=0.3, max_model_len=512)
    with BackgroundServer(create_app({"tiny": engine})) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        reply = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
        assert reply.choices[0].message.content == engine.generate(MESSAGES, GREEDY).text
        assert reply.usage.completion_tokens <= 8
