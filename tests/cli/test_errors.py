"""Errors come early and in the user's terms: exit code 2, one clear line, before any model is loaded."""

from __future__ import annotations

import json

import pytest

from kaiyuan.errors import KaiyuanError
from tests.conftest import run_cli, write_jsonl

CONVERSATION = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
READ_FORMATS = ("data files are JSON or JSON lines (.json, .jsonl, optionally .gz) with records in alpaca, sharegpt, "
                "messages or pairs format (or .txt / .md plain text)")


class ModelLoaded(KaiyuanError):
    """Raised by the patched load_model: as a KaiyuanError, ``main()`` exits 2 with "error: load_model was called"."""


@pytest.fixture
def no_model_loading(monkeypatch):
    """Loading a model fails the test: every error here must come before it."""
    import kaiyuan.models
    import kaiyuan.train.preference
    import kaiyuan.train.sft

    def load_model(*args, **kwargs):
        raise ModelLoaded("load_model was called")

    for module in (kaiyuan.models, kaiyuan.train.sft, kaiyuan.train.preference):
        monkeypatch.setattr(module, "load_model", load_model)


def _registered_models():
    from kaiyuan.hub.registry import Registry

    return [a.name for a in Registry().list("model")]


def test_a_missing_data_file_is_reported_before_the_model_loads(home, tmp_path, monkeypatch, capsys,
                                                                no_model_loading):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--data", "missing.jsonl")
    assert (code, out) == (2, "")
    assert err == "error: cannot resolve dataset 'missing.jsonl': not a registry id or name, nor a file\n"
    assert _registered_models() == []  # the data is checked before the model is even built


def test_a_csv_data_file_says_which_formats_are_read(home, tmp_path, monkeypatch, capsys, no_model_loading):
    data = tmp_path / "train.csv"
    data.write_text("question,answer\nhi,hello\n", encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--data", data)
    assert (code, out) == (2, "")
    assert err == f"error: {data}: kaiyuan does not read .csv files; {READ_FORMATS}\n"
    assert _registered_models() == []


def test_a_gzipped_csv_is_named_too(tmp_path):
    from kaiyuan.data.formats import DataError, load_records

    with pytest.raises(DataError) as raised:
        load_records(tmp_path / "train.csv.gz")
    assert str(raised.value) == f"{tmp_path / 'train.csv.gz'}: kaiyuan does not read .csv files; {READ_FORMATS}"


def test_a_misspelt_method_lists_the_choices_with_a_did_you_mean(home, tmp_path, monkeypatch, capsys,
                                                                 no_model_loading):
    data = write_jsonl(tmp_path / "train.jsonl", [CONVERSATION])
    code, out, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--data", data,
                             "--method", "lorra")
    assert (code, out) == (2, "")
    assert err == ("error: sft: method: expected one of 'lora', 'dora', 'qlora', 'full', 'freeze'; got 'lorra'; "
                   "did you mean 'lora'?\n")
    assert "typing.Literal" not in err


def test_a_literal_mismatch_in_a_config_file_reads_the_same(tmp_path):
    from kaiyuan.config import config_problems
    from kaiyuan.train.sft import SFTConfig

    assert config_problems(SFTConfig, {"model": "m", "data": "d", "precision": "fp31"}, "sft") == [
        "sft: precision: expected one of 'fp32', 'bf16'; got 'fp31'; did you mean 'fp32'?"]
    assert config_problems(SFTConfig, {"model": "m", "data": "d", "method": 3}, "sft") == [
        "sft: method: expected one of 'lora', 'dora', 'qlora', 'full', 'freeze'; got 3"]


def test_a_bad_record_names_the_users_file_and_line(home, tmp_path, monkeypatch, capsys, no_model_loading):
    data = tmp_path / "convs.jsonl"
    data.write_text("\n" + json.dumps(CONVERSATION) + "\n", encoding="utf-8")  # the record is on line 2
    code, out, err = run_cli(monkeypatch, capsys, "train", "dpo", "--model", "tiny-llama", "--data", data)
    assert (code, out) == (2, "")
    assert err == (f"error: {data}:2: record: not a preference pair (needs prompt, chosen and rejected) — DPO "
                   "learns from pairs\n")
    assert "artifacts" not in err


def test_a_misspelt_model_name_gets_a_did_you_mean(home, tmp_path, monkeypatch, capsys, no_model_loading):
    data = write_jsonl(tmp_path / "train.jsonl", [CONVERSATION])
    code, out, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-lama", "--data", data)
    assert (code, out) == (2, "")
    assert err == ("error: cannot resolve model 'tiny-lama': not a registry id or name, a local model directory, a "
                   ".gguf file, a hub id, 'smollm2-135m-instruct' or 'tiny-llama' (see `kaiyuan models list`); did "
                   "you mean 'tiny-llama'?\n")


def test_registered_names_are_suggested_too(home):
    from kaiyuan.errors import NotFoundError
    from kaiyuan.models import create_tiny_llama, resolve_model

    create_tiny_llama(template="zephyr")
    with pytest.raises(NotFoundError, match=r"; did you mean 'tiny-llama-zephyr'\?$"):
        resolve_model("tiny-lama-zephr")


def test_training_on_data_without_a_license_warns(home, tmp_path, monkeypatch, capsys, no_model_loading):
    from kaiyuan.hub.registry import Registry

    data = write_jsonl(tmp_path / "train.jsonl", [CONVERSATION])
    code, _, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--data", data)
    assert code == 2 and err.endswith("error: load_model was called\n")  # the warning comes before that
    dataset = Registry().find("train.jsonl", kind="dataset")
    assert dataset is not None and dataset.license == "NOASSERTION"
    assert err.splitlines().count(
        f"warning: dataset train.jsonl ({dataset.id}) has no license (NOASSERTION): models trained on it cannot be "
        "shared with a clear license; pass --data-license SPDX-ID") == 1


def test_no_warning_with_a_data_license(home, tmp_path, monkeypatch, capsys, no_model_loading):
    data = write_jsonl(tmp_path / "train.jsonl", [CONVERSATION])
    code, _, err = run_cli(monkeypatch, capsys, "train", "sft", "--model", "tiny-llama", "--data", data,
                           "--data-license", "CC0-1.0")
    assert code == 2 and err.endswith("error: load_model was called\n") and "warning" not in err
