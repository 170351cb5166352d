"""kaiyuan.catalog.mot: the Model Openness Tool's classification, reproduced exactly.

The real catalog (../shared/data/openness/mot, KAIYUAN_SHARED_DATA) is classified file by file and its class
distribution asserted; a few models are checked by hand against the tool's PHP (web/modules/mof/src/ModelEvaluator.php
at lfai/model_openness_tool@8b5d30e9); the tool's own test data (Test_Data/*.yml with the REST API output it expects,
Test_Data/expected_results.json) is reproduced; malformed files fail with the file, the line and the field. The tests
that need the shared data skip when it is absent.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from kaiyuan.catalog.mot import (
    CLASS_LABELS,
    MISSING,
    MOF_COMPONENT_NAMES,
    NOT_OPEN,
    OPEN,
    OPEN_NOT_TYPE_APPROPRIATE,
    UNLICENSED,
    MOTRules,
    classify,
    component_evidence,
    load_mot_model,
    load_mot_models,
    load_mot_rules,
)
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import shared_data_dir

MOT = shared_data_dir() / "openness" / "mot"
needs_data = pytest.mark.skipif(not (MOT / "rules" / "mof.settings.yml").is_file(),
                                reason=f"no Model Openness Tool data at {MOT}")
FRAMEWORK = {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}


@pytest.fixture(scope="module")
def rules() -> MOTRules:
    return load_mot_rules(MOT / "rules")


def write_model(path: Path, components: list[dict], license: dict | None = None, name: str = "M") -> Path:
    release = {"name": name, "producer": "P", "license": license or {}, "components": components}
    path.write_text(yaml.safe_dump({"framework": FRAMEWORK, "release": release}, sort_keys=False), encoding="utf-8")
    return path


def progress(result: dict) -> tuple:
    return result["class"], result["progress"]["1"], result["progress"]["2"], result["progress"]["3"]


def by_name(evidence) -> dict:
    return {e.name: e for e in evidence}


# --------------------------------------------------------------------------------------------------- the rules


@needs_data
def test_rules_are_the_tools(rules):
    assert tuple(c.name for c in rules.components) == MOF_COMPONENT_NAMES
    assert {c: len(rules.required(c)) for c in (1, 2, 3)} == {1: 4, 2: 4, 3: 6}
    assert {c: len(rules.optional(c)) for c in (1, 2, 3)} == {1: 1, 2: 1, 3: 1}
    # licenses.json's 659 SPDX entries; mof-licenses.json's 31 replace the 28 IDs they share and add OpenMDW-1.0
    assert len(rules.licenses) == 660
    assert rules.licenses["Apache-2.0"].content_types == ("code", "document")
    # mof-licenses.json lists CC0-1.0 and CC-PDDC twice (data, then document): the importer keeps the last
    assert rules.licenses["CC0-1.0"].content_types == ("document",)
    assert rules.is_type_appropriate("CC0-1.0", "document") and not rules.is_type_appropriate("CC0-1.0", "data")
    # open: OSI approved, FSF libre, the PHP's open data list or OpenMDW; IDs match exactly (case-sensitive)
    assert [lid for lid in ("Apache-2.0", "apache-2.0", "Apache 2.0", "BSD-3-Clause", "BSD-3", "CC-BY-4.0",
                            "ODC-By-1.0", "OpenMDW-1.0", "CC0-1.0", "CC-PDDC", "PDDL-1.0", "MulanPSL-1.0",
                            "CC-BY-NC-4.0", "Llama 2 Community License", "unlicensed")
            if rules.is_open(lid)] == ["Apache-2.0", "BSD-3-Clause", "CC-BY-4.0", "ODC-By-1.0", "OpenMDW-1.0",
                                       "CC0-1.0"]


# ------------------------------------------------------------------------------------------- the whole catalog

CLASS_I = ["Amber", "Aquila-VL-2B", "OLMo-1B-hf", "OLMo-7B", "OLMo-7B-Twin-2T-hf", "OLMo-7B-hf", "Pythia-1.4B",
           "Pythia-12B", "Pythia-160M", "Pythia-1B", "Pythia-2.8B", "Pythia-410M", "Pythia-6.9B", "Pythia-70M"]
CLASS_II = ["Polyglot-Ko"]
CLASS_III = ["GPT-NeoX-20B", "Granite-20B-Code-Instruct", "Granite-34B-Code-Instruct", "Granite-3B-Code-Instruct",
             "Granite-4-1", "Granite-4.0-H-Micro", "Granite-4.0-H-Micro-Base", "Granite-4.0-H-Small",
             "Granite-4.0-H-Small-Base", "Granite-4.0-H-Tiny", "Granite-4.0-H-Tiny-Base", "Granite-4.0-Micro",
             "Granite-4.0-Micro-Base", "Granite-4.0-Tiny-Base-Preview", "Granite-4.0-Tiny-Preview",
             "Granite-8B-Code-Instruct"]


@needs_data
def test_every_model_file_classifies_and_the_class_distribution_is_exact(rules):
    models = load_mot_models(MOT / "models", rules)
    assert len(models) == 273
    results = {Path(m.path).stem: classify(m, rules) for m in models}
    assert Counter(r["class"] for r in results.values()) == {0: 242, 1: 14, 2: 1, 3: 16}
    assert sorted(f for f, r in results.items() if r["class"] == 1) == sorted(CLASS_I)
    assert sorted(f for f, r in results.items() if r["class"] == 2) == CLASS_II
    assert sorted(f for f, r in results.items() if r["class"] == 3) == sorted(CLASS_III)
    # progress as the API writes it: (included / total) * 100 in double precision, unrounded
    assert Counter(progress(r)[1:] for r in results.values()) == {
        (0, 0, 0): 155, (0, 0, 16.666666666666664): 45, (0, 0, 33.33333333333333): 30, (0, 60, 100): 15,
        (100, 100, 100): 14, (0, 0, 83.33333333333334): 8, (0, 0, 66.66666666666666): 3, (0, 0, 50): 1,
        (0, 90, 100): 1, (92.85714285714286, 100, 100): 1}
    for result in results.values():  # the API's object: JSON keys, labels, numbers as PHP's json_encode writes them
        assert list(result) == ["class", "label", "progress"] and list(result["progress"]) == ["1", "2", "3"]
        assert result["label"] == CLASS_LABELS[result["class"]]
        assert json.loads(json.dumps(result)) == result
        assert all(isinstance(p, int) or not p.is_integer() for p in result["progress"].values())


@needs_data
def test_three_model_names_are_each_given_by_two_files(rules):
    """The tool keeps one model per release.name (the file its sync reads last); here each file is its own entry."""
    models = load_mot_models(MOT / "models", rules)
    files = Counter(m.name for m in models)
    assert sorted(n for n, k in files.items() if k > 1) == [
        "Meta-Llama-3-70B-Instruct", "Meta-Llama-3-8B-Instruct", "Qwen2.5-32B-Instruct"]


# ------------------------------------------------------------------------------------------ checked by hand


@needs_data
def test_class_i_pythia_70m_research_paper_stands_in_for_the_technical_report(rules):
    """All 16 other components, distribution Apache-2.0 (OSI); no technical report, the paper CC-BY-SA-4.0. The
    paper takes the report's place in Classes III and II, and Class I requires 13 of 13 instead of 14."""
    model = load_mot_model(MOT / "models" / "Pythia-70M.yml", rules)
    assert classify(model, rules) == {"class": 1, "label": "Class I - Open Science Model",
                                      "progress": {"1": 100, "2": 100, "3": 100}}
    evidence = by_name(component_evidence(model, rules))
    assert evidence["Technical report"].status == MISSING and not evidence["Technical report"].counted
    assert "the research paper takes its place" in evidence["Technical report"].reason
    paper = evidence["Research paper"]
    assert (paper.status, paper.counted, paper.license, paper.license_source) == (OPEN, True, "CC-BY-SA-4.0",
                                                                                  "component")
    assert paper.reason.endswith("stands in for the technical report in Classes II and III")
    assert sum(e.counted for e in evidence.values()) == 13


