import json

import pytest
import yaml
from typer.testing import CliRunner

from kaiyuan.cli import app
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.pipeline.recipe import plan, run_recipe

TINY_RECIPE = {
    "name": "tiny",
    "stages": [
        {"id": "data", "stage": "synthetic", "n_train": 8, "n_heldout": 4, "n_pairs": 8, "seed": 1},
        {"id": "sft", "stage": "sft", "model": "tiny-llama", "data": "${data.train}", "max_steps": 2,
         "batch_size": 4, "merge": True, "learning_rate": 0.01},
        {"id": "dpo", "stage": "dpo", "model": "${sft.merged}", "data": "${data.pairs}", "max_steps": 2,
         "batch_size": 4, "merge": True},
        {"id": "score", "stage": "eval", "model": "${dpo.merged}", "data": "${data.heldout}", "max_new_tokens": 4},
    ],
}


def test_recipe_chains_stages_by_registry_reference(home, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(TINY_RECIPE))
    result = run_recipe(path)
    stages = result["stages"]
    assert list(stages) == ["data", "sft", "dpo", "score"]
    registry = Registry()
    dpo_parents = registry.parents(stages["dpo"]["artifact"])
    assert dpo_parents == [(stages["sft"]["merged"], "adapter"), (stages["data"]["pairs"], "dataset"),
                           (stages["sft"]["merged"], "reference_model")]
    eval_artifact = registry.get(stages["score"]["artifact"])
    assert eval_artifact.manifest["config"]["model_id"] == stages["dpo"]["merged"]
    assert stages["score"]["metrics"]["n"] == 4
    # the held-out prompts never appear among the preference pairs
    heldout = {json.loads(line)["messages"][0]["content"]
               for line in (registry.get(stages["data"]["heldout"]).path / "data.jsonl").read_text().splitlines()}
    pairs = {json.loads(line)["prompt"][0]["content"]
             for line in (registry.get(stages["data"]["pairs"]).path / "data.jsonl").read_text().splitlines()}
    assert not heldout & pairs

    again = run_recipe(path)  # everything already ran with the same resolved configs: reused, not retrained
    assert all(outputs.get("cached") for outputs in again["stages"].values())
    assert {k: {o: v for o, v in outs.items() if o != "cached"} for k, outs in again["stages"].items()} == \
        json.loads(json.dumps(stages, default=str))


@pytest.mark.parametrize("change, message", [
    (lambda r: r["stages"].append({"stage": "rlhf"}),
     "stages[5]: unknown stage 'rlhf'; expected one of synthetic, near_misses, pretrain, sft, dpo, kto, orpo, simpo, "
     "reward, ppo, grpo, eval, benchmark, judge, export"),
    (lambda r: r["stages"][2].update(model="${sft.adapter}"), "stages[3]: model: stage 'sft' has no output 'adapter'; "
                                                              "it has artifact, merged"),
    (lambda r: r["stages"][1].update(data="${later.train}"), "stages[2]: data: ${later.train} refers to no earlier "
                                                             "stage"),
    (lambda r: r["stages"][1].update(epocs=2), "stages[2] (sft): unknown key(s) epocs"),
    (lambda r: r["stages"][2].update(loss_type="kto"), "stages[3] (dpo): loss_type: expected"),
])
def test_recipe_errors_are_found_before_anything_runs(home, change, message):
    recipe = json.loads(json.dumps(TINY_RECIPE))
    change(recipe)
    with pytest.raises(KaiyuanError) as info:
        plan(recipe, "r.yaml")
    assert f"r.yaml: {message}" in str(info.value)
    assert not (home / "artifacts").exists()


def test_shipped_recipes_are_valid(home):
    from pathlib import Path

    for path in sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml")):
        result = CliRunner().invoke(app, ["run", str(path), "--check"])
        assert result.exit_code == 0, result.output
        assert "stages OK" in result.stdout
