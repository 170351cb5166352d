"""Licenses: normalization to SPDX, the property table, and terms derived along the lineage."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from kaiyuan.errors import NotFoundError
from kaiyuan.hub.licenses import license_properties, license_report, normalize_license
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import ArtifactWriter, Registry

APACHE = ["Apache-2.0: give recipients a copy of the license and keep the NOTICE file's attributions",
          "Apache-2.0: state significant changes in modified files"]
MIT = ["MIT: keep the copyright and permission notice in all copies"]


@pytest.fixture
def registry(home, monkeypatch):
    monkeypatch.setattr("kaiyuan.hub.registry.kaiyuan_git_commit", lambda: "0" * 40)
    return Registry()


def make(kind, name, license, parents=(), source="test fixture"):
    """A small fake artifact: one tiny file, a manifest, parents as (artifact, relation) pairs or (id, relation)."""
    with ArtifactWriter(kind, name, license=license, source=source,
                        parents=[Parent(p if isinstance(p, str) else p.id, r) for p, r in parents]) as writer:
        (writer.path / ("data.jsonl" if kind == "dataset" else "model.safetensors")).write_text(name)
    return writer.artifact


# ------------------------------------------------------------------------------------- normalization


def test_hub_ids_normalize_to_spdx():
    hub_ids = ["apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-3.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0", "llama2",
               "llama3", "llama3.1", "gemma", "openrail", "odc-by", "cdla-permissive-2.0", "cc0-1.0"]
    assert [normalize_license(v) for v in hub_ids] == [
        "Apache-2.0", "MIT", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "LicenseRef-Llama-2",
        "LicenseRef-Llama-3", "LicenseRef-Llama-3.1", "LicenseRef-Gemma", "LicenseRef-OpenRAIL", "ODC-By-1.0",
        "CDLA-Permissive-2.0", "CC0-1.0"]


def test_free_text_normalizes_to_spdx():
    texts = ["Llama 2 Community License", "Apache License 2.0", "Apache License, Version 2.0", "Gemma Terms of Use",
             "CC BY-NC 4.0", "Creative Commons Attribution-ShareAlike 4.0 International", "CC0 1.0 Universal",
             "META LLAMA 3 COMMUNITY LICENSE AGREEMENT", "Llama 3.1 Community License Agreement", "The MIT License",
             "GNU General Public License v3.0", "BSD 3-Clause License", "Open Data Commons Attribution License",
             "Open Database License (ODbL)"]
    assert [normalize_license(t) for t in texts] == [
        "LicenseRef-Llama-2", "Apache-2.0", "Apache-2.0", "LicenseRef-Gemma", "CC-BY-NC-4.0", "CC-BY-SA-4.0",
        "CC0-1.0", "LicenseRef-Llama-3", "LicenseRef-Llama-3.1", "MIT", "GPL-3.0-only", "BSD-3-Clause",
        "ODC-By-1.0", "ODbL-1.0"]


def test_spdx_passthrough_and_unknown():
    assert [normalize_license(v) for v in ("Apache-2.0", "cc-by-nc-nd-4.0", "LicenseRef-Llama-3.1", "PDDL-1.0",
                                           "licenseref-gemma")] == [
        "Apache-2.0", "CC-BY-NC-ND-4.0", "LicenseRef-Llama-3.1", "PDDL-1.0", "LicenseRef-Gemma"]
    assert [normalize_license(v) for v in (None, "  ", "other", "unknown", "My Terms v2", "CC BY 2.0")] == [
        "NOASSERTION", "NOASSERTION", "NOASSERTION", "NOASSERTION", "LicenseRef-My-Terms-v2", "LicenseRef-CC-BY-2.0"]
    unknown = license_properties("My Terms v2")
    assert (unknown.spdx, unknown.known, unknown.commercial_use, unknown.open_license) == (
        "LicenseRef-My-Terms-v2", False, None, False)


def test_license_properties_table():
    llama = license_properties("llama3.1")
    assert (llama.commercial_use, llama.user_cap, llama.name_prefix, llama.display_notice,
            llama.acceptable_use_policy, llama.osi_approved, llama.open_data) == (
        True, 700_000_000, "Llama", "Built with Llama", "Llama 3.1 Acceptable Use Policy", False, False)
    llama2 = license_properties("Llama 2 Community License")
    assert (llama2.no_improving_other_models, llama2.user_cap, llama2.name_prefix) == (True, 700_000_000, None)
    assert license_properties("llama3").name_prefix == "Llama 3"
    nc = license_properties("CC BY-NC 4.0")
    assert (nc.commercial_use, nc.attribution, nc.share_alike, nc.open_data) == (False, True, False, False)
    by_sa = license_properties("cc-by-sa-4.0")
    assert (by_sa.commercial_use, by_sa.share_alike, by_sa.open_data, by_sa.osi_approved) == (True, True, True, False)
    apache = license_properties("Apache-2.0")
    assert (apache.osi_approved, apache.open_license, apache.attribution, apache.share_alike) == (
        True, True, True, False)
    assert [license_properties(s).open_data for s in ("CC0-1.0", "CC-BY-4.0", "CDLA-Permissive-2.0", "ODC-By-1.0",
                                                      "ODbL-1.0", "PDDL-1.0", "MIT", "LicenseRef-Gemma")] == [
        True, True, True, True, True, True, False, False]
    gemma = license_properties("gemma")
    assert (gemma.commercial_use, gemma.acceptable_use_policy, gemma.user_cap) == (
        True, "Gemma Prohibited Use Policy", None)


# ------------------------------------------------------------------------------------------ lineage


def test_apache_base_tuned_on_alpaca_is_a_non_commercial_risk(registry):
    base = make("model", "base-apache", "apache-2.0")
    alpaca = make("dataset", "alpaca", "cc-by-nc-4.0")
    tuned = make("model", "apache-alpaca-sft", "Apache-2.0", [(base, "finetune"), (alpaca, "dataset")],
                 source="kaiyuan train sft")
    report = license_report("apache-alpaca-sft")
    assert (report.model_id, report.license, report.verdict) == (tuned.id, "Apache-2.0", "risk")
    assert report.risks == [{
        "level": "risk", "kind": "non-commercial-data", "license": "CC-BY-NC-4.0", "path": [tuned.id, alpaca.id],
        "path_text": "apache-alpaca-sft ←dataset— alpaca (CC-BY-NC-4.0)",
        "message": "non-commercial risk: alpaca (dataset) is CC-BY-NC-4.0 — whether a model trained on it may be "
                   "used commercially is legally unsettled"}]
    assert report.obligations == APACHE + ["CC-BY-NC-4.0: give appropriate credit, link to the license and indicate "
                                           "changes"]
    assert [(e["name"], e["role"], e["via"], e["license"], e["license_recorded"]) for e in report.evidence] == [
        ("apache-alpaca-sft", "self", None, "Apache-2.0", "Apache-2.0"),
        ("base-apache", "weights", "finetune", "Apache-2.0", "apache-2.0"),
        ("alpaca", "data", "dataset", "CC-BY-NC-4.0", "cc-by-nc-4.0")]
    assert report.evidence[2]["properties"]["commercial_use"] is False
    assert report.summary.startswith("commercial use: risk — non-commercial risk: alpaca (dataset)")


def test_smollm2_tuned_on_hh_rlhf_is_commercially_usable(registry):
    base = make("model", "smollm2-135m-instruct", "Apache-2.0")
    hh = make("dataset", "hh-rlhf", "mit")
    make("model", "smollm2-hh-dpo", "Apache-2.0", [(base, "finetune"), (hh, "dataset")])
    report = license_report("smollm2-hh-dpo", registry)
    assert (report.verdict, report.risks, report.obligations) == ("yes", [], APACHE + MIT)
    assert (report.use_policies, report.user_cap) == ([], None)
    assert report.summary == "commercial use: yes, with the obligations listed"


def test_gemma_terms_are_carried_into_the_derived_model(registry):
    gemma = make("model", "gemma-2-2b-it", "gemma")
    data = make("dataset", "dates", "CC0-1.0")
    adapter = make("adapter", "gemma-dates-lora", "gemma", [(gemma, "adapter"), (data, "dataset")])
    merged = make("model", "gemma-dates", "gemma", [(adapter, "merge"), (gemma, "base_model")])
    report = license_report(merged.id, registry)
    assert (report.verdict, report.license, report.risks) == ("yes", "LicenseRef-Gemma", [])
    assert report.use_policies == ["Gemma Prohibited Use Policy"]
    assert report.obligations == [
        "LicenseRef-Gemma: distribute Gemma and Model Derivatives with the use restrictions of section 3.2 as an "
        "enforceable provision, and give recipients a copy of the Gemma Terms of Use",
        'LicenseRef-Gemma: keep the notice "Gemma is provided under and subject to the Gemma Terms of Use found at '
        'ai.google.dev/gemma/terms" in a "Notice" text file',
        "LicenseRef-Gemma: mark modified files with a prominent notice that you modified them",
        "LicenseRef-Gemma: comply with the Gemma Prohibited Use Policy"]
    assert [(e["name"], e["role"], e["depth"]) for e in report.evidence] == [
        ("gemma-dates", "self", 0), ("gemma-dates-lora", "weights", 1), ("gemma-2-2b-it", "weights", 1),
        ("dates", "data", 2)]


def test_merge_of_llama_31_and_apache_carries_both_terms(registry):
    llama = make("model", "Llama-3.1-8B-Instruct", "llama3.1")
    apache = make("model", "qwen-ish-apache", "Apache-2.0")
    merged = make("model", "my-merge", "llama3.1", [(llama, "merge"), (apache, "merge")])
    report = license_report("my-merge", registry)
    assert report.verdict == "yes"
    assert report.obligations == [
        "LicenseRef-Llama-3.1: give recipients a copy of the Llama 3.1 Community License",
        'LicenseRef-Llama-3.1: keep the notice "Llama 3.1 is licensed under the Llama 3.1 Community License, '
        'Copyright © Meta Platforms, Inc. All Rights Reserved." in a "Notice" text file distributed with copies',
        'LicenseRef-Llama-3.1: display "Built with Llama" prominently on a related website, user interface, blog '
        "post, about page or product documentation",
        "LicenseRef-Llama-3.1: a model created, trained, fine-tuned or improved with these materials or their "
        'outputs must have a name beginning with "Llama"',
        "LicenseRef-Llama-3.1: products or services with more than 700 million monthly active users need a separate "
        "license from Meta",
        "LicenseRef-Llama-3.1: comply with the Llama 3.1 Acceptable Use Policy", *APACHE]
    assert (report.use_policies, report.user_cap) == (["Llama 3.1 Acceptable Use Policy"], 700_000_000)
    assert [(r["level"], r["kind"], r["path"]) for r in report.risks] == [
        ("flag", "license-mismatch", [merged.id, apache.id]), ("flag", "naming", [merged.id])]
    assert report.risks[1]["message"] == ('the name "my-merge" must begin with "Llama" before the model is '
                                          "distributed (LicenseRef-Llama-3.1, from my-merge)")
    renamed = make("model", "Llama-3.1-my-merge", "llama3.1", [(llama, "merge"), (apache, "merge")])
    assert [r["kind"] for r in license_report(renamed.id, registry).risks] == ["license-mismatch"]


def test_name_prefix_ignores_case_and_separators(registry):
    llama3 = make("model", "Meta-Llama-3-8B", "llama3")
    ok = make("model", "llama_3-8b-dates", "llama3", [(llama3, "finetune")])
    bad = make("model", "llama-dates", "llama3", [(llama3, "finetune")])
    assert license_report(ok.id, registry).risks == []
    assert [r["message"] for r in license_report(bad.id, registry).risks] == [
        'the name "llama-dates" must begin with "Llama 3" before the model is distributed (LicenseRef-Llama-3, '
        "from llama-dates)"]


def test_non_commercial_weights_mean_no(registry):
    base = make("model", "research-base", "CC-BY-NC-4.0")
    tuned = make("model", "research-tuned", "Apache-2.0", [(base, "finetune")])
    report = license_report(tuned.id, registry)
    assert report.verdict == "no"
    assert [(r["level"], r["kind"], r["path_text"]) for r in report.risks] == [
        ("blocker", "non-commercial", "research-tuned ←finetune— research-base (CC-BY-NC-4.0)"),
        ("flag", "license-mismatch", "research-tuned ←finetune— research-base (CC-BY-NC-4.0)")]
    assert license_report(base.id, registry).verdict == "no"


def test_generated_data_carries_the_generators_terms(registry):
    teacher = make("model", "Llama-3.1-70B", "llama3.1")
    synthetic = make("dataset", "synthetic-qa", "CC0-1.0", [(teacher, "generator")])
    base = make("model", "student-base", "MIT")
    student = make("model", "student", "MIT", [(base, "finetune"), (synthetic, "dataset")])
    report = license_report(student.id, registry)
    assert report.verdict == "yes"
    naming = [r for r in report.risks if r["kind"] == "naming"]
    assert naming == [{"level": "flag", "kind": "naming", "license": "LicenseRef-Llama-3.1",
                       "path": [student.id, synthetic.id, teacher.id],
                       "path_text": "student ←dataset— synthetic-qa ←generator— Llama-3.1-70B (LicenseRef-Llama-3.1)",
                       "message": 'the name "student" must begin with "Llama" before the model is distributed '
                                  "(LicenseRef-Llama-3.1, from Llama-3.1-70B)"}]
    assert [(e["name"], e["role"], e["via"]) for e in report.evidence] == [
        ("student", "self", None), ("student-base", "weights", "finetune"), ("synthetic-qa", "data", "dataset"),
        ("Llama-3.1-70B", "data", "dataset")]


def test_llama2_outputs_improving_another_model_unknown_and_missing_inputs_are_risks(registry):
    llama2 = make("model", "llama-2-13b-chat", "llama2")
    distilled = make("dataset", "llama2-answers", "CC0-1.0", [(llama2, "generator")])
    scraped = make("dataset", "scraped", "NOASSERTION")
    base = make("model", "mistral-ish", "Apache-2.0")
    student = make("model", "student2", "Apache-2.0", [(base, "finetune"), (distilled, "dataset"),
                                                        (scraped, "dataset"), ("model-000000000000", "reward_model")])
    report = license_report(student.id, registry)
    assert report.verdict == "risk"
    assert [(r["level"], r["kind"], r["path"]) for r in report.risks] == [
        ("risk", "unknown-license", [student.id, scraped.id]),
        ("risk", "missing-input", [student.id, "model-000000000000"]),
        ("risk", "improves-other-model", [student.id, distilled.id, llama2.id])]
    assert report.risks[2]["message"] == (
        "Llama 2 materials or outputs (llama-2-13b-chat, generator) improve a model not derived from Llama 2 "
        "(mistral-ish (Apache-2.0)) — the Llama 2 license forbids this")
    missing = next(e for e in report.evidence if e["id"] == "model-000000000000")
    assert (missing["license"], missing["kind"], missing["role"], missing["via"]) == (
        None, None, "data", "reward_model")


def test_evaluations_and_judges_do_not_taint_a_model(registry):
    model = make("model", "clean-model", "Apache-2.0")
    judge = make("model", "nc-judge", "CC-BY-NC-4.0")
    questions = make("dataset", "questions", "CC-BY-4.0")
    evaluation = make("eval", "clean-model@questions", "CC0-1.0", [(model, "evaluated_model"), (judge, "judge"),
                                                                    (questions, "dataset")])
    assert license_report(model.id, registry).verdict == "yes"
    report = license_report(evaluation.id, registry)
    assert report.verdict == "yes"
    assert [e["id"] for e in report.evidence] == [evaluation.id, questions.id]


def test_ppo_start_counts_as_weights_not_as_reference_data(registry):
    start = make("model", "sft-start", "Apache-2.0")
    prompts = make("dataset", "prompts", "MIT")
    reward = make("model", "rm", "CC-BY-NC-4.0")
    ppo = make("model", "ppo-out", "Apache-2.0", [(start, "finetune"), (prompts, "dataset"),
                                                   (start, "reference_model"), (reward, "reward_model")])
    report = license_report(ppo.id, registry)
    assert [(e["name"], e["role"], e["via"]) for e in report.evidence] == [
        ("ppo-out", "self", None), ("sft-start", "weights", "finetune"), ("prompts", "data", "dataset"),
        ("rm", "data", "reward_model")]
    assert (report.verdict, [r["kind"] for r in report.risks]) == ("risk", ["non-commercial-data"])


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_json_and_text(registry):
    from kaiyuan.cli import app

    base = make("model", "base-apache", "Apache-2.0")
    alpaca = make("dataset", "alpaca", "CC-BY-NC-4.0")
    tuned = make("model", "apache-alpaca-sft", "Apache-2.0", [(base, "finetune"), (alpaca, "dataset")])
    runner = CliRunner()
    result = runner.invoke(app, ["license", "apache-alpaca-sft", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["model_id", "name", "kind", "license", "verdict", "summary", "obligations", "use_policies",
                          "user_cap", "risks", "evidence"]
    assert (data["model_id"], data["name"], data["kind"], data["license"], data["verdict"], data["user_cap"]) == (
        tuned.id, "apache-alpaca-sft", "model", "Apache-2.0", "risk", None)
    assert [(r["kind"], r["path"]) for r in data["risks"]] == [("non-commercial-data", [tuned.id, alpaca.id])]
    assert [e["id"] for e in data["evidence"]] == [tuned.id, base.id, alpaca.id]
    text = runner.invoke(app, ["license", tuned.id], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    assert "commercial use: risk" in text.stdout
    assert "apache-alpaca-sft ←dataset— alpaca (CC-BY-NC-4.0)" in text.stdout


def test_cli_unknown_model_is_a_clear_error(registry, monkeypatch, capsys):
    from kaiyuan.cli import app, main

    result = CliRunner().invoke(app, ["license", "no-such-model"])
    assert isinstance(result.exception, NotFoundError)
    monkeypatch.setattr(sys, "argv", ["kaiyuan", "license", "no-such-model"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("error: 'no-such-model' is not a registered artifact, a local model folder or "
                                       ".gguf file, or a model of kaiyuan's catalog\n")


# ------------------------------------------------------- licenses of the catalog's models (catalog/data/models.yaml)


def props_tuple(spdx):
    p = license_properties(spdx)
    return (p.known, p.commercial_use, p.derivatives, p.attribution, p.share_alike, p.osi_approved, p.open_data,
            p.acceptable_use_policy, p.user_cap, p.no_improving_other_models, p.name_prefix, p.display_notice, p.url)


def test_catalog_model_licenses_have_exact_properties():
    assert props_tuple("LicenseRef-LLaMA-1") == (
        True, False, True, False, False, False, False, None, None, False, None, None,
        "https://github.com/facebookresearch/llama/blob/llama_v1/MODEL_CARD.md")
    assert props_tuple("LicenseRef-OpenAI-Terms") == (
        True, True, True, False, False, False, False, "OpenAI Usage Policies", None, True, None, None,
        "https://openai.com/policies/terms-of-use")
    assert props_tuple("LicenseRef-Baichuan-2") == (
        True, None, True, False, False, False, False, None, None, False, None, None,
        "https://huggingface.co/baichuan-inc/Baichuan2-7B-Base/blob/main/Community%20License%20for%20Baichuan2%20Model.pdf")
    assert props_tuple("LicenseRef-ChatGLM-6B") == (
        True, True, True, True, False, False, False, "ChatGLM-6B License restrictions (section 3)", None, False, None,
        None, "https://github.com/THUDM/ChatGLM-6B/blob/main/MODEL_LICENSE")
    assert props_tuple("LicenseRef-Yi") == (
        True, True, True, True, False, False, False, "Yi Series Models License restrictions (section 2)", None, False,
        None, None, "https://github.com/01-ai/Yi/blob/main/MODEL_LICENSE_AGREEMENT.txt")
    assert props_tuple("LicenseRef-Falcon-180B") == (
        True, True, True, True, False, False, False, "Falcon 180B Acceptable Use Policy", None, False, None, None,
        "https://huggingface.co/tiiuae/falcon-180B/blob/main/LICENSE.txt")
    assert props_tuple("LicenseRef-Qwen") == (
        True, True, True, True, False, False, False, None, 100_000_000, False, None, "Built with Qwen",
        "https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE")
    assert props_tuple("LicenseRef-Qwen-Research") == (
        True, False, True, True, False, False, False, None, None, False, None, "Built with Qwen",
        "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE")
    assert props_tuple("LicenseRef-Apple-ASCL") == (
        True, True, True, True, False, False, False, None, None, False, None, None,
        "https://huggingface.co/apple/DCLM-7B")
    assert [license_properties(s).open_license for s in (
        "LicenseRef-LLaMA-1", "LicenseRef-OpenAI-Terms", "LicenseRef-Yi", "LicenseRef-Apple-ASCL")] == [
        False, False, False, False]


def test_catalog_model_license_obligations():
    assert license_properties("LicenseRef-LLaMA-1").obligations == (
        "LicenseRef-LLaMA-1: use the LLaMA weights and models derived from them for non-commercial research only",)
    assert license_properties("LicenseRef-OpenAI-Terms").obligations == (
        "LicenseRef-OpenAI-Terms: do not use outputs of OpenAI's services to develop models that compete with OpenAI",
        "LicenseRef-OpenAI-Terms: comply with the OpenAI Usage Policies")
    assert license_properties("LicenseRef-Baichuan-2").obligations == (
        "LicenseRef-Baichuan-2: apply to Baichuan (opensource@baichuan-inc.com) and obtain written authorization "
        "before any commercial use of Baichuan 2 or its derivatives",
        "LicenseRef-Baichuan-2: commercial use only for services or products with fewer than 1 million daily active "
        "users, by licensees that are not software or cloud service providers, without sublicensing the commercial "
        "license to third parties")
    assert license_properties("LicenseRef-Falcon-180B").obligations[1] == (
        "LicenseRef-Falcon-180B: offering Falcon 180B or a derivative as a hosted service (Hosting Use, e.g. an API or "
        "a managed service) may need a separate license from TII")
    assert license_properties("LicenseRef-Qwen").obligations[-1] == (
        "LicenseRef-Qwen: products or services with more than 100 million monthly active users need a license from "
        "Alibaba Cloud")
    assert [len(license_properties(s).obligations) for s in (
        "LicenseRef-ChatGLM-6B", "LicenseRef-Yi", "LicenseRef-Falcon-180B", "LicenseRef-Qwen",
        "LicenseRef-Qwen-Research", "LicenseRef-Apple-ASCL")] == [3, 4, 3, 4, 3, 2]
    assert all(o.startswith(s + ": ") for s in ("LicenseRef-ChatGLM-6B", "LicenseRef-Yi", "LicenseRef-Qwen-Research")
               for o in license_properties(s).obligations)


def test_catalog_model_license_names_normalize():
    texts = ["LLaMA license agreement", "llama 1", "Code Llama license", "OpenAI Terms of Use",
             "Apache-2.0 and Community License for Baichuan2 Model", "Baichuan 2 模型社区许可协议",
             "The ChatGLM-6B License", "ChatGLM2-6B License", "Yi Series Models Community License Agreement",
             "Apache 2.0 and bespoke Yi Series Community License Agreement 2.1", "FALCON 180B TII LICENSE VERSION 1.0",
             "Qwen RESEARCH LICENSE AGREEMENT", "Tongyi Qianwen RESEARCH LICENSE AGREEMENT", "Qwen LICENSE AGREEMENT",
             "Tongyi Qianwen LICENSE AGREEMENT", "Apple Sample Code License", "licenseref-llama-1", "Llama 5 license"]
    assert [normalize_license(t) for t in texts] == [
        "LicenseRef-LLaMA-1", "LicenseRef-LLaMA-1", "LicenseRef-Code-Llama-license", "LicenseRef-OpenAI-Terms",
        "LicenseRef-Baichuan-2", "LicenseRef-Baichuan-2", "LicenseRef-ChatGLM-6B", "LicenseRef-ChatGLM2-6B-License",
        "LicenseRef-Yi", "LicenseRef-Yi", "LicenseRef-Falcon-180B", "LicenseRef-Qwen-Research",
        "LicenseRef-Qwen-Research", "LicenseRef-Qwen", "LicenseRef-Tongyi-Qianwen", "LicenseRef-Apple-ASCL",
        "LicenseRef-LLaMA-1", "LicenseRef-Llama-5-license"]
    assert [normalize_license(h) for h in ("qwen", "qwen-research", "tongyi-qianwen-research", "apple-ascl")] == [
        "LicenseRef-Qwen", "LicenseRef-Qwen-Research", "LicenseRef-Qwen-Research", "LicenseRef-Apple-ASCL"]


def test_llama_1_weights_mean_no_and_openai_outputs_are_a_risk(registry):
    llama = make("model", "llama-7b", "LicenseRef-LLaMA-1")
    davinci = make("model", "text-davinci-003", "LicenseRef-OpenAI-Terms")
    alpaca_data = make("dataset", "alpaca-data", "CC-BY-NC-4.0", [(davinci, "generator")])
    alpaca = make("model", "alpaca-7b", "LicenseRef-LLaMA-1", [(llama, "finetune"), (alpaca_data, "dataset")])
    report = license_report(alpaca.id, registry)
    assert report.verdict == "no"
    assert [(r["level"], r["kind"], r["path"]) for r in report.risks] == [
        ("blocker", "non-commercial", [alpaca.id]), ("blocker", "non-commercial", [alpaca.id, llama.id]),
        ("risk", "non-commercial-data", [alpaca.id, alpaca_data.id]),
        ("risk", "improves-other-model", [alpaca.id, alpaca_data.id, davinci.id])]
    assert report.risks[-1]["message"] == (
        "OpenAI outputs (text-davinci-003, generator) train a model not made by OpenAI (llama-7b "
        "(LicenseRef-LLaMA-1)) — OpenAI's terms forbid using outputs to develop models that compete with OpenAI")
    base = make("model", "gpt-j-6b", "Apache-2.0")
    chatgpt = make("model", "gpt-3.5-turbo", "LicenseRef-OpenAI-Terms")
    prompts = make("dataset", "gpt4all-j-prompts", "Apache-2.0", [(chatgpt, "generator")])
    tuned = make("model", "gpt4all-j", "Apache-2.0", [(base, "finetune"), (prompts, "dataset")])
    report = license_report(tuned.id, registry)
    assert (report.verdict, [r["kind"] for r in report.risks]) == ("risk", ["improves-other-model"])
    assert report.use_policies == ["OpenAI Usage Policies"]


def test_licenses_that_need_the_licensors_approval_are_a_commercial_risk(registry):
    base = make("model", "Baichuan2-7B-Base", "LicenseRef-Baichuan-2")
    report = license_report(base.id, registry)
    assert (report.verdict, report.risks[0]["kind"], report.risks[0]["message"]) == (
        "risk", "commercial-conditions", "Baichuan2-7B-Base is licensed LicenseRef-Baichuan-2: commercial use needs "
        "the licensor's separate approval")
    tuned = make("model", "baichuan-dates", "Apache-2.0", [(base, "finetune")])
    assert [(r["level"], r["kind"]) for r in license_report(tuned.id, registry).risks] == [
        ("risk", "commercial-conditions"), ("flag", "license-mismatch")]
    qwen = make("model", "Qwen2.5-72B-Instruct", "qwen")
    report = license_report(qwen.id, registry)
    assert (report.verdict, report.user_cap) == ("yes", 100_000_000)
    research = make("model", "Qwen2.5-3B-Instruct", "qwen-research")
    assert license_report(research.id, registry).verdict == "no"