@needs_data
def test_class_ii_polyglot_ko_misses_only_the_intermediate_parameters(rules):
    """13 of the 14 required components under Apache-2.0 (distribution), the paper CC-BY-SA-4.0: Classes III and II
    complete, Class I 13/14 — the report is there, so the paper does not lower Class I's total."""
    model = load_mot_model(MOT / "models" / "Polyglot-Ko.yml", rules)
    assert classify(model, rules) == {"class": 2, "label": "Class II - Open Tooling Model",
                                      "progress": {"1": 13 / 14 * 100, "2": 100, "3": 100}}
    assert classify(model, rules)["progress"]["1"] == 92.85714285714286
    evidence = by_name(component_evidence(model, rules))
    assert evidence["Model parameters (Intermediate)"].status == MISSING
    # weights are data; Apache-2.0 is open but not one of the licenses the tool lists for data: it counts anyway
    weights = evidence["Model parameters (Final)"]
    assert (weights.status, weights.counted, weights.license_source) == (OPEN_NOT_TYPE_APPROPRIATE, True,
                                                                         "license.distribution")
    assert weights.line == 37


@needs_data
def test_typical_class_iii_granite_8b_code_instruct(rules):
    """Architecture, weights (both Apache-2.0 by distribution), model card, data card, evaluation results and a
    CC-BY-4.0 paper (in place of the absent report): Class III 6/6; Class II has only those 6 of 10 (60%); Class I
    is 0 because Class II is not met, although Datasets (MIT) and intermediate weights are there."""
    model = load_mot_model(MOT / "models" / "Granite-8B-Code-Instruct.yml", rules)
    assert classify(model, rules) == {"class": 3, "label": "Class III - Open Model",
                                      "progress": {"1": 0, "2": 60, "3": 100}}
    evidence = by_name(component_evidence(model, rules))
    assert [e.name for e in evidence.values() if e.counted] == [
        "Model architecture", "Model parameters (Final)", "Model card", "Data card", "Evaluation results",
        "Model parameters (Intermediate)", "Datasets", "Research paper"]
    assert evidence["Datasets"].license == "MIT" and evidence["Datasets"].status == OPEN_NOT_TYPE_APPROPRIATE


