"""kaiyuan's own records of well-known open models (src/kaiyuan/catalog/data/models.yaml): the file is well formed,
its lineage and license ids resolve, every claim has a source, and the catalog files it names exist."""

import datetime as dt
import os
import re
from pathlib import Path

import pytest
import yaml

import kaiyuan.catalog
from kaiyuan.hub.licenses import UNKNOWN, license_properties

MODELS_YAML = Path(kaiyuan.catalog.__file__).parent / "data" / "models.yaml"
REPO = Path(__file__).resolve().parents[2]
OPENNESS = Path(os.environ.get("KAIYUAN_SHARED_DATA", REPO.parent / "shared" / "data")) / "openness"
CATALOG_DIRS = {"mot": OPENNESS / "mot" / "models", "opening_up": OPENNESS / "opening-up" / "projects",
                "osai_index": OPENNESS / "eu-open-source-ai-index" / "systems"}
KINDS = {"base", "instruct", "chat", "closed"}
LICENSE_ROLES = {"weights", "code", "data"}
REQUIRED = ("key", "name", "family", "producer", "hub_ids", "aliases", "kind", "base_models", "licenses", "catalogs",
            "sources")
OPTIONAL = ("released", "parameters", "tuning_data", "pretraining_data", "notes")
DATA_FIELDS = {"name", "license", "published", "generated_by", "source", "notes"}
URL = re.compile(r"https://[^\s]+\Z")


@pytest.fixture(scope="module")
def doc():
    return yaml.safe_load(MODELS_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models(doc):
    return {m["key"]: m for m in doc["models"]}


def data_entries(model):
    return [*(model.get("tuning_data") or []), *(model.get("pretraining_data") or [])]


def generators(item):
    return [item["generated_by"]] if "generated_by" in item else []


def license_claims(model):
    """(where, license id, source) for every license the entry records."""
    claims = [(f"{model['key']}.licenses.{role}", claim["id"], claim.get("source"))
              for role, claim in model["licenses"].items()]
    return claims + [(f"{model['key']}: {item['name']}", item["license"], item.get("source"))
                     for item in data_entries(model)]


# ------------------------------------------------------------------------------------------------ shape


def test_the_file_loads_with_its_schema(doc):
    assert (doc["schema"], doc["updated"]) == (1, dt.date(2026, 12, 2))
    assert list(doc) == ["schema", "updated", "models"] and len(doc["models"]) >= 100


def test_the_file_validates_against_its_json_schema(doc):
    import json

    import jsonschema

    schema = json.loads((Path(kaiyuan.catalog.__file__).parent / "data" / "models.schema.json").read_text())
    as_json = json.loads(json.dumps(doc, default=str))  # YAML dates as the ISO strings they were written as
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(as_json)] == []
    broken = {**as_json, "models": [{**as_json["models"][0], "licenses": {"weights": {"id": "MIT"}}}]}
    [error] = jsonschema.Draft202012Validator(schema).iter_errors(broken)
    assert error.message == "'source' is a required property"


