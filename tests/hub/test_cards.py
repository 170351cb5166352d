"""Model and data cards: parsed back with huggingface_hub, from a fake pipeline registered in code."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.card import hub_license, write_cards
from kaiyuan.hub.manifest import Parent, hash_tree
from kaiyuan.hub.markdown import code_block, md
from kaiyuan.hub.openness import CARD_FILE, CARD_KIND, DOCUMENTED, card_of
from kaiyuan.hub.registry import ArtifactWriter, Registry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LIBRARIES = {"torch": "2.9.0", "transformers": "5.0.0", "peft": "0.17.0"}
CONFIG = '{"model_type": "llama", "hidden_size": 64}'
ROWS = '{"messages": [{"role": "user", "content": "March 1, 1999"}, {"role": "assistant", "content": "1999-03-01"}]}\n'
BASE = "HuggingFaceTB/SmolLM2-135M"
NASTY = '开源 dates: "v2" #1 | *bold* _it_ <b>x</b> [link](http://evil.example) `code` & $x$ \\ ~~s~~ --- 1. - end'
NASTY_DATA = "heldout\n---\nlicense: mit\n- item: [1, 2] # {a: b}"


@pytest.fixture
def registry(home, monkeypatch):
    monkeypatch.setattr("kaiyuan.hub.registry.kaiyuan_git_commit", lambda: COMMIT)
    monkeypatch.setattr("kaiyuan.hub.registry.library_versions", lambda: LIBRARIES)
    return Registry()


def make(kind, name, license, files, parents=(), source="test fixture", config=None, metrics=None, seed=None):
    """A small fake artifact: the given files (relative path → text), its manifest and parents."""
    with ArtifactWriter(kind, name, license=license, source=source, config=config or {}, metrics=metrics or {},
                        seed=seed, parents=[Parent(p.id, r) for p, r in parents]) as writer:
        for relative, text in files.items():
            (writer.path / relative).parent.mkdir(parents=True, exist_ok=True)
            (writer.path / relative).write_text(text)
    return writer.artifact


def synthetic(name, split, rows=ROWS, license="CC0-1.0"):
    config = {"task": "dates", "answer_pattern": r"\d{4}-\d{2}-\d{2}", "n_train": 1, "n_heldout": 1, "split": split}
    return make("dataset", name, license, {"data.jsonl": rows}, source="kaiyuan.data.synthetic:dates",
                config=config, metrics={"records": rows.count("\n")}, seed=0)


def pipeline(base_name=BASE, base_license="Apache-2.0", model_name="smollm2-dates", heldout_name="dates-heldout",
             sft_config=None):
    """Imported base (Apache-2.0) ← LoRA SFT adapter on CC0 synthetic data ← merged model, evaluated on held-out
    data (exact_match 0.96)."""
    base = make("model", base_name, base_license, {"config.json": CONFIG, "model.safetensors": "base"},
                source=f"hub:{base_name}")
    train = synthetic("dates-train", "train")
    heldout = synthetic(heldout_name, "heldout", rows=ROWS.replace("1999", "2001"))
    adapter = make("adapter", "smollm2-dates-lora", base_license,
                   {"adapter_config.json": "{}", "adapter_model.safetensors": "lora"}, [(base, "adapter"),
                                                                                        (train, "dataset")],
                   source="kaiyuan train sft", seed=0, config={"stage": "sft", "method": "lora", "model": base.id,
                                                               "data": train.id, "seed": 0, **(sft_config or {})})
    merged = make("model", model_name, base_license, {"config.json": CONFIG, "model.safetensors": "merged"},
                  [(adapter, "merge"), (base, "base_model")], source="kaiyuan merge (peft merge_and_unload)",
                  config={"stage": "merge", "adapter": adapter.id, "base_model": base.id})
    evaluation = make("eval", f"{model_name}@{heldout_name}", "CC0-1.0", {"predictions.jsonl": '{"correct": true}\n'},
                      [(merged, "evaluated_model"), (heldout, "dataset")], source="kaiyuan eval (exact match)",
                      metrics={"exact_match": 0.96, "n": 25, "n_correct": 24})
    return {"base": base, "train": train, "heldout": heldout, "adapter": adapter, "merged": merged,
            "eval": evaluation}


def test_model_card_parses_with_huggingface_hub(registry, tmp_path):
    made = pipeline()
    merged = made["merged"]
    cards = write_cards(merged.id, out=tmp_path / "out")
    card = ModelCard.load(cards.model.path)
    assert card.data.license == "apache-2.0"
    assert card.data.base_model == BASE  # the base's Hub repo id (it was imported from the Hub under that name)
    assert card.data.base_model_relation == "finetune"  # a LoRA merged into its one base is a fine-tune of it
    assert card.data.datasets == ["dates-train"]
    assert card.data.library_name == "transformers"
    assert card.data.tags == ["kaiyuan", "sft", "lora", "merge"]
    assert card.data.model_name == "smollm2-dates"
    assert [(r.task_type, r.task_name, r.dataset_type, r.dataset_name, r.dataset_split, r.metric_type,
             r.metric_value) for r in card.data.eval_results] == [
        ("text-generation", "dates", "dates-heldout", "dates-heldout", "heldout", "exact_match", 0.96)]
    assert cards.warnings == []
    assert (tmp_path / "out" / CARD_FILE).read_text() == cards.model.path.read_text()


def test_model_card_prose_has_lineage_license_openness_and_how_it_was_made(registry):
    from kaiyuan.hub.openness import openness_report

    made = pipeline()
    merged = made["merged"]
    text = write_cards(merged.id).model.path.read_text()
    body = ModelCard(text).text
    for heading in ("## Evaluation results", "## Lineage", "## License", "## Openness", "## Training data",
                    "## How it was made"):
        assert f"\n{heading}\n" in body
    assert "Commercial use: **yes** — commercial use: yes, with the obligations listed" in body
    grade = openness_report(merged.id).mof_class or "no class"
    assert f"Model Openness Framework (MOF, arXiv:2403.13784): **{grade}**" in body
    assert f"at git commit `{COMMIT}`" in body
    assert "| transformers | 5.0.0 |" in body
    assert f"kaiyuan reproduce {merged.id}" in body
    assert f"| 0.96 | `{made['eval'].id}` |" in body
    for artifact in (made["adapter"], made["base"], made["train"]):  # every ancestor is in the lineage table
        assert f"`{artifact.id}`" in body
    stages = [yaml.safe_load(t.content) for t in MarkdownIt().parse(body) if t.type == "fence" and t.info == "yaml"]
    assert [(s["name"], s["config"].get("stage"), s.get("seed"), s["kaiyuan_git_commit"], s["library_versions"])
            for s in stages] == [("dates-train", None, 0, COMMIT, LIBRARIES),
                                 ("smollm2-dates-lora", "sft", 0, COMMIT, LIBRARIES),
                                 ("smollm2-dates", "merge", None, COMMIT, LIBRARIES)]


def test_adapter_card_is_an_adapter_of_its_base(registry):
    made = pipeline()
    card = ModelCard.load(write_cards(made["adapter"].id).model.path)
    assert (card.data.base_model, card.data.base_model_relation, card.data.library_name) == (BASE, "adapter", "peft")
    assert card.data.eval_results is None  # no evaluation of the adapter itself is registered


def test_an_imported_model_has_no_base_and_its_own_readme_counts_as_its_card(registry):
    made = pipeline()
    card = ModelCard.load(write_cards(made["base"].id).model.path)
    assert (card.data.base_model, card.data.get("base_model_relation"), card.data.datasets) == (None, None, None)
    assert f"has no recorded parents: it entered kaiyuan from outside (source: hub:{BASE})." in card.text
    upstream = make("model", "org/with-card", "MIT", {"config.json": CONFIG, CARD_FILE: "# upstream card"})
    assert card_of(upstream, registry).id == upstream.id


def test_cards_are_registered_artifacts_linked_to_what_they_document(registry):
    made = pipeline()
    merged, train, heldout = made["merged"], made["train"], made["heldout"]
    cards = write_cards(merged.id)
    assert (cards.model.card.kind, registry.parents(cards.model.card.id)) == (CARD_KIND, [(merged.id, DOCUMENTED)])
    assert [(d.documents.id, registry.parents(d.card.id)) for d in cards.data] == [
        (train.id, [(train.id, DOCUMENTED)]), (heldout.id, [(heldout.id, DOCUMENTED)])]
    assert card_of(merged, registry).id == cards.model.card.id
    assert card_of(train, registry).id == cards.data[0].card.id
    assert card_of(made["base"], registry) is None
    assert hash_tree(merged.path) == merged.manifest["files"]  # the model's own files (and id) are untouched
    again = write_cards(merged.id)  # same registry state, same cards: the same content-addressed artifacts
    assert [again.model.card.id, *(d.card.id for d in again.data)] == [cards.model.card.id,
                                                                     *(d.card.id for d in cards.data)]
    assert len(registry.list(CARD_KIND)) == 3


def test_a_new_evaluation_makes_a_new_card(registry):
    made = pipeline()
    first = write_cards(made["merged"].id).model.card
    make("eval", "smollm2-dates@mmlu", "CC0-1.0", {"predictions.jsonl": "{}\n"}, [(made["merged"], "evaluated_model")],
         source="kaiyuan eval --task mmlu", config={"task": "mmlu", "task_name": "mmlu"},
         metrics={"task": "mmlu", "n": 57, "acc": 0.25, "acc_norm": 0.5, "subjects": {}})
    cards = write_cards(made["merged"].id)
    assert cards.model.card.id != first.id
    assert card_of(made["merged"], registry).id == cards.model.card.id
    results = ModelCard.load(cards.model.path).data.eval_results
    assert [(r.task_name, r.dataset_type, r.metric_type, r.metric_value) for r in results] == [
        ("dates", "dates-heldout", "exact_match", 0.96), ("mmlu", "cais/mmlu", "acc", 0.25),
        ("mmlu", "cais/mmlu", "acc_norm", 0.5)]


@pytest.mark.parametrize(("license", "expected"), [
    ("Apache-2.0", {"license": "apache-2.0"}),
    ("CC0-1.0", {"license": "cc0-1.0"}),
    ("GPL-3.0-only", {"license": "gpl-3.0"}),
    ("LicenseRef-Gemma", {"license": "gemma"}),  # the Hub has its own id for these
    ("LicenseRef-Llama-3.1", {"license": "llama3.1"}),
    ("LicenseRef-Tongyi-Qianwen", {"license": "other", "license_name": "tongyi-qianwen", "license_link": "LICENSE"}),
    ("LicenseRef-DeepSeek", {"license": "other", "license_name": "deepseek", "license_link": "LICENSE"}),
    ("Acme Model License 1.1", {"license": "other", "license_name": "acme-model-license-1.1",
                                "license_link": "LICENSE"}),
    ("NOASSERTION", {"license": "unknown"}),
])
def test_hub_license(license, expected):
    assert hub_license(license) == expected


def test_license_ref_becomes_other_with_name_and_link(registry):
    made = pipeline(base_name="Qwen/Qwen-7B", base_license="LicenseRef-Tongyi-Qianwen", model_name="qwen-dates")
    cards = write_cards(made["merged"].id)
    card = ModelCard.load(cards.model.path)
    assert (card.data.license, card.data.license_name, card.data.license_link) == ("other", "tongyi-qianwen",
                                                                                    "LICENSE")
    assert card.data.base_model == "Qwen/Qwen-7B"
    assert cards.warnings == ["license_link points to a LICENSE file: publish the text of LicenseRef-Tongyi-Qianwen "
                              "beside the card"]


def test_a_base_without_a_hub_id_is_named_and_warned_about(registry):
    made = pipeline(base_name="my-local-base")
    cards = write_cards(made["merged"].id)
    assert ModelCard.load(cards.model.path).data.base_model == "my-local-base"
    assert cards.warnings == ["base_model 'my-local-base' is a kaiyuan registry name, not a Hub repo id: publish the "
                              "base model first, or edit base_model before pushing the card"]


def test_data_card_parses_with_huggingface_hub(registry, tmp_path):
    made = pipeline()
    train = made["train"]
    cards = write_cards(made["merged"].id, out=tmp_path / "out")
    written = cards.data[0]
    assert written.documents.id == train.id
    assert written.out == tmp_path / "out" / "datasets" / train.id / CARD_FILE
    card = DatasetCard.load(written.out)
    assert card.data.license == "cc0-1.0"
    assert card.data.pretty_name == "dates-train"
    assert card.data.task_categories == ["text-generation"]
    assert card.data.size_categories == ["n<1K"]
    assert card.data.source_datasets == ["original"]
    assert card.data.annotations_creators == ["machine-generated"]
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data.jsonl"}]}]
    body = card.text
    assert f"| data.jsonl | `{train.manifest['files']['data.jsonl']}` |" in body
    assert "| train | 1 | 1 | " in body
    assert "Generated by kaiyuan's synthetic task dates (`kaiyuan.data.synthetic`)" in body
    assert f"kaiyuan reproduce {train.id}" in body
    assert "## Intended use\n\nfine-tuning: the training split." in body
    recorded = next(yaml.safe_load(t.content) for t in MarkdownIt().parse(body) if t.type == "fence")
    assert recorded == {"source": "kaiyuan.data.synthetic:dates", "config": train.manifest["config"], "seed": 0}
    heldout = DatasetCard.load(cards.data[1].path)
    assert heldout.data.configs[0]["data_files"][0]["split"] == "heldout"
    assert "evaluation only: held out from training" in heldout.text


def test_a_dataset_alone_gets_its_data_card(registry, tmp_path):
    train = synthetic("dates-train", "train")
    cards = write_cards("dates-train", out=tmp_path)
    assert cards.model is None
    assert DatasetCard.load(tmp_path / CARD_FILE).data.license == "cc0-1.0"
    assert card_of(train, registry).id == cards.data[0].card.id


def test_evaluations_and_cards_have_no_cards(registry):
    made = pipeline()
    with pytest.raises(KaiyuanError, match="is a eval: cards are written for models"):
        write_cards(made["eval"].id)


def _inline_text(tokens, index):
    """The text of the inline token after ``tokens[index]`` and the types of its children."""
    children = tokens[index + 1].children
    return "".join(c.content for c in children), {c.type for c in children}


def test_special_characters_are_escaped_and_round_trip(registry):
    evil = "```\n# not a heading\n````"
    made = pipeline(model_name=NASTY, heldout_name=NASTY_DATA, sft_config={"note": evil})
    cards = write_cards(made["merged"].id)
    card = ModelCard.load(cards.model.path)  # the YAML block is intact: safe-dumped, never concatenated
    assert card.data.model_name == NASTY
    assert card.data.license == "apache-2.0"
    assert [(r.dataset_name, r.dataset_split, r.metric_value) for r in card.data.eval_results] == [
        (NASTY_DATA, "heldout", 0.96)]
    data = DatasetCard.load(cards.data[1].path)
    assert (data.data.pretty_name, data.data.license) == (NASTY_DATA, "cc0-1.0")

    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(card.text)
    heading = next(i for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h1")
    assert _inline_text(tokens, heading) == (NASTY, {"text"})  # the name, as text, with no markup
    cells = [_inline_text(tokens, i) for i, t in enumerate(tokens) if t.type == "td_open"]
    assert (NASTY, {"text"}) in cells  # the lineage table's "into" column
    assert not [t for t in tokens if t.type.startswith("html")]
    notes = [yaml.safe_load(t.content)["config"].get("note") for t in tokens if t.type == "fence" and t.info == "yaml"]
    assert evil in notes  # a config holding backtick fences stays inside its code block


@pytest.mark.parametrize("text", [NASTY, "- starts a list", "12. starts a numbered list", "+ plus", "# heading",
                                  "=== setext", "a\nb\r\nc"])
def test_md_is_literal_text(text):
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(f"{md(text)}\n")
    assert [t.type for t in tokens] == ["paragraph_open", "inline", "paragraph_close"]
    assert _inline_text(tokens, 0) == (text.replace("\r\n", " ").replace("\n", " "), {"text"})


def test_code_block_cannot_be_closed_from_inside():
    tokens = MarkdownIt().parse(code_block("a\n````\n```\nb"))
    assert [(t.type, t.content) for t in tokens] == [("fence", "a\n````\n```\nb\n")]


def test_cli_writes_cards_and_prints_json(registry, tmp_path):
    from kaiyuan.cli import app

    made = pipeline()
    result = CliRunner().invoke(app, ["card", made["merged"].id, "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["model_card"]["documents"] == made["merged"].id
    assert printed["model_card"]["metadata"]["license"] == "apache-2.0"
    assert printed["model_card"]["metadata"]["model-index"][0]["results"][0]["metrics"] == [
        {"type": "exact_match", "value": 0.96}]
    assert printed["model_card"]["out"] == str(tmp_path / "out" / CARD_FILE)
    assert [d["documents"] for d in printed["data_cards"]] == [made["train"].id, made["heldout"].id]
    assert all((tmp_path / "out" / "datasets" / d["documents"] / CARD_FILE).is_file() for d in printed["data_cards"])
    plain = CliRunner().invoke(app, ["card", made["merged"].id])
    assert plain.exit_code == 0, plain.output
    assert f"model card for smollm2-dates ({made['merged'].id}): card-" in plain.output


def test_openness_sees_the_registered_cards(registry):
    from kaiyuan.hub.openness import openness_report

    # a base kaiyuan's catalog does not know: SmolLM2's would bring its pretraining corpora, one without a license
    # (tests/hub/test_catalog_answers.py shows what that changes)
    made = pipeline(base_name="example-org/base-135m")
    before = {c["name"]: c["counts"] for c in openness_report(made["merged"].id).mof_components}
    assert (before["Model card"], before["Data card"]) == (False, False)
    cards = write_cards(made["merged"].id)
    report = openness_report(made["merged"].id)
    after = {c["name"]: c["counts"] for c in report.mof_components}
    assert (after["Model card"], after["Data card"]) == (True, True)
    # the grade the card states is the grade with the card in place, and one command registers one model card
    assert f"(MOF, arXiv:2403.13784): **{report.mof_class}**" in cards.model.path.read_text()
    assert len(registry.list(CARD_KIND)) == 3


def test_a_finetune_of_unpublished_finetunes_names_the_nearest_hub_ancestor(registry):
    made = pipeline()
    dpo = make("adapter", "smollm2-dates-dpo", "Apache-2.0", {"adapter_model.safetensors": "dpo"},
               [(made["merged"], "adapter"), (made["train"], "dataset")], source="kaiyuan train dpo")
    aligned = make("model", "smollm2-dates-dpo-merged", "Apache-2.0", {"model.safetensors": "aligned"},
                   [(dpo, "merge"), (made["merged"], "base_model")], source="kaiyuan merge (peft merge_and_unload)")
    cards = write_cards(aligned.id)
    card = ModelCard.load(cards.model.path)
    assert (card.data.base_model, card.data.base_model_relation) == (BASE, "finetune")
    assert cards.warnings == ["base_model: 'smollm2-dates' is not on the Hub; its nearest Hub ancestor "
                              f"'{BASE}' is named instead (the lineage section lists every step)"]