@needs_data
def test_an_unlicensed_technical_report_is_replaced_by_the_paper_mistral_7b_instruct(rules):
    """The report is listed `unlicensed`; the paper (CC-BY-4.0) counts in its place. No data card: 5/6."""
    model = load_mot_model(MOT / "models" / "Mistral-7B-Instruct-v0.1.yml", rules)
    assert classify(model, rules) == {"class": 0, "label": "Unclassified",
                                      "progress": {"1": 0, "2": 0, "3": 83.33333333333334}}
    evidence = by_name(component_evidence(model, rules))
    report = evidence["Technical report"]
    assert (report.status, report.license, report.license_source, report.line) == (UNLICENSED, None, "component", 43)
    assert report.reason == "listed as unlicensed; the research paper takes its place"
    assert evidence["Data card"].status == MISSING
    # an optional component is judged (open) but never counts
    tools = evidence["Supporting libraries and tools"]
    assert (tools.status, tools.counted) == (OPEN, False)


@needs_data
def test_class_0_llama_2_7b_license_not_open(rules):
    model = load_mot_model(MOT / "models" / "Llama-2-7B.yml", rules)
    assert classify(model, rules) == {"class": 0, "label": "Unclassified", "progress": {"1": 0, "2": 0, "3": 0}}
    weights = by_name(component_evidence(model, rules))["Model parameters (Final)"]
    assert (weights.status, weights.counted, weights.license) == (NOT_OPEN, False, "Llama 2 Community License")
    assert weights.reason == ("Llama 2 Community License: not a license the tool holds open "
                              "(OSI approved, FSF libre or open data)")


@needs_data
def test_code_under_a_document_license_counts_nemo_megatron(rules):
    """CC-BY-4.0 is open (the PHP's open data list) but listed for documents only: code under it still counts."""
    model = load_mot_model(MOT / "models" / "NeMo-Megatron-GPT-20B.yml", rules)
    code = by_name(component_evidence(model, rules))["Training code"]
    assert (code.content_type, code.license, code.status, code.counted) == (
        "code", "CC-BY-4.0", OPEN_NOT_TYPE_APPROPRIATE, True)


# ---------------------------------------------------------------------------- rules of the PHP, on small files

ALL = list(MOF_COMPONENT_NAMES)


def components(*names, license=None):
    return [{"name": n, "description": "", **({"license": license} if license else {})} for n in names]


@needs_data
@pytest.mark.parametrize(("names", "expected"), [
    (ALL, (1, 100, 100, 100)),
    ([n for n in ALL if n != "Technical report"], (1, 100, 100, 100)),  # 13 of 13
    ([n for n in ALL if n != "Research paper"], (2, 13 / 14 * 100, 100, 100)),
    ([n for n in ALL if n not in ("Research paper", "Technical report")], (0, 0, 0, 5 / 6 * 100)),
    ([n for n in ALL if n != "Training code"], (3, 0, 90, 100)),
    (["Model metadata", "Sample model outputs", "Supporting libraries and tools"], (0, 0, 0, 0)),  # optional only
])
def test_progress_counts_required_components_from_the_top_class_down(rules, tmp_path, names, expected):
    path = write_model(tmp_path / "m.yml", components(*names), {"distribution": {"name": "Apache-2.0", "path": ""}})
    assert progress(classify(load_mot_model(path, rules), rules)) == expected


