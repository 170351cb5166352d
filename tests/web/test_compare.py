"""``/compare`` on the demo pipeline's two evaluations of dates-heldout (tiny-llama and its merged fine-tune), and on
a copy of that registry with a third evaluation of the same data whose answers differ, so that the models
disagree on some items."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from kaiyuan.data.datasets import dataset_records
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from tests.web import test_model_pages
from tests.web.test_model_pages import ui_app

HOSTILE = "<script>alert('reply')</script>"
demo, client = test_model_pages.demo, test_model_pages.client  # the same module-scoped fixtures, in this module


def predictions(evaluation: Artifact) -> list[dict]:
    return [json.loads(line) for line in (evaluation.path / "predictions.jsonl").read_text().splitlines()]


def register_eval(registry: Registry, model: Artifact, dataset: Artifact, rows: list[dict]) -> Artifact:
    """An eval artifact shaped exactly as the exact-match eval writes one (predictions.jsonl, metrics, parents)."""
    n_correct = sum(r["correct"] for r in rows)
    metrics = {"exact_match": n_correct / len(rows), "n": len(rows), "n_correct": n_correct}
    with registry.writer("eval", f"{model.name}@{dataset.name}", license="CC0-1.0",
                         source="kaiyuan eval (exact match)", stage="eval",
                         parents=[Parent(model.id, "evaluated_model"), Parent(dataset.id, "dataset")],
                         config={"model": model.id, "data": dataset.id, "model_id": model.id,
                                 "dataset_id": dataset.id}, metrics=metrics) as writer:
        (writer.path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


@pytest.fixture(scope="module")
def third(demo, tmp_path_factory) -> tuple[Registry, Artifact, Artifact]:
    """A copy of the demo registry (re-indexed from the manifests) with the adapter "evaluated" on dates-heldout:
    right on items 1 and 3, a hostile reply on item 2; and an eval of dates-train."""
    home = tmp_path_factory.mktemp("web-compare") / "home"
    shutil.copytree(demo.home / "artifacts", home / "artifacts")
    registry = Registry(home)
    rows = predictions(demo.base_eval)
    for row in rows:
        right = row["line"] in (1, 3)
        row.update(pred=row["gold"] if right else "", output=row["gold"] if right else "no idea", correct=right)
    rows[1]["output"] = HOSTILE
    adapter = registry.get(demo.adapter.id)
    on_heldout = register_eval(registry, adapter, registry.get(demo.heldout.id), rows)
    train_rows = [{"line": r.line, "gold": "x", "pred": "", "output": "", "correct": False}
                  for r in dataset_records(registry.get(demo.train.id), registry)]
    on_train = register_eval(registry, adapter, registry.get(demo.train.id), train_rows)
    return registry, on_heldout, on_train


def item_rows(html: str) -> dict[str, str]:
    """Each item's table row, by its key (the dataset line)."""
    return dict(re.findall(r'<tr class="item" data-key="([^"]+)"[^>]*>(.*?)</tr>', html, re.S))


def output_marks(row: str) -> dict[str, str]:
    return dict(re.findall(r'data-eval="([^"]+)" data-correct="([^"]+)"', row))


def accuracy(html: str, slice_name: str) -> dict[str, str]:
    row = html.split(f'<tr data-slice="{slice_name}">', 1)[1].split("</tr>", 1)[0]
    return dict(re.findall(r'data-eval="([^"]+)" data-value="([^"]*)"', row))


def compare(client: TestClient, *evals: Artifact, **filters: str) -> str:
    response = client.get("/compare", params=[("eval", e.id) for e in evals] + list(filters.items()))
    assert response.status_code == 200, response.text
    return response.text


# ----------------------------------------------------------------------------------------- the form


def test_without_a_selection_the_comparable_evaluations_are_a_form(client, demo):
    html = client.get("/compare").text
    group = html.split(f'data-group="data:{demo.heldout.id}"', 1)[1].split("</section>", 1)[0]
    assert f"{demo.heldout.name} ({demo.heldout.id})" in group
    for evaluation in (demo.base_eval, demo.merged_eval):
        assert f'<input type="checkbox" name="eval" value="{evaluation.id}"' in group
    assert '<form method="get" action="/compare">' in group


# ----------------------------------------------------------------------------------------- side by side


