"""The demo pipeline end to end on tiny-llama: artifacts, lineage, summary (exact match may not rise)."""

import json

from typer.testing import CliRunner

from kaiyuan.cli import app
from kaiyuan.pipeline.demo import DemoConfig, run_demo


def test_demo_pipeline_on_tiny_llama(home):
    summary = run_demo(DemoConfig(model="tiny-llama", n_train=16, n_heldout=8, max_steps=2, batch_size=4,
                                  max_new_tokens=8, n_pairs=8, checkpoint_steps=1))
    assert set(summary) >= {"base_exact_match", "tuned_exact_match", "n_heldout", "seconds", "chat_reply",
                            "stream_reply", "base_model_id", "tuned_model_id", "dataset_id", "loss_curve_png"}
    assert summary["n_heldout"] == 8
    assert 0.0 <= summary["base_exact_match"] <= 1.0 and 0.0 <= summary["tuned_exact_match"] <= 1.0
    assert 0.0 <= summary["dpo_exact_match"] <= 1.0 and summary["served_model_id"] == summary["dpo_model_id"]
    assert isinstance(summary["chat_reply"], str) and isinstance(summary["stream_reply"], str)
    assert json.loads((home / "demo" / "summary.json").read_text()) == summary
    # made in kaiyuan from open data, with checkpoints, evaluations and cards: open science (MOF Class I)
    assert (summary["license"], summary["commercial_use"], summary["mof_class"]) == ("Apache-2.0", "yes", "Class I")
    assert (home / "demo" / "card" / "README.md").is_file()

    shown = CliRunner().invoke(app, ["models", "show", summary["tuned_model_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    by_id = {(n["id"], n["relation"]): n for n in info["lineage"]}
    base = by_id[(summary["base_model_id"], "base_model")]
    assert base["kind"] == "model" and base["license"] == "Apache-2.0" and len(base["sha256"]) == 64
    dataset = by_id[(summary["dataset_id"], "dataset")]
    assert dataset["kind"] == "dataset" and dataset["license"] == "CC0-1.0" and len(dataset["sha256"]) == 64
    assert by_id[(summary["adapter_id"], "merge")]["kind"] == "adapter"

    aligned = json.loads(CliRunner().invoke(app, ["models", "show", summary["dpo_model_id"], "--json"]).stdout)
    relations = {(n["id"], n["relation"]) for n in aligned["lineage"]}
    assert {(summary["dpo_adapter_id"], "merge"), (summary["pairs_dataset_id"], "dataset"),
            (summary["base_model_id"], "base_model")} <= relations
    from kaiyuan.hub.registry import Registry

    assert set(Registry().parents(summary["dpo_adapter_id"])) == {
        (summary["tuned_model_id"], "adapter"), (summary["tuned_model_id"], "reference_model"),
        (summary["pairs_dataset_id"], "dataset")}

    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--json"]).stdout)
    assert {a["id"] for a in listed} == {summary["base_model_id"], summary["tuned_model_id"], summary["adapter_id"],
                                         summary["dpo_adapter_id"], summary["dpo_model_id"]}