@needs_data
def test_license_resolution(rules, tmp_path):
    """Own license, else release.license.<content type>, else distribution; `unlicensed` (or "" or "0") does not
    inherit; IDs are exact."""
    entries = [
        {"name": "Model architecture"},  # code: inherits license.code
        {"name": "Model parameters (Final)"},  # data: no license.data, inherits distribution
        {"name": "Model card", "license": "unlicensed"},  # does not inherit
        {"name": "Data card", "license": "0"},  # PHP's ?: treats "0" as empty: unlicensed
        {"name": "Evaluation results", "license": "cc-by-4.0"},  # not an ID the tool knows (case)
        {"name": "Technical report", "license": "CC-BY-4.0"},
    ]
    path = write_model(tmp_path / "m.yml", entries, {"distribution": {"name": "Proprietary", "path": None},
                                                     "code": {"name": "MIT", "path": None},
                                                     "data": {"name": "", "path": None}})
    model = load_mot_model(path, rules)
    seen = {e.name: (e.license, e.license_source, e.status) for e in component_evidence(model, rules) if e.included}
    assert seen == {
        "Model architecture": ("MIT", "license.code", OPEN),
        "Model parameters (Final)": ("Proprietary", "license.distribution", NOT_OPEN),
        "Model card": (None, "component", UNLICENSED),
        "Data card": (None, "component", UNLICENSED),
        "Evaluation results": ("cc-by-4.0", "component", NOT_OPEN),
        "Technical report": ("CC-BY-4.0", "component", OPEN),
    }
    assert progress(classify(model, rules)) == (0, 0, 0, 2 / 6 * 100)


@needs_data
def test_a_paper_without_an_open_license_does_not_replace_the_report(rules, tmp_path):
    names = [n for n in ALL if n != "Technical report"]
    entries = components(*names)
    entries[names.index("Research paper")]["license"] = "arXiv.org perpetual non-exclusive license 1.0"
    path = write_model(tmp_path / "m.yml", entries, {"distribution": {"name": "Apache-2.0"}})
    model = load_mot_model(path, rules)
    assert progress(classify(model, rules)) == (0, 0, 0, 5 / 6 * 100)
    report = by_name(component_evidence(model, rules))["Technical report"]
    assert report.reason.endswith("the research paper takes its place, but does not count either")


@needs_data
def test_a_repeated_component_keeps_its_last_entry(rules, tmp_path):
    entries = [{"name": "Model architecture", "license": "MIT"}, {"name": "Model architecture", "license": "GPL"}]
    model = load_mot_model(write_model(tmp_path / "m.yml", entries), rules)
    assert by_name(component_evidence(model, rules))["Model architecture"].license == "GPL"
    assert progress(classify(model, rules)) == (0, 0, 0, 0)


# ---------------------------------------------------- the tool's own test data (Test_Data/, expected_results.json)

