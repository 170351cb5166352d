"""``kaiyuan run RECIPE --check`` (and ``run`` before its first stage) finds every problem of a recipe up front —
missing data files, outputs a stage will never produce, misspellings with a "did you mean" — and reports them
all at once; unreadable recipe files are clear errors naming file and line."""

import json

import pytest
import yaml

from kaiyuan.config import load_config
from kaiyuan.errors import KaiyuanError
from kaiyuan.pipeline.recipe import RecipeError, load_recipe, plan, run_recipe
from tests.conftest import run_cli

STAGES = ("synthetic, near_misses, pretrain, sft, dpo, kto, orpo, simpo, reward, ppo, grpo, eval, benchmark, judge, "
          "export")


def recipe(*stages, **top):
    return {"name": "t", **top, "stages": [dict(s) for s in stages]}


DATA = {"id": "data", "stage": "synthetic", "n_train": 8, "n_heldout": 4, "n_pairs": 8}
SFT = {"id": "sft", "stage": "sft", "model": "tiny-llama", "data": "${data.train}", "max_steps": 1, "merge": True}


def problems(value, source="r.yaml"):
    with pytest.raises(RecipeError) as info:
        plan(value, source)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def cli(monkeypatch, capsys, *args):
    return run_cli(monkeypatch, capsys, *args)


# ------------------------------------------------------------------------------------------- up front