def test_keys_are_unique_lowercase_slugs_and_aliases_do_not_collide(doc, models):
    keys = [m["key"] for m in doc["models"]]
    assert len(keys) == len(set(keys)) == len(models)
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.-]*", k) for k in keys)
    aliases = [a for m in doc["models"] for a in m["aliases"]]
    assert len(aliases) == len(set(aliases)), sorted({a for a in aliases if aliases.count(a) > 1})
    assert not set(aliases) & set(keys)
    hub_ids = [h for m in doc["models"] for h in m["hub_ids"]]
    assert len(hub_ids) == len(set(hub_ids))
    assert all(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", h) for h in hub_ids)


def test_every_entry_has_the_fields_of_its_kind(models):
    for key, model in models.items():
        assert all(f in model for f in REQUIRED), key
        assert set(model) <= set(REQUIRED + OPTIONAL), key
        assert model["kind"] in KINDS, key
        assert set(model["licenses"]) <= LICENSE_ROLES, key
        assert set(model["catalogs"]) == set(CATALOG_DIRS), key
        released = model.get("released")
        assert released is None or isinstance(released, dt.date) or re.fullmatch(r"\d{4}-\d{2}", released), key
        for item in data_entries(model):
            assert set(item) <= DATA_FIELDS and item["name"] and item["license"], (key, item)
        for item in model.get("pretraining_data") or []:
            assert isinstance(item["published"], bool), (key, item["name"])
        for item in data_entries(model):  # one key: the model whose outputs these are
            assert isinstance(item.get("generated_by", ""), str), (key, item["name"])
        if model["kind"] == "closed":  # no weights released: `weights` records the terms of use
            assert (model["hub_ids"], model["base_models"], "parameters" in model) == ([], [], False), key
            assert list(model["licenses"]) == ["weights"], key
        else:
            assert "weights" in model["licenses"] and model["parameters"] > 1e7, key
            assert isinstance(model["parameters"], float), key


# ------------------------------------------------------------------------------------------- references


def test_base_models_and_generators_are_entries_of_this_file(models):
    for key, model in models.items():
        assert all(b in models and b != key for b in model["base_models"]), (key, model["base_models"])
        for item in data_entries(model):
            assert all(g in models and g != key for g in generators(item)), (key, item["name"])
    for key in models:  # the lineage has no cycle
        seen, todo = set(), list(models[key]["base_models"])
        while todo:
            base = todo.pop()
            assert base != key, f"{key} is its own ancestor"
            if base not in seen:
                seen.add(base)
                todo += models[base]["base_models"]


def test_every_license_id_is_known_or_noassertion(models):
    unknown = [(where, spdx) for model in models.values() for where, spdx, _ in license_claims(model)
               if spdx != UNKNOWN and not license_properties(spdx).known]
    assert unknown == []
    ids = [spdx for model in models.values() for _, spdx, _ in license_claims(model)]
    assert all(license_properties(spdx).spdx == spdx for spdx in ids if spdx != UNKNOWN)  # recorded normalized


def test_every_claim_has_a_source_url(models):
    missing = [where for model in models.values() for where, _, source in license_claims(model)
               if not (isinstance(source, str) and URL.match(source))]
    assert missing == []
    for key, model in models.items():
        assert model["sources"] and all(URL.match(s) for s in model["sources"]), key
        assert not any("huggingface.co/" in s and " " in s for s in model["sources"]), key


@pytest.mark.skipif(not OPENNESS.is_dir(), reason=f"no openness catalogs at {OPENNESS}")
def test_every_catalog_file_named_exists(models):
    named = [(key, catalog, name) for key, model in models.items() for catalog, name in model["catalogs"].items()
             if name is not None]
    assert [n for n in named if not (CATALOG_DIRS[n[1]] / n[2]).is_file()] == []
    assert len(named) >= 60
    files = [(catalog, name) for _, catalog, name in named]
    assert len(files) == len(set(files)), "a catalog file describes one entry (the release it is about)"
    assert models["alpaca-7b"]["catalogs"] == {"mot": None, "opening_up": "alpaca.yaml", "osai_index": "alpaca.yaml"}


# ----------------------------------------------------------------------------------------------- facts


def test_alpaca_is_llama_7b_tuned_on_openai_outputs(models):
    alpaca = models["alpaca-7b"]
    assert "llama-7b" in alpaca["base_models"] and alpaca["hub_ids"] == ["tatsu-lab/alpaca-7b-wdiff"]
    [instructions] = alpaca["tuning_data"]
    assert (instructions["license"], generators(instructions)) == ("CC-BY-NC-4.0", ["openai-text-davinci-003"])
    generator = models["openai-text-davinci-003"]
    assert (generator["producer"], generator["kind"], generator["licenses"]["weights"]["id"]) == (
        "OpenAI", "closed", "LicenseRef-OpenAI-Terms")
    assert alpaca["licenses"]["weights"]["id"] == models["llama-7b"]["licenses"]["weights"]["id"] == \
        "LicenseRef-LLaMA-1"
    assert license_properties(alpaca["licenses"]["weights"]["id"]).commercial_use is False


def test_dolly_is_pythia_12b_tuned_on_cc_by_sa_data(models):
    dolly = models["dolly-v2-12b"]
    assert dolly["base_models"] == ["pythia-12b"] and dolly["hub_ids"] == ["databricks/dolly-v2-12b"]
    assert [(d["name"], d["license"]) for d in dolly["tuning_data"]] == [("databricks-dolly-15k", "CC-BY-SA-3.0")]
    assert (dolly["licenses"]["weights"]["id"], dolly["licenses"]["data"]["id"]) == ("MIT", "CC-BY-SA-3.0")
    assert models["pythia-12b"]["licenses"]["weights"]["id"] == "Apache-2.0"


def test_llama_2_weights_carry_the_700m_user_cap(models):
    for key in ("llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-2-70b-chat"):
        assert models[key]["licenses"]["weights"]["id"] == "LicenseRef-Llama-2", key
    props = license_properties(models["llama-2-7b"]["licenses"]["weights"]["id"])
    assert (props.user_cap, props.no_improving_other_models) == (700_000_000, True)
    assert models["vicuna-13b-v1.5"]["base_models"] == ["llama-2-13b"]
    assert models["vicuna-13b-v1.3"]["base_models"] == ["llama-13b"]


def test_smollm2_135m_instruct_kaiyuans_default_model(models):
    smol = models["smollm2-135m-instruct"]
    assert (smol["hub_ids"], smol["base_models"], smol["licenses"]["weights"]["id"]) == (
        ["HuggingFaceTB/SmolLM2-135M-Instruct"], ["smollm2-135m"], "Apache-2.0")
    assert [(d["name"].split(" (")[0], d["license"]) for d in smol["tuning_data"]] == [
        ("smol-smoltalk", "Apache-2.0"), ("UltraFeedback binarized", "MIT")]
    assert {g for d in smol["tuning_data"] for g in generators(d)} == {"llama-3.1-405b-instruct", "openai-gpt-4"}
    corpora = {d["name"]: d["license"] for d in models["smollm2-135m"]["pretraining_data"]}
    assert (corpora["FineWeb-Edu"], corpora["DCLM-Baseline 1.0"], corpora["FineMath"]) == (
        "ODC-By-1.0", "CC-BY-4.0", "ODC-By-1.0")
    assert models["gemma-3-270m-it"]["base_models"] == ["gemma-3-270m"]
    assert models["gemma-3-270m"]["licenses"]["weights"]["id"] == "LicenseRef-Gemma"


def test_the_licenses_that_differ_within_a_family(models):
    weights = {key: m["licenses"]["weights"]["id"] for key, m in models.items() if "weights" in m["licenses"]}
    assert [weights[f"qwen2.5-{s}-instruct"] for s in ("1.5b", "3b", "7b", "32b", "72b")] == [
        "Apache-2.0", "LicenseRef-Qwen-Research", "Apache-2.0", "Apache-2.0", "LicenseRef-Qwen"]
    assert (weights["falcon-40b"], weights["falcon-180b"]) == ("Apache-2.0", "LicenseRef-Falcon-180B")
    assert (weights["mpt-7b"], weights["mpt-7b-chat"]) == ("Apache-2.0", "CC-BY-NC-SA-4.0")
    assert (weights["stablelm-base-alpha-7b"], weights["stablelm-tuned-alpha-7b"]) == (
        "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0")
    assert (weights["yi-34b"], weights["yi-1.5-34b"]) == ("LicenseRef-Yi", "Apache-2.0")
    assert (weights["moss-moon-003-sft"], models["moss-moon-003-sft"]["licenses"]["code"]["id"]) == (
        "AGPL-3.0-only", "Apache-2.0")
    assert (weights["chatglm-6b"], weights["baichuan2-13b-chat"], weights["dclm-7b"]) == (
        "LicenseRef-ChatGLM-6B", "LicenseRef-Baichuan-2", "LicenseRef-Apple-ASCL")
    assert weights["bloomz"] == weights["bloom"] == "LicenseRef-BigScience-BLOOM-RAIL-1.0"
    assert license_properties(weights["baichuan2-7b-base"]).commercial_use is None


def test_models_tuned_on_chatgpt_outputs_name_their_generator(models):
    for key in ("vicuna-13b-v1.3", "vicuna-7b-v1.5", "koala-13b", "gpt4all-j", "moss-moon-003-sft",
                "falcon-40b-instruct", "mpt-7b-chat"):
        assert "openai-gpt-3.5-turbo" in {g for d in models[key]["tuning_data"] for g in generators(d)}, key
    assert models["gpt4all-j"]["base_models"] == ["gpt-j-6b"]
    assert models["gpt4all-lora"]["base_models"] == ["llama-7b"]
    assert models["stablevicuna-13b"]["base_models"] == ["vicuna-13b-v0"]
    assert models["oasst-sft-4-pythia-12b"]["tuning_data"][0]["license"] == "Apache-2.0"
