import json
import re

import pytest

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import generate_dates
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.train.sft import SFTConfig, run_sft
from tests.conftest import write_jsonl


@pytest.fixture
def dates_train(tiny):
    train, _ = generate_dates(16, 0, seed=1)
    return register_dataset(train, "dates-train", "CC0-1.0", "test")


def test_lora_sft_registers_adapter_and_merged_model_with_lineage(tiny, dates_train):
    result = run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=4, batch_size=4,
                               learning_rate=1e-2, logging_steps=1, merge=True, seed=3))
    rows = [json.loads(line) for line in (result.artifact.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [round(r["loss"], 3) for r in rows] == EXPECTED_LOSSES
    assert result.loss_curve_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adapter, merged = result.artifact, result.merged
    assert adapter.kind == "adapter" and merged.kind == "model"
    assert {"adapter_model.safetensors", "adapter_config.json", "metrics.jsonl", "loss_curve.png"} <= set(
        adapter.manifest["files"])
    assert json.loads((adapter.path / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny.id
    registry = Registry()
    assert registry.parents(adapter.id) == [(tiny.id, "adapter"), (dates_train.id, "dataset")]
    assert registry.parents(merged.id) == [(adapter.id, "merge"), (tiny.id, "base_model")]
    assert adapter.manifest["config"]["learning_rate"] == 1e-2 and adapter.manifest["seed"] == 3


def test_same_seed_same_losses(tiny, dates_train):
    runs = [run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=2, batch_size=4, logging_steps=1,
                              seed=5)).metrics for _ in range(2)]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]


def test_answer_only_head_gives_trls_loss(tiny, dates_train):
    losses = {}
    for answer_only_head in (True, False):
        result = run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=3, batch_size=4, logging_steps=1,
                                   learning_rate=1e-2, seed=3, answer_only_head=answer_only_head))
        rows = (result.artifact.path / "metrics.jsonl").read_text().splitlines()
        losses[answer_only_head] = [json.loads(line)["loss"] for line in rows]
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


def test_too_long_example_is_refused_before_training(tiny, tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [
        {"messages": [{"role": "user", "content": "word " * 50}, {"role": "assistant", "content": "ok"}]}])
    # the error names the file the user gave, not the registry's copy of it
    expected = re.escape(str(path)) + r":1: messages: \d+ tokens, longer than max_length=16"
    with pytest.raises(KaiyuanError, match=expected):
        run_sft(SFTConfig(model="tiny-llama", data=str(path), max_length=16, max_steps=1))


EXPECTED_LOSSES = [6.172, 6.032, 5.888, 5.866]  # tiny-llama, seed 3 (torchtune-style exact values)


@pytest.mark.parametrize("method, kind", [("dora", "adapter"), ("freeze", "model"), ("full", "model")])
def test_other_methods(tiny, dates_train, method, kind):
    result = run_sft(SFTConfig(model="tiny-llama", data="dates-train", method=method, freeze_last_n=1, max_steps=2,
                               batch_size=4, logging_steps=1, learning_rate=1e-3, seed=3))
    assert result.artifact.kind == kind
    relation = "adapter" if kind == "adapter" else "finetune"
    assert Registry().parents(result.artifact.id)[0] == (tiny.id, relation)
    if method == "dora":
        config = json.loads((result.artifact.path / "adapter_config.json").read_text())
        assert config["use_dora"] is True
    if method == "freeze":  # layer 0 and the embeddings kept their weights; layer 1 moved
        from safetensors.torch import load_file

        before = load_file(tiny.path / "model.safetensors")
        after = load_file(result.artifact.path / "model.safetensors")
        assert (before["model.layers.0.mlp.up_proj.weight"] == after["model.layers.0.mlp.up_proj.weight"]).all()
        assert (before["model.embed_tokens.weight"] == after["model.embed_tokens.weight"]).all()
        assert not (before["model.layers.1.mlp.up_proj.weight"] == after["model.layers.1.mlp.up_proj.weight"]).all()


def test_qlora_without_a_gpu_is_a_clear_error(tiny, dates_train):
    with pytest.raises(KaiyuanError, match="method qlora needs bitsandbytes and a CUDA GPU"):
        run_sft(SFTConfig(model="tiny-llama", data="dates-train", method="qlora"))


def test_packing_trains_fewer_rows(tiny, dates_train):
    plain = run_sft(SFTConfig(model="tiny-llama", data="dates-train", epochs=1, batch_size=2, seed=3))
    packed = run_sft(SFTConfig(model="tiny-llama", data="dates-train", epochs=1, batch_size=2, seed=3, packing=True,
                               max_length=256))
    assert plain.metrics["steps"] == 8 and packed.metrics["steps"] < plain.metrics["steps"]


def test_max_length_beyond_the_models_context_is_refused(tiny, dates_train):
    with pytest.raises(KaiyuanError, match=r"max_length 4096 is longer than the model allows \(512 positions\)"):
        run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_length=4096, max_steps=1))