def test_both_models_outputs_per_item_and_the_recorded_accuracy(client, demo):
    html = compare(client, demo.base_eval, demo.merged_eval)
    rows = item_rows(html)
    records = {str(r.line): r for r in dataset_records(demo.heldout, Registry(demo.home))}
    assert set(rows) == set(records)
    base, merged = ({str(p["line"]): p for p in predictions(e)} for e in (demo.base_eval, demo.merged_eval))
    for key, row in rows.items():
        assert str(escape(records[key].as_chat()[0]["content"])) in row  # the prompt
        assert f'<td class="text reference">{escape(base[key]["gold"])}' in row
        marks = output_marks(row)
        assert marks == {demo.base_eval.id: "correct" if base[key]["correct"] else "wrong",
                         demo.merged_eval.id: "correct" if merged[key]["correct"] else "wrong"}
        for output in (base[key]["output"], merged[key]["output"]):
            shown = escape(output) if output.strip() else "(only whitespace)" if output else "(empty reply)"
            assert f'<div class="reply">{shown}</div>' in row
    recorded = {e.id: str(e.manifest["metrics"]["exact_match"]) for e in (demo.base_eval, demo.merged_eval)}
    assert accuracy(html, "all") == recorded
    assert f'<a href="/models/{demo.base.id}">{demo.base.name}</a>' in html


def test_models_and_data_select_the_same_evaluations(client, demo):
    by_evals = compare(client, demo.base_eval, demo.merged_eval)
    by_models = client.get("/compare", params={"models": f"{demo.base.name},{demo.merged.id}",
                                               "data": demo.heldout.name}).text
    assert item_rows(by_models) == item_rows(by_evals)


def test_filters_on_the_demo_pair(client, demo):
    base = {str(p["line"]): p["correct"] for p in predictions(demo.base_eval)}
    merged = {str(p["line"]): p["correct"] for p in predictions(demo.merged_eval)}
    disagreeing = {k for k in base if base[k] != merged[k]}
    assert set(item_rows(compare(client, demo.base_eval, demo.merged_eval, disagree="1"))) == disagreeing
    both_wrong = {k for k in base if not base[k] and not merged[k]}
    assert set(item_rows(compare(client, demo.base_eval, demo.merged_eval, correct="none"))) == both_wrong


# ----------------------------------------------------------------------------------------- three models, disagreeing


def test_the_disagreeing_filter_keeps_exactly_the_items_where_correctness_differs(demo, third):
    registry, on_heldout, _ = third
    client = TestClient(ui_app(registry.home))
    evals = [registry.get(demo.base_eval.id), registry.get(demo.merged_eval.id), on_heldout]
    marks = [{str(p["line"]): p["correct"] for p in predictions(e)} for e in evals]
    disagreeing = {k for k in marks[0] if len({m[k] for m in marks}) > 1}
    assert disagreeing  # the third eval is right on items 1 and 3, where the other two are not both right

    html = compare(client, *evals, disagree="1")
    assert set(item_rows(html)) == disagreeing
    assert f'<input type="hidden" name="eval" value="{on_heldout.id}">' in html  # the filter form keeps the selection
    assert '<input type="checkbox" name="disagree" value="1" checked>' in html
    assert f"{len(disagreeing)} of {len(marks[0])} items" in html
    # the accuracy table is over every item, whatever the filter; each equals the recorded score
    assert accuracy(html, "all") == {e.id: str(e.manifest["metrics"]["exact_match"]) for e in evals}

    right = set(item_rows(compare(client, *evals, correct=on_heldout.id)))
    assert right == {k for k, v in marks[2].items() if v}
    wrong = set(item_rows(compare(client, *evals, correct=f"-{on_heldout.id}")))
    assert wrong == {k for k, v in marks[2].items() if not v}
    subject = set(item_rows(compare(client, *evals, subject="dates")))
    assert subject == set(marks[0])  # the synthetic task's records are all of subject "dates"
    assert item_rows(compare(client, *evals, subject="history")) == {}


def test_model_output_is_escaped(demo, third):
    registry, on_heldout, _ = third
    html = compare(TestClient(ui_app(registry.home)), registry.get(demo.base_eval.id), on_heldout)
    assert HOSTILE not in html and str(escape(HOSTILE)) in html


def test_the_model_page_links_to_the_comparison_of_all_its_data(demo, third):
    registry, on_heldout, _ = third
    html = TestClient(ui_app(registry.home)).get(f"/models/{demo.adapter.id}").text
    row = html.split(f'<tr data-eval="{on_heldout.id}">', 1)[1].split("</tr>", 1)[0]
    link = re.search(r'href="(/compare\?[^"]+)"', row)
    assert link is not None
    ids = re.findall(r"eval=([\w-]+)", link.group(1))
    assert ids[0] == on_heldout.id and sorted(ids[1:]) == sorted([demo.base_eval.id, demo.merged_eval.id])


