"""Export: the merge check, the GGUF round trip through llama.cpp, quantization drift, the Ollama Modelfile, the CLI.

One KAIYUAN_HOME and one tiny Llama for the module (hidden size 256, so that q4_k_m really writes Q4_K / Q6_K
tensors instead of llama.cpp's per-tensor fallbacks). Its f16 conversion runs once and q8_0 / q4_k_m quantize
it; the CLI test converts the adapter's merge (f16, then q8_0).
"""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
from typer.testing import CliRunner

from kaiyuan.cli import app, main
from kaiyuan.errors import KaiyuanError
from kaiyuan.export.export import ExportConfig, run_export
from kaiyuan.export.gguf import CONVERTER_ENV, installed_llama_cpp_python, sdist_dirs
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import ArtifactWriter, Registry

PROMPTS = ["Convert March 5, 1999 to ISO format:", "hello world, please answer the question",
           "<|im_start|>user\nWhat is an open model?<|im_end|>\n<|im_start|>assistant\n"]


def converter_available() -> bool:
    version = installed_llama_cpp_python()
    return bool(os.environ.get(CONVERTER_ENV)) or any(
        (d / f"llama_cpp_python-{version}.tar.gz").is_file() for d in sdist_dirs())


needs_converter = pytest.mark.skipif(
    not converter_available(), reason="llama.cpp's convert_hf_to_gguf.py not found: python -m pip download --no-deps "
                                      "--no-binary :all: llama-cpp-python==<installed> -d ~/.cache/kaiyuan")