def test_a_later_stages_missing_data_file_is_found_before_stage_one_runs(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value = recipe(DATA, {"id": "score", "stage": "eval", "model": "tiny-llama", "data": "heldout.jsonl"})
    assert problems(value) == [f"r.yaml: stages[2] (eval): data: cannot resolve dataset 'heldout.jsonl': not a "
                               f"registry id or name, nor a file (no {tmp_path / 'heldout.jsonl'})"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(value))
    with pytest.raises(RecipeError):
        run_recipe(path)
    assert not (home / "artifacts").exists()  # the synthetic stage did not run
    (tmp_path / "heldout.jsonl").write_text("")
    assert [p.id for p in plan(value, "r.yaml")] == ["data", "score"]


def test_merged_output_of_a_stage_without_merge_true(home):
    unmerged = {k: v for k, v in SFT.items() if k != "merge"}
    value = recipe(DATA, unmerged, {"id": "dpo", "stage": "dpo", "model": "${sft.merged}", "data": "${data.pairs}"})
    assert problems(value) == ["r.yaml: stages[3]: model: ${sft.merged} is never produced: stage 'sft' makes no "
                               "'merged' output because it has no 'merge: true'"]
    full = {**SFT, "method": "full"}
    value = recipe(DATA, full, {"id": "dpo", "stage": "dpo", "model": "${sft.merged}", "data": "${data.pairs}"})
    assert problems(value) == ["r.yaml: stages[3]: model: ${sft.merged} is never produced: stage 'sft' makes no "
                               "'merged' output because its method full trains no adapter to merge"]
    value = recipe(DATA, full, {"id": "dpo", "stage": "dpo", "model": "${sft.artifact}", "data": "${data.pairs}"})
    assert [p.id for p in plan(value, "r.yaml")] == ["data", "sft", "dpo"]


def test_pairs_of_a_synthetic_stage_without_n_pairs(home):
    data = {k: v for k, v in DATA.items() if k != "n_pairs"}
    value = recipe(data, SFT, {"id": "dpo", "stage": "dpo", "model": "${sft.merged}", "data": "${data.pairs}"})
    assert problems(value) == ["r.yaml: stages[3]: data: ${data.pairs} is never produced: stage 'data' makes no "
                               "'pairs' output because it has no 'n_pairs' above 0"]


def test_every_problem_is_reported_at_once_with_did_you_mean(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    value = recipe(
        DATA,
        {**SFT, "epocs": 2, "max_steps": "many"},
        {"id": "dpo", "stage": "dpp", "model": "${sft.merged}"},
        {"id": "score", "stage": "eval", "model": "${sfy.merged}", "data": "${data.heldot}"},
        {"stage": "eval", "model": "${sft.merged}", "data": "nowhere.jsonl", "max_new_token": 4},
        {"id": "x", "stgae": "eval"},
        {"id": "early", "stage": "eval", "model": "${late.merged}", "data": "${data.heldout}"},
        {"id": "late", "stage": "sft", "model": "tiny-llama", "data": "${data.train}", "merge": True},
        {"id": "sft", "stage": "export", "model": "${sft.artifact}", "to": "gguf"},
        nmae="t")
    assert problems(value) == [
        "r.yaml: unknown key(s) nmae; expected name, description, stages; did you mean 'name'?",
        "r.yaml: stages[2] (sft): unknown key(s) epocs; expected " + load_config_fields("sft")
        + "; did you mean 'epochs'?",
        "r.yaml: stages[2] (sft): max_steps: expected <class 'int'>, got 'many'",
        f"r.yaml: stages[3]: unknown stage 'dpp'; expected one of {STAGES}; did you mean 'ppo' or 'dpo'?",
        "r.yaml: stages[4]: model: ${sfy.merged} refers to no earlier stage; did you mean 'sft'?",
        "r.yaml: stages[4]: data: stage 'data' has no output 'heldot'; it has train, heldout, pairs; did you mean "
        "'heldout'?",
        "r.yaml: stages[5] (eval): unknown key(s) max_new_token; expected " + load_config_fields("eval")
        + "; did you mean 'max_new_tokens'?",
        "r.yaml: stages[5] (eval): data: cannot resolve dataset 'nowhere.jsonl': not a registry id or name, nor a "
        f"file (no {tmp_path / 'nowhere.jsonl'})",
        f"r.yaml: stages[6]: each stage needs a 'stage' key ({STAGES}); did you mean 'stage' for 'stgae'?",
        "r.yaml: stages[7]: model: ${late.merged} refers to stage 'late', which is not an earlier stage (stages[8]); "
        "a stage can only use what the stages before it produced",
        "r.yaml: stages[9]: id 'sft' is used twice",
    ]


def load_config_fields(stage):
    import dataclasses

    from kaiyuan.pipeline.recipe import stages

    return ", ".join(f.name for f in dataclasses.fields(stages()[stage].config))


def test_datasets_named_rather_than_referenced(home, tmp_path, monkeypatch):
    from kaiyuan.data.datasets import register_dataset

    monkeypatch.chdir(tmp_path)
    register_dataset([{"text": "hello"}], "my-corpus", "CC0-1.0", "test")
    (tmp_path / "local.jsonl").write_text("")
    value = recipe(DATA,
                   {"id": "a", "stage": "pretrain", "model": "tiny-llama", "data": "my-corpus"},  # registered
                   {"id": "b", "stage": "eval", "model": "tiny-llama", "data": "local.jsonl"},  # a file
                   {"id": "c", "stage": "eval", "model": "tiny-llama", "data": "dates-heldout"})  # stage 1 makes it
    assert [p.id for p in plan(value, "r.yaml")] == ["data", "a", "b", "c"]
    early = recipe({"id": "c", "stage": "eval", "model": "tiny-llama", "data": "dates-heldout"}, DATA)
    assert problems(early) == ["r.yaml: stages[1] (eval): data: cannot resolve dataset 'dates-heldout': not a "
                               f"registry id or name, nor a file (no {tmp_path / 'dates-heldout'})"]


def test_check_creates_nothing(home):
    problems(recipe({"stage": "eval", "model": "m", "data": "nowhere"}))
    assert not (home / "artifacts").exists() and not (home / "registry.sqlite").exists()


@pytest.mark.parametrize("value, expected", [
    (None, ["r.yaml: a recipe is a mapping with a non-empty 'stages' list"]),
    (["sft"], ["r.yaml: a recipe is a mapping with a non-empty 'stages' list"]),
    ({"stages": []}, ["r.yaml: a recipe is a mapping with a non-empty 'stages' list"]),
    ({"stagse": [DATA]}, ["r.yaml: unknown key(s) stagse; expected name, description, stages; did you mean 'stages'?",
                          "r.yaml: a recipe is a mapping with a non-empty 'stages' list"]),
    ({"stages": ["sft", {"stage": ["sft"]}, {"stage": "sft", 3: 4, "model": "m", "data": "${a.b"}]},
     [f"r.yaml: stages[1]: each stage needs a 'stage' key ({STAGES})",
      f"r.yaml: stages[2]: unknown stage ['sft']; expected one of {STAGES}",
      "r.yaml: stages[3]: data: malformed reference '${a.b'; write ${ID.OUTPUT}",
      "r.yaml: stages[3] (sft): unknown key(s) 3; expected " + load_config_fields("sft")]),
])
def test_malformed_recipes(home, value, expected):
    assert problems(value) == expected


# ------------------------------------------------------------------------------------------- the file


def test_missing_recipe_file_cli(home, tmp_path, monkeypatch, capsys):
    path = tmp_path / "nope.yaml"
    assert cli(monkeypatch, capsys, "run", path, "--check") == (2, "", f"error: {path}: no such recipe file\n")
    assert cli(monkeypatch, capsys, "run", path) == (2, "", f"error: {path}: no such recipe file\n")


def test_yaml_syntax_error_names_file_and_line(home, tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nstages:\n  - id: a\n   stage: sft\n")
    message = (f"{path}:4: invalid YAML: while parsing a block collection: expected <block end>, but found "
               "'<block mapping start>' (column 4)")
    with pytest.raises(KaiyuanError) as info:
        load_recipe(path)
    assert str(info.value) == message
    assert cli(monkeypatch, capsys, "run", path, "--check") == (2, "", f"error: {message}\n")
    path.write_text("name: t\nstages: [a, b\n")
    with pytest.raises(KaiyuanError, match=r"r\.yaml:3: invalid YAML: while parsing a flow sequence: expected ',' "
                                           r"or '\]', but got '<stream end>' \(column 1\)"):
        load_recipe(path)


def test_unreadable_recipe_files(tmp_path):
    with pytest.raises(KaiyuanError) as info:
        load_recipe(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a recipe file"
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: t\nstages: \xff\n")
    with pytest.raises(KaiyuanError) as info:
        load_recipe(path)
    assert str(info.value) == f"{path}:2: not valid UTF-8 (invalid start byte)"
    path.write_text("#" * (2 << 20))
    with pytest.raises(KaiyuanError) as info:
        load_recipe(path)
    assert str(info.value) == f"{path}: larger than 1 MiB; a recipe is a short YAML file"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(KaiyuanError) as info:
        load_recipe(path)
    assert str(info.value) == f"{path}: invalid YAML: nested too deeply"


def test_cli_check_lists_every_problem(home, tmp_path, monkeypatch, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe(DATA, {**SFT, "epocs": 1}, {"stage": "dpo", "model": "${sft.mergd}",
                                                                       "data": "${data.pairs}"})))
    code, out, err = cli(monkeypatch, capsys, "run", path, "--check")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"error: {path}: stages[2] (sft): unknown key(s) epocs; expected {load_config_fields('sft')}; did you mean "
        "'epochs'?",
        f"{path}: stages[3]: model: stage 'sft' has no output 'mergd'; it has artifact, merged; did you mean "
        "'merged'?"]
    path.write_text(yaml.safe_dump(recipe(DATA, SFT)))
    code, out, err = cli(monkeypatch, capsys, "run", path, "--check")
    assert (code, out, err) == (0, f"{path}: 2 stages OK: data (synthetic) → sft (sft)\n", "")


# ------------------------------------------------------------------------------------------- config files


def test_load_config_reports_every_problem_and_suggests_keys():
    from kaiyuan.evaluate.generation import ExactMatchConfig

    with pytest.raises(KaiyuanError) as info:
        load_config(ExactMatchConfig, {"modle": "m", "dat": "d", "limit": "all"}, "c.yaml")
    fields = load_config_fields("eval")
    assert str(info.value).splitlines() == [
        f"c.yaml: unknown key(s) dat, modle; expected {fields}; did you mean 'data' for 'dat', 'model' for 'modle'?",
        "c.yaml: limit: expected int | None, got 'all'",
        "c.yaml: missing required key(s) model, data"]
    assert json.dumps(load_config(ExactMatchConfig, {"model": "m", "data": "d"}).model) == '"m"'