# lfai/model_openness_tool@8b5d30e9 Test_Data/*.yml (MIT, Copyright 2024 The Model Openness Tool Authors), reduced to
# what classification reads: file name, (class, progress 1, 2, 3) from Test_Data/expected_results.json (the REST API
# output the tool's runtest.sh expects), release.license names, and component ID → own license (None: inherits).
# The file names also encode the counts scripts/test-model-files.php checks: _{C}C_{G}G_{L}L_{V}V_{I}I_{T}T.
TOOL_TEST_DATA = [
    ("Class1TestFile_C1_100%-C2_100%-C3_100%_15C_2G_15L_15V_0I_15T", (1, 100, 100, 100),
     {"distribution": "Apache-1.0", "code": "UPL-1.0"},
     {9: "AFL-1.2", 16: "AFL-2.1", 7: "ISC", 8: "AFL-1.1", 18: "AFL-3.0", 22: "AFL-2.1", 10: "CC-BY-SA-4.0",
      24: "CC-BY-3.0-US", 15: "CC-BY-3.0-NL", 19: "CC-BY-3.0-NL", 20: "CC0-1.0", 13: "CC-BY-SA-3.0", 14: "CC0-1.0",
      21: "CC-BY-4.0", 12: "CC-BY-4.0"}),
    ("Class2RTestFile_C1_77%-C2_100%-C3_100%_11C_1G_11L_11V_0I_11T", (2, 76.92307692307693, 100, 100),
     {"document": "CC0-1.0"},
     {9: "MIT", 7: "AFL-3.0", 8: "NCSA", 18: "ECL-1.0", 22: "Apache-2.0", 10: "CC-BY-3.0-NL", 19: "CC-BY-3.0-US",
      13: "CC-BY-SA-3.0", 14: "CC-BY-4.0", 21: "CC-BY-SA-3.0", 12: "CC-BY-4.0"}),
    ("Class2TTestFile_C1_71%-C2_100%-C3_100%_11C_1G_11L_11V_0I_11T", (2, 71.42857142857143, 100, 100),
     {"data": "CDLA-Permissive-2.0"},
     {9: "Apache-2.0", 7: "ECL-1.0", 8: "AFL-1.1", 18: "MIT-0", 22: "UPL-1.0", 10: "CC-BY-3.0-DE", 19: "ODC-By-1.0",
      13: "CC0-1.0", 14: "CC-BY-SA-4.0", 11: "CC0-1.0", 12: "CC-BY-SA-4.0"}),
    ("Class3RTestFile_C1_40%-C2_60%-C3_100%_6C_1G_6L_6V_0I_6T", (3, 0, 60, 100),
     {"document": "CC-BY-SA-4.0"},
     {9: "Apache-1.0", 10: "ODbL-1.0", 13: "CC-BY-4.0", 14: "CC0-1.0", 21: "CC-BY-4.0", 12: "CC0-1.0"}),
    ("Class3TTestFile_C1_33%-C2_60%-C3_100%_6C_1G_6L_6V_0I_6T", (3, 0, 60, 100),
     {"data": "CC-BY-SA-2.0-UK"},
     {9: "MIT-0", 10: "CC-BY-2.0", 13: "CC-BY-4.0", 14: "CC-BY-SA-4.0", 11: "CC-BY-4.0", 12: "CC0-1.0"}),
    ("FullTestFile_C1_100%-C2_100%-C3_100%_17C_4G_17L_17V_0I_17T", (1, 100, 100, 100),
     {"distribution": "AFL-1.2", "code": "AFL-2.1", "data": "CC-BY-2.5", "document": "CC0-1.0"},
     {9: "AFL-3.0", 16: "ECL-1.0", 7: "AFL-3.0", 8: "AFL-2.0", 18: "MIT", 22: "AFL-1.2", 10: "CDLA-Sharing-1.0",
      24: "CC0-1.0", 15: "ODC-By-1.0", 19: "CC-BY-SA-1.0", 17: "ODbL-1.0", 20: "CC-BY-SA-3.0", 13: "CC0-1.0",
      14: "CC-BY-4.0", 11: "CC-BY-SA-3.0", 21: "CC-BY-4.0", 12: "CC0-1.0"}),
    ("MinimalFile_C1_0%-C2_0%-C3_0%_1C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {15: None}),
    ("NoLicenseFile_C1_0%-C2_0%-C3_0%_12C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {9: None, 7: None, 8: None, 18: None, 22: None, 10: None, 19: None, 20: None, 13: None, 14: None, 11: None,
      21: None}),
    ("NoLicenseFile_C1_0%-C2_0%-C3_0%_16C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {9: None, 16: None, 7: None, 8: None, 18: None, 22: None, 10: None, 24: None, 15: None, 19: None, 17: None,
      20: None, 14: None, 11: None, 21: None, 12: None}),
    ("NoLicenseFile_C1_0%-C2_0%-C3_0%_3C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {16: None, 13: None, 11: None}),
    ("NoLicenseFile_C1_0%-C2_0%-C3_0%_6C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {18: None, 19: None, 17: None, 13: None, 21: None, 12: None}),
    ("NoLicenseFile_C1_0%-C2_0%-C3_0%_9C_0G_0L_0V_0I_0T", (0, 0, 0, 0),
     {},
     {16: None, 8: None, 10: None, 24: None, 15: None, 17: None, 20: None, 14: None, 21: None}),
    ("OnlyComponentLicenses_C1_13%-C2_18%-C3_33%_8C_0G_8L_2V_6I_2T", (0, 0, 0, 33.33333333333333),
     {},
     {9: "MulanPSL-2.0", 7: "AML-glslang", 8: "cve-tou", 22: "CNRI-Python-GPL-Compatible", 24: "CC-BY-NC-SA-1.0",
      13: "CC-BY-SA-3.0", 21: "CNRI-Jython", 12: "CC-BY-NC-ND-3.0"}),
    ("OnlyComponentLicenses_C1_20%-C2_18%-C3_33%_11C_0G_11L_4V_7I_1T", (0, 0, 0, 33.33333333333333),
     {},
     {9: "MIT", 16: "OPUBL-1.0", 24: "AFL-2.0", 15: "CC-BY-SA-1.0", 19: "HPND-sell-variant-MIT-disclaimer-rev",
      17: "softSurfer", 20: "Borceux", 13: "SISSL-1.2", 14: "CC-BY-ND-3.0", 11: "CC-BY-3.0-AU", 12: "libpng-2.0"}),
    ("OnlyComponentLicenses_C1_27%-C2_36%-C3_50%_9C_0G_9L_4V_5I_4T", (0, 0, 0, 50),
     {},
     {16: "HPND-sell-MIT-disclaimer-xserver", 7: "YPL-1.0", 8: "AGPL-1.0-or-later", 22: "0BSD", 19: "OGL-UK-1.0",
      20: "TTYP0", 14: "CC-BY-SA-4.0", 21: "CC-BY-4.0", 12: "CC-BY-SA-4.0"}),
    ("OnlyComponentLicenses_C1_47%-C2_45%-C3_50%_15C_0G_15L_7V_8I_6T", (0, 0, 0, 50),
     {},
     {9: "ulem", 16: "LZMA-SDK-9.11-to-9.20", 8: "Sendmail-8.23", 18: "Apache-2.0", 10: "StandardML-NJ",
      24: "CDLA-Sharing-1.0", 15: "CC-BY-2.5", 19: "CC-BY-3.0-DE", 17: "xlock", 20: "MITNFA", 13: "CC0-1.0",
      14: "CC-BY-4.0", 11: "Sun-PPP", 21: "Community-Spec-1.0", 12: "Glulxe"}),
    ("OnlyComponentLicenses_C1_7%-C2_0%-C3_0%_7C_0G_7L_2V_5I_0T", (0, 0, 0, 0),
     {},
     {16: "FSFAP", 10: "OLDAP-1.1", 17: "CC-BY-4.0", 13: "SGP4", 14: "HPND-doc-sell", 21: "NLOD-1.0",
      12: "ssh-keyscan"}),
    ("OnlyGlobalLicense_C1_20%-C2_18%-C3_33%_3C_2G_0L_3V_0I_3T", (0, 0, 0, 33.33333333333333),
     {"distribution": "CC-BY-SA-4.0", "data": "CC0-1.0"},
     {15: None, 14: None, 21: None}),
    ("OnlyGlobalLicense_C1_33%-C2_27%-C3_17%_5C_4G_0L_5V_0I_5T", (0, 0, 0, 16.666666666666664),
     {"distribution": "MulanPSL-2.0", "code": "ECL-1.0", "data": "ODC-By-1.0", "document": "CC-BY-SA-3.0"},
     {16: None, 8: None, 15: None, 19: None, 13: None}),
    ("OnlyGlobalLicense_C1_47%-C2_45%-C3_33%_10C_2G_0L_7V_0I_7T", (0, 0, 0, 33.33333333333333),
     {"code": "NCSA", "data": "CC-BY-SA-4.0"},
     {9: None, 16: None, 7: None, 8: None, 18: None, 10: None, 24: None, 20: None, 14: None, 12: None}),
    ("OnlyGlobalLicense_C1_7%-C2_9%-C3_17%_8C_1G_0L_2V_0I_2T", (0, 0, 0, 16.666666666666664),
     {"document": "CC-BY-SA-4.0"},
     {8: None, 18: None, 22: None, 10: None, 19: None, 17: None, 20: None, 21: None}),
    ("OnlyGlobalLicense_C1_87%-C2_91%-C3_83%_15C_3G_0L_15V_0I_15T", (0, 0, 0, 83.33333333333334),
     {"distribution": "AFL-3.0", "code": "Apache-1.0", "document": "CC-BY-SA-4.0"},
     {9: None, 16: None, 7: None, 8: None, 18: None, 22: None, 10: None, 24: None, 15: None, 19: None, 17: None,
      20: None, 13: None, 14: None, 11: None}),
    ("RandomTestFile_C1_13%-C2_18%-C3_17%_3C_2G_3L_3V_0I_0T", (0, 0, 0, 16.666666666666664),
     {"distribution": "CC-BY-SA-3.0", "code": "AFL-1.1"},
     {18: "Motosoto", 17: "xinetd", 21: "IPL-1.0"}),
    ("RandomTestFile_C1_27%-C2_18%-C3_17%_11C_2G_11L_5V_6I_5T", (0, 0, 0, 16.666666666666664),
     {"code": "0BSD", "document": "CC0-1.0"},
     {9: "CC-BY-NC-2.5", 16: "MIT", 18: "NCSA", 10: "CC-BY-SA-3.0-AT", 24: "CC-BY-SA-3.0", 19: "CC-PDDC",
      17: "GFDL-1.3", 20: "ADSL", 14: "BSD-4.3TAHOE", 11: "Net-SNMP", 12: "Soundex"}),
    ("RandomTestFile_C1_33%-C2_45%-C3_50%_7C_2G_7L_5V_2I_1T", (0, 0, 0, 50),
     {"distribution": "CC-BY-SA-4.0", "document": "CC0-1.0"},
     {9: "BSD-3-Clause-Clear", 7: "MPL-1.1", 18: "softSurfer", 10: "CC-BY-SA-2.0-UK", 19: "CC-BY-2.0",
      11: "BSD-3-Clause-Attribution", 21: "CDLA-Permissive-1.0"}),
    ("RandomTestFile_C1_7%-C2_9%-C3_0%_6C_2G_6L_1V_5I_1T", (0, 0, 0, 0),
     {"distribution": "MIT", "document": "CC-BY-4.0"},
     {16: "OGDL-Taiwan-1.0", 7: "Sun-PPP-2000", 22: "GFDL-1.3-invariants-or-later", 19: "CC-BY-SA-3.0",
      17: "HPND-UC", 21: "TORQUE-1.1"}),
    ("RandomTestFile_C1_73%-C2_82%-C3_83%_15C_4G_15L_13V_2I_11T", (0, 0, 0, 83.33333333333334),
     {"distribution": "CDLA-Permissive-2.0", "code": "ECL-2.0", "data": "CC-BY-2.5-AU", "document": "CC-BY-4.0"},
     {9: "zlib-acknowledgement", 16: "AFL-3.0", 7: "ECL-2.0", 18: "UPL-1.0", 22: "AFL-1.1", 10: "ODbL-1.0",
      24: "Xfig", 15: "CC-BY-2.0", 19: "CC-BY-SA-4.0", 17: "BSD-2-Clause", 20: "CC-BY-4.0", 13: "CC-BY-SA-3.0",
      14: "SMLNJ", 11: "CC0-1.0", 12: "CC-BY-SA-4.0"}),
]


@needs_data
@pytest.mark.parametrize(("stem", "expected", "release_license", "own_licenses"), TOOL_TEST_DATA,
                         ids=[case[0].split("_")[0] + "-" + str(i) for i, case in enumerate(TOOL_TEST_DATA)])
def test_the_tools_test_data(rules, tmp_path, stem, expected, release_license, own_licenses):
    entries = [{"name": rules.component(cid).name, "description": "", **({"license": lic} if lic else {})}
               for cid, lic in own_licenses.items()]
    license = {key: {"name": name, "path": f"https://example.com/{key}"} for key, name in release_license.items()}
    model = load_mot_model(write_model(tmp_path / f"{stem}.yml", entries, license, name=stem), rules)
    result = classify(model, rules)
    assert progress(result) == expected
    assert result["label"] == CLASS_LABELS[expected[0]]
    # scripts/test-model-files.php: the rounded progress (0 below an unmet class) and the valid / invalid counts
    c1, c2, c3, count, valid, invalid = map(int, re.search(
        r"_C1_(\d+)%-C2_(\d+)%-C3_(\d+)%_(\d+)C_\d+G_\d+L_(\d+)V_(\d+)I_", stem).groups())
    rounded = [int(p + 0.5) for p in expected[1:]]
    assert rounded == [c1 if rounded[1] == 100 == rounded[2] else 0, c2 if rounded[2] == 100 else 0, c3]
    statuses = Counter(e.status for e in component_evidence(model, rules) if e.included)
    assert (len(own_licenses), statuses[NOT_OPEN], count - statuses[NOT_OPEN] - statuses[UNLICENSED]) == (
        count, invalid, valid)


# ---------------------------------------------------------------------------------------------- malformed files

GOOD_HEAD = """\
framework:
  name: 'Model Openness Framework'
  version: '1.0'
  date: '2024-12-15'
release:
  name: X
  producer: P
  license: {}
"""


def bad(tmp_path: Path, text: str, name: str = "X.yml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(KaiyuanError) as caught:
        load_mot_model(path)
    return str(caught.value).replace(str(tmp_path) + "/", "")


def test_a_component_without_a_name(tmp_path):
    text = GOOD_HEAD + "  components:\n" + "".join(f"    - name: {n}\n" for n in ALL[:3]) + \
        "    - description: 'Weights'\n      license: MIT\n"
    assert text.splitlines()[12] == "    - description: 'Weights'"
    assert bad(tmp_path, text) == "X.yml line 13: components[3].name: missing"


def test_an_unknown_component(tmp_path):
    text = GOOD_HEAD + "  components:\n    - name: Datasets\n    - name: Weights\n"
    assert bad(tmp_path, text) == (
        "X.yml line 11: components[1].name: unknown component 'Weights'; the known components are: "
        + ", ".join(MOF_COMPONENT_NAMES))


@pytest.mark.parametrize(("change", "message"), [
    (("  license: {}\n", ""), "line 6: license: missing"),  # the line where the release starts
    (("  license: {}\n", "  license: MIT\n"), "line 8: license: must be a mapping, got str MIT"),
    (("  license: {}\n", "  license:\n    code: MIT\n"), "line 9: license.code: must be a mapping, got str MIT"),
    (("  license: {}\n", "  license:\n    data: {name: 1.0}\n"),
     "line 9: license.data.name: must be a string or null, got float 1.0 (quote it)"),
    (("  name: X\n", "  name: ''\n"), "line 6: name: must not be empty"),
    (("  name: X\n", "  name: X\n  date: 2024-06-13\n"),
     "line 7: date: must be a string, got date 2024-06-13 (quote it)"),
    (("  name: X\n", "  name: X\n  date: '2024-02-30'\n"), "line 7: date: '2024-02-30' is not a date (YYYY-MM-DD)"),
    (("  name: X\n", "  name: X\n  type: llm\n"),
     "line 7: type: 'llm' is not one of: '', 'language', 'vision', 'image', 'audio', 'video', '3d', 'code', "
     "'multimodal', 'other'"),
    (("  name: X\n", "  name: X\n  name: Y\n"), "line 7: name: duplicate key"),
    (("  version: '1.0'\n", "  version: 1.0\n"), "line 3: framework.version: must be a string, got float 1.0 "
                                                 "(quote it)"),
    (("release:\n", "relase:\n"), "line 1: release: missing"),
])
def test_malformed_release_fields(tmp_path, change, message):
    text = (GOOD_HEAD + "  components: []\n").replace(*change)
    assert bad(tmp_path, text) == f"X.yml {message}"


def test_malformed_components(tmp_path):
    head = GOOD_HEAD + "  components:\n"
    assert bad(tmp_path, head + "    - name: Datasets\n      license:\n") == (
        "X.yml line 11: components[0].license: must be a string, got null")
    assert bad(tmp_path, head + "    - Datasets\n") == (
        "X.yml line 10: components[0]: must be a mapping, got str Datasets")
    assert bad(tmp_path, GOOD_HEAD + "  components: {}\n") == "X.yml line 9: components: must be a list, got a mapping"
    eighteen = head + "".join(f"    - name: {n}\n" for n in [*ALL, "Datasets"])
    assert bad(tmp_path, eighteen) == (
        "X.yml line 27: components[17]: a model has at most 17 components, this one lists 18")


def test_not_yaml_or_not_a_model(tmp_path):
    assert bad(tmp_path, "release:\n  name: [unclosed\n") == (
        "X.yml line 3: not valid YAML: while parsing a flow sequence: expected ',' or ']', but got '<stream end>'")
    assert bad(tmp_path, "") == "X.yml line 1: document: the file is empty"
    assert bad(tmp_path, "- a\n") == "X.yml line 1: document: must be a mapping, got a list"
    (tmp_path / "latin1.yml").write_bytes("release: {name: 'caf\xe9'}\n".encode("latin-1"))
    with pytest.raises(KaiyuanError, match=r"latin1\.yml: not UTF-8 text"):
        load_mot_model(tmp_path / "latin1.yml")
    with pytest.raises(KaiyuanError, match=r"missing\.yml: no such file"):
        load_mot_model(tmp_path / "missing.yml")


def test_a_folder_loads_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    write_model(folder / "a.yml", components("Datasets"), name="A")
    (folder / "b.yml").write_text(GOOD_HEAD + "  components:\n    - name: Weights\n", encoding="utf-8")
    (folder / "c.yml").write_text("", encoding="utf-8")
    (folder / "notes.yaml").write_text("not a model file: the tool reads *.yml only", encoding="utf-8")
    with pytest.raises(KaiyuanError, match=r"^.*/models/b\.yml line 10: components\[0\]\.name: unknown component"):
        load_mot_models(folder)
    (folder / "b.yml").unlink()
    (folder / "c.yml").unlink()
    assert [m.name for m in load_mot_models(folder)] == ["A"]
    with pytest.raises(KaiyuanError, match="no such folder"):
        load_mot_models(tmp_path / "absent")


def test_malformed_rules(tmp_path):
    (tmp_path / "licenses.json").write_text('{"licenses": []}', encoding="utf-8")
    (tmp_path / "mof-licenses.json").write_text('{"licenses": [\n{"licenseId": "MIT",}\n]}', encoding="utf-8")
    settings = "components:\n  - id: 9\n    name: Model architecture\n    content_type: software\n    class: 3\n" \
               "    required: true\n"
    (tmp_path / "mof.settings.yml").write_text(settings, encoding="utf-8")
    with pytest.raises(KaiyuanError) as caught:
        load_mot_rules(tmp_path)
    assert str(caught.value) == (f"{tmp_path}/mof.settings.yml line 4: components[0].content_type: 'software' is not "
                                 "one of: 'code', 'data', 'document'")
    (tmp_path / "mof.settings.yml").write_text(settings.replace("software", "code"), encoding="utf-8")
    with pytest.raises(KaiyuanError) as caught:
        load_mot_rules(tmp_path)
    assert str(caught.value) == f"{tmp_path}/mof.settings.yml line 1: components: class 2 requires no component"


@needs_data
def test_a_component_the_rules_do_not_know(rules, tmp_path):
    model = load_mot_model(write_model(tmp_path / "m.yml", components("Datasets", "Model card")))
    fewer = MOTRules(components=tuple(c for c in rules.components if c.name != "Model card"), licenses=rules.licenses)
    with pytest.raises(KaiyuanError) as caught:
        classify(model, fewer)
    assert str(caught.value) == (f"{tmp_path}/m.yml line 12: components[1].name: unknown component 'Model card'; "
                                 "the known components are: " + ", ".join(c.name for c in fewer.components))
