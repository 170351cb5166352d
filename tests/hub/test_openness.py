"""Openness: MOF class and progress, the 14-dimension openness index and the OSAID check, from fixtures in code."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.openness import MOF_COMPONENTS, openness_report
from kaiyuan.hub.registry import ArtifactWriter, Registry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CONFIG = '{"model_type": "llama", "hidden_size": 64}'
ROWS = '{"messages": [{"role": "user", "content": "March 1, 1999"}, {"role": "assistant", "content": "1999-03-01"}]}\n'


@pytest.fixture
def registry(home, monkeypatch):
    monkeypatch.setattr("kaiyuan.hub.registry.kaiyuan_git_commit", lambda: COMMIT)
    monkeypatch.setattr("kaiyuan.hub.registry.library_versions", lambda: {"torch": "2.9.0", "transformers": "5.0.0",
                                                                          "peft": "0.17.0"})
    return Registry()


def make(kind, name, license, files, parents=(), source="test fixture", config=None, metrics=None):
    """A small fake artifact: the given files (relative path → text), its manifest and parents."""
    with ArtifactWriter(kind, name, license=license, source=source, config=config or {}, metrics=metrics or {},
                        parents=[Parent(p if isinstance(p, str) else p.id, r) for p, r in parents]) as writer:
        for relative, text in files.items():
            (writer.path / relative).parent.mkdir(parents=True, exist_ok=True)
            (writer.path / relative).write_text(text)
    return writer.artifact


def import_base(name="smollm2-base", license="Apache-2.0", card=False):
    files = {"config.json": CONFIG, "model.safetensors": f"{name} weights"}
    return make("model", name, license, {**files, "README.md": f"# {name}"} if card else files,
                source=f"pypi:{name}")


def pipeline(data_license="CC0-1.0", data_card=True, checkpoints=True, model_card=True, evaluate=True):
    """A model made entirely in kaiyuan: imported Apache base → LoRA SFT on data → merge → evaluation."""
    base = import_base()
    data_files = {"data.jsonl": ROWS + data_license, **({"README.md": "# dates-train\nSynthetic dates."}
                                                          if data_card else {})}
    train = make("dataset", "dates-train", data_license, data_files, source="kaiyuan.data.synthetic (dates)",
                 config={"format": "messages", "split": "train"})
    heldout = make("dataset", "dates-heldout", "CC0-1.0", {"data.jsonl": ROWS, "README.md": "# dates-heldout"},
                   source="kaiyuan.data.synthetic (dates)")
    adapter_files = {"adapter_config.json": "{}", "adapter_model.safetensors": "lora " + data_license,
                     "metrics.jsonl": '{"step": 1, "loss": 2.0}\n'}
    if checkpoints:
        adapter_files["checkpoint-2/adapter_model.safetensors"] = "step 2"
        adapter_files["checkpoint-10/adapter_model.safetensors"] = "step 10"
    adapter = make("adapter", "smollm2-dates-lora", "Apache-2.0", adapter_files,
                   [(base, "adapter"), (train, "dataset")], source="kaiyuan train sft",
                   config={"stage": "sft", "model": base.id, "data": train.id, "seed": 0})
    merged_files = {"config.json": CONFIG, "model.safetensors": "merged " + data_license,
                    **({"README.md": "# smollm2-dates\n## Training\nLoRA SFT."} if model_card else {})}
    merged = make("model", "smollm2-dates", "Apache-2.0", merged_files, [(adapter, "merge"), (base, "base_model")],
                  source="kaiyuan merge (peft merge_and_unload)", config={"stage": "merge"})
    if evaluate:
        make("eval", "smollm2-dates@dates-heldout", "CC0-1.0", {"predictions.jsonl": '{"correct": true}\n'},
             [(merged, "evaluated_model"), (heldout, "dataset")], source="kaiyuan eval (exact match)",
             metrics={"exact_match": 1.0})
    return merged


def counted(report):
    return {c["name"]: c["counts"] for c in report.mof_components}


def scores(report):
    return {d["name"]: d["score"] for d in report.index}


FULL_INDEX = {"Open code": 1.0, "LLM data": 0.0, "LLM weights": 1.0, "RL data": 1.0, "RL weights": 1.0,
              "License": 1.0, "Code": 1.0, "Architecture": 1.0, "Preprint": 0.5, "Paper": 0.0, "Modelcard": 1.0,
              "Datasheet": 1.0, "Package": 0.0, "API": 0.5}


def test_mof_table_matches_the_framework():
    required = {level: [c.name for c in MOF_COMPONENTS if c.mof_class == level and c.required] for level in (3, 2, 1)}
    assert required == {
        3: ["Model architecture", "Model parameters (Final)", "Technical report", "Evaluation results", "Model card",
            "Data card"],
        2: ["Training code", "Inference code", "Evaluation code", "Evaluation data"],
        1: ["Research paper", "Datasets", "Data preprocessing code", "Model parameters (Intermediate)"]}
    assert [c.name for c in MOF_COMPONENTS if not c.required] == [
        "Sample model outputs", "Supporting libraries and tools", "Model metadata"]
    assert len(MOF_COMPONENTS) == 17


def test_kaiyuan_made_model_reaches_class_one(registry):
    merged = pipeline()
    report = openness_report("smollm2-dates", registry)
    assert (report.model_id, report.license, report.mof_class) == (merged.id, "Apache-2.0", "Class I")
    assert report.progress == {"Class III": {"required": 6, "met": 6, "missing": []},
                               "Class II": {"required": 10, "met": 10, "missing": []},
                               "Class I": {"required": 14, "met": 14, "missing": []}}
    assert all(counted(report).values())
    evidence = {c["name"]: c["evidence"] for c in report.mof_components}
    assert evidence["Model parameters (Intermediate)"] == (
        "smollm2-dates-lora: checkpoint-2, checkpoint-10 inside the artifact (hashed in its manifest)")
    assert evidence["Research paper"].startswith("stand-in: no paper file, so the model card's methods (README.md)")
    assert evidence["Technical report"].startswith("stand-in: no report file, so the model card (README.md)")
    assert f"kaiyuan 0.1.0 (Apache-2.0, commit {COMMIT})" in evidence["Training code"]
    assert evidence["Datasets"] == "dates-train (CC0-1.0, dataset)"
    assert evidence["Evaluation data"].endswith("CC0-1.0") and "dates-heldout" in evidence["Evaluation data"]
    assert evidence["Supporting libraries and tools"] == "peft 0.17.0 (Apache-2.0), torch 2.9.0 (BSD-3-Clause), " \
                                                         "transformers 5.0.0 (Apache-2.0)"
    assert scores(report) == FULL_INDEX
    assert (report.index_score, report.index_max) == (10.0, 14)
    # an imported base keeps it from the OSAID: its pretraining data and code are upstream
    assert report.osaid["requirements"] == {"data_information": False, "code": False, "parameters": True}
    assert report.osaid["passes"] is False
    assert report.osaid["reasons"][0] == ("data information: the training data of the imported base weights "
                                          "(smollm2-base) is not recorded")


def test_without_a_data_card_the_model_is_no_longer_an_open_model(registry):
    pipeline(data_card=False)
    report = openness_report("smollm2-dates", registry)
    assert report.mof_class is None
    train = Registry().get("dates-train")
    missing = [{"name": "Data card", "class": "Class III",
                "reason": f"no data card for dataset(s) dates-train ({train.id}): run kaiyuan card on them"}]
    assert report.progress == {"Class III": {"required": 6, "met": 5, "missing": missing},
                               "Class II": {"required": 10, "met": 9, "missing": missing},
                               "Class I": {"required": 14, "met": 13, "missing": missing}}
    assert scores(report) == {**FULL_INDEX, "Datasheet": 0.0}
    # a data card registered afterwards (kaiyuan card DATASET) counts
    from kaiyuan.hub.card import write_cards

    write_cards(train.id, registry)
    assert openness_report("smollm2-dates", registry).mof_class == "Class I"


def test_non_commercial_training_data_is_not_open(registry):
    pipeline(data_license="CC-BY-NC-4.0")
    report = openness_report("smollm2-dates", registry)
    assert report.mof_class is None
    assert [m["name"] for m in report.progress["Class I"]["missing"]] == ["Data card", "Datasets"]
    datasets = next(c for c in report.mof_components if c["name"] == "Datasets")
    assert (datasets["present"], datasets["open"], datasets["license"]) == (True, False, "CC-BY-NC-4.0")
    assert datasets["reason"] == ("not under an open license (CC-BY-NC-4.0): dates-train (CC-BY-NC-4.0, dataset); "
                                  "not under an open data license: dates-train (CC-BY-NC-4.0)")
    assert (report.progress["Class III"]["met"], report.progress["Class II"]["met"],
            report.progress["Class I"]["met"]) == (5, 9, 12)
    assert scores(report) == {**FULL_INDEX, "RL data": 0.0}


def test_weights_only_import_is_not_an_open_model(registry):
    base = import_base("imported-llm")
    report = openness_report(base.id, registry)
    assert report.mof_class is None
    assert {name for name, ok in counted(report).items() if ok} == {
        "Model architecture", "Model parameters (Final)", "Inference code"}
    assert report.progress["Class III"] == {"required": 6, "met": 2, "missing": [
        {"name": "Technical report", "class": "Class III", "reason": "no technical report (technical_report.md/pdf) "
                                                                     "in the artifact, and no model card to stand in "
                                                                     "for one"},
        {"name": "Evaluation results", "class": "Class III",
         "reason": "no evaluation of this model is registered (run `kaiyuan eval`)"},
        {"name": "Model card", "class": "Class III",
         "reason": f"no model card for imported-llm (run kaiyuan card {report.model_id})"},
        {"name": "Data card", "class": "Class III", "reason": "no training datasets recorded in the lineage"}]}
    assert (report.progress["Class II"]["met"], report.progress["Class I"]["met"]) == (3, 3)
    assert scores(report) == {"Open code": 0.0, "LLM data": 0.0, "LLM weights": 1.0, "RL data": 0.0,
                              "RL weights": 0.0, "License": 1.0, "Code": 0.0, "Architecture": 1.0, "Preprint": 0.0,
                              "Paper": 0.0, "Modelcard": 0.0, "Datasheet": 0.0, "Package": 0.0, "API": 0.5}
    assert report.index_score == 3.5
    assert report.osaid["requirements"] == {"data_information": False, "code": False, "parameters": True}


def test_restricted_base_weights_are_not_open_parameters(registry):
    base = import_base("Llama-3.1-8B", license="llama3.1", card=True)
    make("eval", "llama@mmlu", "CC0-1.0", {"predictions.jsonl": "{}\n"}, [(base, "evaluated_model")],
         source="kaiyuan eval --task mmlu", config={"task": "mmlu"})
    report = openness_report(base.id, registry)
    component = {c["name"]: c for c in report.mof_components}
    assert (component["Model parameters (Final)"]["present"], component["Model parameters (Final)"]["open"]) == (
        True, False)
    assert component["Evaluation data"]["evidence"] == "benchmark mmlu: MIT"
    assert component["Evaluation results"]["counts"] is True
    assert (scores(report)["License"], scores(report)["LLM weights"]) == (0.5, 0.5)
    assert report.mof_class is None


def test_pretrained_from_scratch_in_kaiyuan_passes_the_osaid(registry):
    tiny = make("model", "tiny-llama", "Apache-2.0", {"config.json": CONFIG, "model.safetensors": "random"},
                source="kaiyuan.tiny (random weights)")
    corpus = make("dataset", "corpus", "CC-BY-4.0", {"data.jsonl": '{"text": "hello"}\n', "README.md": "# corpus"})
    pretrained = make("model", "tiny-pretrained", "Apache-2.0",
                      {"config.json": CONFIG, "model.safetensors": "pretrained", "README.md": "# tiny-pretrained",
                       "checkpoint-5/model.safetensors": "step 5"},
                      [(tiny, "finetune"), (corpus, "dataset")], source="kaiyuan train pretrain",
                      config={"stage": "pretrain", "from_scratch": True})
    report = openness_report(pretrained.id, registry)
    assert report.osaid == {"passes": True, "requirements": {"data_information": True, "code": True,
                                                             "parameters": True}, "reasons": [
        "data information: every training dataset is registered with its source and data files (corpus)",
        f"code: training, inference and data processing by kaiyuan 0.1.0 (Apache-2.0, commit {COMMIT})",
        "parameters: model.safetensors under Apache-2.0: OSI-approved or open terms"]}
    assert (scores(report)["LLM data"], scores(report)["RL data"], scores(report)["RL weights"]) == (1.0, 0.0, 0.0)
    # no evaluation yet: Class III needs evaluation results
    assert report.mof_class is None
    assert [m["name"] for m in report.progress["Class I"]["missing"]] == [
        "Evaluation results", "Evaluation code", "Evaluation data"]


def test_checkpoints_in_the_run_directory_count(registry):
    from kaiyuan.train.common import TrainOptions, run_dir

    base = import_base()
    data = make("dataset", "dates", "CC0-1.0", {"data.jsonl": ROWS})
    options = TrainOptions(model=base.id, data=data.id, checkpoint_steps=4)
    adapter = make("adapter", "run-dir-lora", "Apache-2.0", {"adapter_model.safetensors": "lora"},
                   [(base, "adapter"), (data, "dataset")], source="kaiyuan train sft",
                   config={"stage": "sft", **asdict(options)})
    component = {c["name"]: c for c in openness_report(adapter.id, registry).mof_components}
    assert component["Model parameters (Intermediate)"]["reason"] == (
        "no intermediate checkpoints kept for run-dir-lora (train with --checkpoint-steps N)")
    (run_dir(options, "sft") / "checkpoint-4").mkdir(parents=True)
    component = {c["name"]: c for c in openness_report(adapter.id, registry).mof_components}
    assert component["Model parameters (Intermediate)"]["evidence"] == (
        f"run-dir-lora: checkpoint-4 in the run directory {run_dir(options, 'sft')} (kept outside the artifact, not "
        "hashed by its manifest)")


def test_an_export_is_a_package(registry):
    merged = pipeline()
    export = make("export", "smollm2-dates-q4_0-gguf", "Apache-2.0", {"model.gguf": "gguf bytes"},
                  [(merged, "quantized")], source="kaiyuan export gguf")
    assert scores(openness_report(merged.id, registry))["Package"] == 1.0
    report = openness_report(export.id, registry)
    final = next(c for c in report.mof_components if c["name"] == "Model parameters (Final)")
    assert (final["counts"], final["evidence"]) == (True, "model.gguf under Apache-2.0")
    assert report.progress["Class III"]["missing"] == [
        {"name": "Technical report", "class": "Class III", "reason": "no technical report (technical_report.md/pdf) "
                                                                     "in the artifact, and no model card to stand in "
                                                                     "for one"},
        {"name": "Evaluation results", "class": "Class III",
         "reason": "no evaluation of this model is registered (run `kaiyuan eval`)"},
        {"name": "Model card", "class": "Class III",
         "reason": f"no model card for smollm2-dates-q4_0-gguf (run kaiyuan card {report.model_id})"}]


def test_cli_json_and_text(registry):
    from kaiyuan.cli import app

    merged = pipeline()
    runner = CliRunner()
    result = runner.invoke(app, ["openness", "smollm2-dates", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["model_id", "name", "kind", "license", "mof_class", "mof_components", "progress", "index",
                          "index_score", "index_max", "osaid", "notes"]
    assert (data["model_id"], data["mof_class"], data["index_score"], data["osaid"]["passes"]) == (
        merged.id, "Class I", 10.0, False)
    assert list(data["mof_components"][0]) == ["name", "class", "required", "content", "present", "open", "counts",
                                               "license", "evidence", "reason"]
    assert [d["name"] for d in data["index"]] == list(FULL_INDEX)
    text = runner.invoke(app, ["openness", merged.id], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "Model Openness Framework: Class I" in text.stdout
    assert "openness index: 10 of 14" in text.stdout
    missing = runner.invoke(app, ["openness", "no-such-model"])
    assert type(missing.exception).__name__ == "NotFoundError"
    not_a_model = runner.invoke(app, ["openness", "dates-train"])
    assert str(not_a_model.exception).startswith("'dates-train' is a dataset, not a model")