# ----------------------------------------------------------------------------------------- refusals


def test_evaluations_of_different_data_are_refused(demo, third):
    registry, _, on_train = third
    response = TestClient(ui_app(registry.home)).get("/compare", params=[("eval", demo.base_eval.id),
                                                                         ("eval", on_train.id)])
    assert response.status_code == 400
    assert "ran on different data" in response.text


def test_an_unknown_evaluation_is_404_and_one_is_not_enough(client, demo):
    missing = client.get("/compare", params={"eval": ["eval-000000000000", demo.base_eval.id]})
    assert missing.status_code == 404 and "no evaluation" in missing.text
    alone = client.get("/compare", params={"eval": demo.base_eval.id})
    assert alone.status_code == 200 and "Pick two or more evaluations of the same data." in alone.text
    no_data = client.get("/compare", params={"models": demo.base.id, "data": "nowhere"})
    assert no_data.status_code == 404 and "has no evaluation on" in no_data.text


def test_a_model_without_a_comparable_eval_names_the_command(client, demo):
    response = client.get("/compare", params={"models": f"{demo.adapter.id},{demo.base.id}",
                                              "data": demo.heldout.id})
    assert response.status_code == 404
    assert str(escape(f"kaiyuan eval {demo.adapter.id} --data {demo.heldout.id}")) in response.text


# ----------------------------------------------------------------------------------------- benchmarks


def register_benchmark(registry: Registry, model: Artifact, rows: list[dict]) -> Artifact:
    """An eval artifact shaped as ``kaiyuan eval --task`` writes one: no dataset parent, the task in its config and
    metrics, per-subject scores, predictions.jsonl rows with id, subject, gold, pred and acc."""
    subjects = {s: {"n": len(g), "acc": sum(r["acc"] for r in g) / len(g)}
                for s in sorted({r["subject"] for r in rows}) for g in [[r for r in rows if r["subject"] == s]]}
    metrics = {"task": "mmlu", "n": len(rows), "acc": sum(r["acc"] for r in rows) / len(rows), "categories": {},
               "subjects": subjects}
    with registry.writer("eval", f"{model.name}@mmlu", license="CC0-1.0", source="kaiyuan eval --task mmlu",
                         stage="benchmark", parents=[Parent(model.id, "evaluated_model")],
                         config={"model": model.id, "task": "mmlu", "split": "test", "shots": 5, "limit": None,
                                 "model_id": model.id, "task_name": "mmlu"}, metrics=metrics) as writer:
        (writer.path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


def test_benchmark_evaluations_compare_by_task_with_a_slice_per_subject(home):
    registry = Registry(home)
    models = []
    for name in ("model-a", "model-b"):
        with registry.writer("model", name, license="Apache-2.0", source="a test") as writer:
            (writer.path / "config.json").write_text(json.dumps({"name": name}), encoding="utf-8")
        assert writer.artifact is not None
        models.append(writer.artifact)
    questions = [("anatomy/0", "anatomy", 1), ("anatomy/1", "anatomy", 2), ("virology/0", "virology", 0)]
    picks = ([1, 0, 0], [1, 2, 3])
    evals = [register_benchmark(registry, model, [
        {"id": key, "subject": subject, "gold": gold, "pred": pred, "pred_norm": pred, "acc": float(pred == gold),
         "acc_norm": float(pred == gold)} for (key, subject, gold), pred in zip(questions, chosen, strict=True)])
        for model, chosen in zip(models, picks, strict=True)]
    client = TestClient(ui_app(home))

    form = client.get("/compare").text
    assert "mmlu (split test, shots 5)" in form
    html = compare(client, *evals)
    assert set(item_rows(html)) == {key for key, _, _ in questions}
    for subject in ("anatomy", "virology"):
        assert accuracy(html, subject) == {e.id: str(e.manifest["metrics"]["subjects"][subject]["acc"]) for e in evals}
    assert accuracy(html, "all") == {e.id: str(e.manifest["metrics"]["acc"]) for e in evals}
    assert set(item_rows(compare(client, *evals, disagree="1"))) == {"anatomy/1", "virology/0"}
    assert set(item_rows(compare(client, *evals, correct="all"))) == {"anatomy/0"}
    assert set(item_rows(compare(client, *evals, subject="virology"))) == {"virology/0"}
    by_models = client.get("/compare", params={"models": "model-a,model-b", "data": "mmlu"}).text
    assert item_rows(by_models) == item_rows(html)