@pytest.fixture(scope="module")
def export_home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("export-home")
        patch.setenv("KAIYUAN_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def tiny256(export_home):
    from kaiyuan.tiny import CHAT_TEMPLATES, build_tiny_llama

    with ArtifactWriter("model", "tiny-llama-256", license="Apache-2.0", source="kaiyuan.tiny (random weights)",
                        config={"hidden_size": 256}, chat_template=CHAT_TEMPLATES["chatml"]) as writer:
        build_tiny_llama(writer.path, hidden_size=256)
    return writer.artifact


@pytest.fixture(scope="module")
def adapter(tiny256):
    """A LoRA adapter with random (non-zero) B matrices, so that merging really changes the weights."""
    from peft import LoraConfig, get_peft_model

    from kaiyuan.models import load_model

    loaded = load_model(tiny256)
    model = get_peft_model(loaded.model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
    with ArtifactWriter("adapter", "tiny-lora", license="Apache-2.0", source="test",
                        parents=[Parent(tiny256.id, "adapter")]) as writer:
        model.save_pretrained(writer.path)
        loaded.tokenizer.save_pretrained(writer.path)
    return writer.artifact


@pytest.fixture(scope="module")
def f16(tiny256):
    return run_export(ExportConfig(model=tiny256.id, to="gguf", quant="f16")).artifact


@pytest.fixture(scope="module")
def q8_0(tiny256, f16):
    return run_export(ExportConfig(model=tiny256.id, to="gguf", quant="q8_0")).artifact


def gguf_file(artifact):
    return artifact.path / artifact.manifest["config"]["file"]


# ------------------------------------------------------------------------------------------------ merge


def test_merge_matches_base_plus_adapter_and_records_the_difference(tiny256, adapter):
    import torch

    from kaiyuan.models import load_model

    result = run_export(ExportConfig(model=adapter.id, to="merged"))
    merged = result.artifact
    assert merged.kind == "model" and merged.license == "Apache-2.0"
    assert Registry().parents(merged.id) == [(adapter.id, "merge"), (tiny256.id, "base_model")]
    metrics = merged.manifest["metrics"]
    assert metrics["merge_logit_tolerance"] == 1e-3 and 0 <= metrics["merge_max_abs_logit_diff"] < 1e-5
    assert result.checks()["merge_max_abs_logit_diff"] == metrics["merge_max_abs_logit_diff"]

    ids = torch.tensor([[5, 17, 99, 200, 311, 42, 7]])
    peft_model = load_model(adapter).model
    with torch.no_grad():
        with_adapter = peft_model(input_ids=ids).logits
        with peft_model.disable_adapter():
            base = peft_model(input_ids=ids).logits
        merged_logits = load_model(merged).model(input_ids=ids).logits
    assert (with_adapter - base).abs().max() > 0.1  # the adapter matters …
    assert (merged_logits - with_adapter).abs().max() < 1e-5  # … and the merged model reproduces it


def test_merge_above_tolerance_fails_and_registers_nothing(adapter):
    from kaiyuan.export.merge import MergeCheckError, merge_adapter

    before = {a.id for a in Registry().list()}
    with pytest.raises(MergeCheckError, match=r"the merged logits differ from base \+ adapter by .* \(tolerance "
                                              r"1e-09\) on the probe text; nothing was registered"):
        merge_adapter(adapter, tolerance=1e-9, name="never-registered")
    assert {a.id for a in Registry().list()} == before


# ------------------------------------------------------------------------------------------------ GGUF


@needs_converter
def test_f16_gguf_greedy_equals_transformers(tiny256, f16):
    import numpy as np
    import torch
    from llama_cpp import Llama

    from kaiyuan.models import load_model

    loaded = load_model(tiny256)
    llm = Llama(model_path=str(gguf_file(f16)), n_ctx=128, logits_all=True, verbose=False)
    try:
        for prompt in PROMPTS:
            ids = loaded.tokenizer(prompt).input_ids
            assert llm.tokenize(prompt.encode(), add_bos=True, special=True) == ids
            expected = loaded.model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0, len(ids):]
            llm.reset()
            llm.eval(ids)
            got = []
            for _ in range(len(expected)):
                got.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
                llm.eval([got[-1]])
            assert len(expected) == 12 and got == expected.tolist()
    finally:
        llm.close()
    metrics = f16.manifest["metrics"]
    assert metrics["greedy_match"] is True and metrics["greedy_prompts_matched"] == "3/3"
    assert metrics["tokenization_match"] is True and metrics["checks_failed"] == []
    assert metrics["file_type"] == "F16" and abs(metrics["perplexity_drift"]) < 1e-4


@needs_converter
def test_gguf_embeds_chat_template_and_license_and_is_registered(tiny256, f16):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    fields = GGUFReader(gguf_file(f16)).fields
    template = AutoTokenizer.from_pretrained(tiny256.path).chat_template
    assert fields["tokenizer.chat_template"].contents() == template
    assert fields["general.license"].contents() == "Apache-2.0"
    assert f16.kind == "export" and f16.license == "Apache-2.0"
    assert Registry().parents(f16.id) == [(tiny256.id, "quantized")]
    config = f16.manifest["config"]
    assert (config["format"], config["quant"], config["made"]) == ("gguf", "f16", "converted")
    assert config["converter"]["llama_cpp_python"] == installed_llama_cpp_python()
    assert config["pre_tokenizer_fallback"] == "gpt-2"  # the tiny BPE tokenizer's hash is not in llama.cpp's list
    assert f16.manifest["chat_template_sha256"] == tiny256.manifest["chat_template_sha256"]


@needs_converter
def test_q8_0_export_records_small_perplexity_drift(tiny256, f16, q8_0):
    metrics, config = q8_0.manifest["metrics"], q8_0.manifest["config"]
    assert Registry().parents(q8_0.id) == [(tiny256.id, "quantized")]
    assert config["made"] == f"quantized from {f16.id}" and config["llama_ftype"] == "LLAMA_FTYPE_MOSTLY_Q8_0"
    assert metrics["file_type"] == "Q8_0" and set(metrics["tensor_types"]) == {"F32", "Q8_0"}
    assert math.isfinite(metrics["perplexity_transformers"]) and math.isfinite(metrics["perplexity_gguf"])
    assert metrics["perplexity_drift"] == metrics["perplexity_gguf"] / metrics["perplexity_transformers"] - 1
    # q8_0 keeps 8 bits per weight plus a scale per 32: llama.cpp measures < 0.1 % perplexity increase on 7B models;
    # 1 % leaves room for a tiny model, 300 tokens of text and CPU kernels
    assert abs(metrics["perplexity_drift"]) < 0.01
    assert metrics["checks_failed"] == [] and metrics["tokenization_match"] is True


@needs_converter
def test_ollama_modelfile_for_a_chatml_model(tiny256, f16):
    artifact = run_export(ExportConfig(model=tiny256.id, to="ollama", quant="q4_k_m")).artifact
    assert artifact.kind == "export" and Registry().parents(artifact.id) == [(tiny256.id, "quantized")]
    assert (artifact.path / "Modelfile").read_text() == f'''\
# tiny-llama-256 ({tiny256.id}) as a q4_k_m GGUF, exported by kaiyuan 0.1.0
FROM ./tiny-llama-256-q4_k_m.gguf
TEMPLATE """{{{{ range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
"""
PARAMETER stop "<|im_start|>"
PARAMETER stop "<|im_end|>"
PARAMETER temperature 0.7
PARAMETER num_ctx 512
LICENSE """SPDX-License-Identifier: Apache-2.0"""
'''
    assert (artifact.path / "LICENSE").read_text() == "SPDX-License-Identifier: Apache-2.0\n"
    assert (artifact.path / "tiny-llama-256-q4_k_m.gguf").is_file()
    metrics = artifact.manifest["metrics"]
    assert metrics["ollama_template_check"] == {"without_system": True, "with_system": True}
    assert metrics["file_type"] == "Q4_K - Medium" and {"Q4_K", "Q6_K"} <= set(metrics["tensor_types"])
    assert math.isfinite(metrics["perplexity_drift"]) and artifact.manifest["config"]["template_family"] == "chatml"


@needs_converter
def test_cli_exports_an_adapter_as_q8_0_gguf_via_its_merge(tiny256, adapter):
    result = CliRunner().invoke(app, ["export", adapter.id, "--to", "gguf", "--quant", "q8_0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    registry = Registry()
    merged_id = summary["merged_model_id"]
    assert registry.parents(summary["id"]) == [(merged_id, "quantized")]
    assert registry.parents(merged_id) == [(adapter.id, "merge"), (tiny256.id, "base_model")]
    assert summary["file"].endswith("tiny-lora-merged-q8_0.gguf") and summary["quant"] == "q8_0"
    checks = summary["checks"]
    assert checks["merge_max_abs_logit_diff"] < 1e-5 and checks["tokenization_match"] is True
    assert abs(checks["perplexity_drift"]) < 0.01 and checks["checks_failed"] == []
    assert registry.get(summary["id"]).manifest["config"]["made"] == "converted to f16, then quantized"


# ------------------------------------------------------------------------------------------------ Ollama templates


def _tokenizer_with(tiny256, template):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny256.path)
    tokenizer.chat_template = template
    return tokenizer


def test_llama3_and_gemma_templates_translate(tiny256):
    from kaiyuan.export.gguf import GGUFFacts
    from kaiyuan.export.ollama import translate_template
    from kaiyuan.tiny import CHAT_TEMPLATES

    llama3 = _tokenizer_with(tiny256, CHAT_TEMPLATES["llama3"])
    translated = translate_template(llama3, GGUFFacts(None, 512, False, "<|endoftext|>", "<|eot_id|>"))
    assert translated.text == ("<|begin_of_text|>{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>"
                               "\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert translated.check == {"without_system": True, "with_system": True}
    # a real Llama 3 GGUF adds <|begin_of_text|> as its BOS: the template must not write it again
    bos_added = translate_template(llama3, GGUFFacts(None, 512, True, "<|begin_of_text|>", "<|eot_id|>"))
    assert bos_added.text.startswith("{{ range .Messages }}")
    assert bos_added.stops == ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")

    gemma = _tokenizer_with(tiny256, (
        "{{ bos_token }}{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' "
        "else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"))
    translated = translate_template(gemma, GGUFFacts(None, 8192, True, "<|endoftext|>", "<end_of_turn>"))
    assert translated.text == (
        '{{ range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else if eq .Role "system" }}user'
        "{{ else }}{{ .Role }}{{ end }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n")
    # this Jinja template keeps a "system" turn; the Go template makes it a user turn (as Ollama's gemma does)
    assert translated.check == {"without_system": True, "with_system": False}


def test_zephyr_and_a_default_system_message(tiny256):
    from kaiyuan.export.gguf import GGUFFacts
    from kaiyuan.export.ollama import modelfile, translate_template
    from kaiyuan.tiny import CHAT_TEMPLATES

    zephyr = translate_template(_tokenizer_with(tiny256, CHAT_TEMPLATES["zephyr"]),
                                GGUFFacts(None, 512, False, "<|endoftext|>", "</s>"))
    assert zephyr.text == "{{ range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n"
    assert zephyr.check == {"without_system": True, "with_system": True} and zephyr.system is None

    smollm2 = _tokenizer_with(tiny256, (  # SmolLM2-Instruct's template: ChatML with a default system message
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system"
        "\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"))
    translated = translate_template(smollm2, GGUFFacts(None, 8192, False, "<|im_start|>", "<|im_end|>"))
    assert translated.system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert translated.check == {"without_system": True, "with_system": True}
    assert modelfile("m.gguf", translated, {"num_ctx": 4096}, "MIT", "header").splitlines()[3:8] == [
        "{{ .Content }}<|im_end|>", "{{ end }}<|im_start|>assistant", '"""',
        'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""',
        'PARAMETER stop "<|im_start|>"']


def test_unknown_template_needs_template_option(tiny256, tmp_path):
    from kaiyuan.export.gguf import GGUFFacts
    from kaiyuan.export.ollama import translate_template

    odd = _tokenizer_with(tiny256, "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    facts = GGUFFacts(None, 512, False, "<|endoftext|>", "<|im_end|>")
    with pytest.raises(KaiyuanError) as error:
        translate_template(odd, facts)
    assert str(error.value) == (
        "cannot translate the model's chat template to an Ollama template: it is none of chatml, llama3, gemma, "
        "zephyr; pass --template with a family name or a file holding an Ollama Go template")
    go = tmp_path / "template.txt"
    go.write_text("{{ range .Messages }}[{{ .Role }}] {{ .Content }}\n{{ end }}")
    custom = translate_template(odd, facts, str(go))
    assert (custom.text, custom.stops, custom.family) == (go.read_text(), ("<|im_end|>",), "custom")
    assert translate_template(odd, facts, "chatml").family == "chatml"


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_target_exits_2_with_a_clear_error(export_home, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["kaiyuan", "export", "tiny-llama", "--to", "onnx"])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: unknown export target 'onnx': choose merged, gguf or ollama\n"


def test_dataset_model_and_quant_errors(tiny256):
    from kaiyuan.data.datasets import register_dataset

    register_dataset([{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}],
                     "greetings", "CC0-1.0", "test")
    cases = [(ExportConfig(model="greetings", to="gguf"), "'greetings' is a dataset, not a model"),
             (ExportConfig(model=tiny256.id, to="merged"),
              f"'{tiny256.id}' is a model, not a LoRA adapter: there is nothing to merge (export it with --to gguf or "
              "--to ollama)"),
             (ExportConfig(model=tiny256.id, to="gguf", quant="q2_k"),  # type: ignore[arg-type]
              "unknown quantization 'q2_k': choose f16, q8_0 or q4_k_m")]
    for cfg, message in cases:
        with pytest.raises(KaiyuanError) as error:
            run_export(cfg)
        assert str(error.value) == message


def test_missing_converter_says_how_to_get_it(monkeypatch, tmp_path):
    from kaiyuan.export import gguf

    monkeypatch.delenv(CONVERTER_ENV, raising=False)
    monkeypatch.setattr(gguf, "sdist_dirs", lambda: [tmp_path])
    with pytest.raises(KaiyuanError) as error:
        gguf.locate_converter()
    version = installed_llama_cpp_python()
    assert str(error.value) == (
        "no llama.cpp GGUF converter found: convert_hf_to_gguf.py ships in llama-cpp-python's source distribution, "
        f"not in its wheel. Download it with\n  python -m pip download --no-deps --no-binary :all: "
        f"llama-cpp-python=={version} -d {tmp_path}\nor pass --converter PATH (or set {CONVERTER_ENV}) to "
        "convert_hf_to_gguf.py, a llama.cpp checkout, or a llama-cpp-python sdist .tar.gz")
    with pytest.raises(KaiyuanError, match=r"^/nonexistent \(--converter\): not convert_hf_to_gguf.py, a llama.cpp "):
        gguf.locate_converter("/nonexistent")
