"""`kaiyuan plan`: compute and memory estimates checked against published anchors."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from kaiyuan.cli import app
from kaiyuan.errors import KaiyuanError
from kaiyuan.plan import GPUS, PlanConfig, make_plan, parse_count


def test_gpt3_training_compute_is_3640_pf_days():
    plan = make_plan(PlanConfig(params="175B", tokens="300B"))
    assert plan.training_flops == pytest.approx(3.15e23, rel=1e-12)  # 6 · 175e9 · 300e9
    assert plan.pf_days == pytest.approx(3640, rel=0.01)  # Brown et al. 2020, Table D.1: 3.64E+03 PF-days
    assert plan.pf_days == pytest.approx(3645.833, abs=1e-3)


def test_chinchilla_70b_wants_1_4t_tokens():
    plan = make_plan(PlanConfig(params="70B"))
    assert plan.tokens == plan.chinchilla_tokens == pytest.approx(1.4e12)
    assert plan.to_dict()["tokens_per_param"] == pytest.approx(20)


def test_1_8b_model_in_int4_needs_under_1_5_gb():
    """4.5 bits/param (Q4_0) + fp16 KV cache of 4,096 tokens + 10 % of the weights; derived shape 20 layers × 4 KV
    heads × 128."""
    plan = make_plan(PlanConfig(params="1.8B"))
    shape = plan.shape
    assert (shape.layers, shape.hidden, shape.kv_heads, shape.head_dim) == (20, 2560, 4, 128)
    int4 = plan.inference["int4"]
    assert int4.parts == {"weights": 1_012_500_000, "kv_cache": 2 * 20 * 4 * 128 * 4096 * 2, "overhead": 101_250_000}
    assert int4.total_bytes == 1_281_522_160 < 1.5e9


def test_7b_shape_time_and_memory():
    plan = make_plan(PlanConfig(params="7e9", gpu="A100", mfu=0.4))
    assert (plan.shape.layers, plan.shape.hidden, plan.shape.intermediate) == (32, 4096, 11008)  # Llama-2-7B's
    assert plan.to_dict()["gpu_days"] == pytest.approx(7e9 * 6 * 140e9 / (312e12 * 0.4) / 86_400)
    full = plan.training["full"].parts
    assert full["weights"] + full["trainable_state"] == 16 * 7e9  # mixed-precision Adam
    assert full["activations"] == 34 * 4096 * 32 * 4096
    assert plan.training["lora"].parts["weights"] == 2 * 7e9
    assert plan.training["qlora"].parts["weights"] == pytest.approx(7e9 * 4.127 / 8)
    assert plan.inference["fp16"].parts["weights"] == 14e9 and plan.training["full"].gpus == 2


def test_shape_overrides_give_llama3_8b_kv_cache():
    plan = make_plan(PlanConfig(params="8B", layers=32, hidden=4096, kv_heads=8, context=8192))
    assert plan.shape.kv_cache_bytes(1) == 128 * 1024  # 128 KiB per token
    assert plan.inference["fp16"].parts["kv_cache"] == 8192 * 128 * 1024


def test_shape_and_parameter_count_from_config_json(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    config.save_pretrained(tmp_path)
    plan = make_plan(PlanConfig(model=str(tmp_path)))
    assert plan.params == LlamaForCausalLM(config).num_parameters()
    assert (plan.shape.layers, plan.shape.kv_heads, plan.shape.head_dim) == (3, 2, 16)


@pytest.mark.parametrize("text, value", [("7e9", 7e9), ("7B", 7e9), ("1.8b", 1.8e9), ("135M", 135e6),
                                         ("1.4T", 1.4e12), ("175_000_000_000", 175e9), ("42", 42)])
def test_counts(text, value):
    assert parse_count(text) == pytest.approx(value)


@pytest.mark.parametrize("cfg, message", [
    (PlanConfig(params="-7B"), "params must be positive, got -7B"),
    (PlanConfig(params="0"), "params must be positive, got 0"),
    (PlanConfig(params="seven"), "params: expected a number like 7e9, 7B, 1.8b or 135M, got 'seven'"),
    (PlanConfig(params="7B", tokens="-1T"), "tokens must be positive, got -1T"),
    (PlanConfig(params="7B", gpu="tpu9"), f"unknown gpu 'tpu9'; choose one of {', '.join(GPUS)}"),
    (PlanConfig(params="7B", mfu=0), "mfu must be in (0, 1], got 0"),
    (PlanConfig(params="7B", mfu=1.5), "mfu must be in (0, 1], got 1.5"),
    (PlanConfig(params="7B", context=0), "context must be a positive integer, got 0"),
    (PlanConfig(), "give --params (e.g. 7B) or --model (a config.json, model directory or registered model)"),
])
def test_bad_input_is_refused_with_the_reason(cfg, message):
    with pytest.raises(KaiyuanError) as caught:
        make_plan(cfg)
    assert str(caught.value) == message


def test_cli_json_table_and_exit_code_2():
    result = CliRunner().invoke(app, ["plan", "--params", "1.8B", "--gpu", "h100", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["memory"]["inference"]["int4"]["total_bytes"] == 1_281_522_160
    assert summary["gpu"]["peak_flops"] == 989e12 and summary["chinchilla_tokens"] == 36e9

    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "plan", "--params", "175B", "--tokens", "300B"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "3.150e+23 FLOPs = 3,645.8 PF-days" in done.stdout and "infer: int4" in done.stdout
    done = subprocess.run([sys.executable, "-m", "kaiyuan.cli", "plan", "--params", "7B", "--mfu", "1.5"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.strip() == "error: mfu must be in (0, 1], got 1.5"
