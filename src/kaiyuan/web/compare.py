"""``/compare``: several models' answers to one evaluation, side by side (what ZenoBuild did for benchmarks).

An evaluation is comparable when its eval artifact holds per-item outputs, ``predictions.jsonl``: the exact-match
eval (``kaiyuan eval --data``: rows ``line``, ``gold``, ``pred``, ``output``, ``correct``, one per record of the
dataset it evaluated) and the benchmark harness (``kaiyuan eval --task``: rows ``id``, ``subject``, ``gold`` and the
item's scores, ``acc`` or ``exact_match``). Evaluations are grouped by what they ran on: the dataset (its registry
id), or for a benchmark its task, split, shots and limit. Items are matched across models by their line (dataset)
or id (benchmark).

The page shows per item the prompt, the reference and each model's output marked correct or wrong; filters (by
subject, by who got it right, only where the models disagree) are query parameters applied on the server, so a
filtered view is a link that can be shared. Above the items: accuracy per slice (subject) and model, and the score
each eval artifact recorded. With no selection: a form per group of evaluations that can be compared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from kaiyuan.data.datasets import DATA_FILE, dataset_records
from kaiyuan.data.formats import iter_json_objects
from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.hub.card import evaluations
from kaiyuan.hub.registry import Artifact, ArtifactCorruptError, Registry
from kaiyuan.web.context import current_user, ui_state
from kaiyuan.web.render import error_page, page

router = APIRouter(include_in_schema=False)

PREDICTIONS = "predictions.jsonl"
PAGE_SIZE = 100
PRIMARY_METRICS = ("exact_match", "acc")  # the score that says whether one item is right, in this order


class SelectionError(KaiyuanError):
    """The evaluations asked for cannot be compared (the page says why, with 400)."""


# ----------------------------------------------------------------------------------------- evaluations


@dataclass
class EvalGroup:
    """Evaluations of one dataset (or one benchmark configuration), oldest first."""

    key: str
    label: str
    evals: list[Artifact] = field(default_factory=list)


def has_predictions(evaluation: Artifact) -> bool:
    return evaluation.kind == "eval" and PREDICTIONS in (evaluation.manifest.get("files") or {})


def _dataset_parent(evaluation: Artifact) -> str | None:
    return next((p["id"] for p in evaluation.manifest.get("parents") or [] if p["relation"] == "dataset"), None)


def _task(evaluation: Artifact) -> str:
    metrics, config = evaluation.manifest.get("metrics") or {}, evaluation.manifest.get("config") or {}
    return str(metrics.get("task") or config.get("task_name") or config.get("task") or evaluation.name)


def group_of(evaluation: Artifact, registry: Registry) -> tuple[str, str]:
    """(key, label) of what ``evaluation`` ran on: its dataset, else its benchmark task and settings."""
    dataset_id = _dataset_parent(evaluation)
    if dataset_id is not None:
        dataset = registry.find_id(dataset_id)
        return f"data:{dataset_id}", f"{dataset.name if dataset else 'dataset'} ({dataset_id})"
    config = evaluation.manifest.get("config") or {}
    settings = [config.get("split"), config.get("shots"), config.get("limit")]
    details = ", ".join(f"{name} {value}" for name, value in zip(("split", "shots", "limit"), settings, strict=True)
                        if value is not None)
    task = _task(evaluation)
    return "task:" + json.dumps([task, *settings]), task + (f" ({details})" if details else "")


def eval_groups(registry: Registry) -> list[EvalGroup]:
    """Every registered evaluation with per-item outputs, grouped by what it ran on."""
    groups: dict[str, EvalGroup] = {}
    for evaluation in registry.list("eval"):
        if has_predictions(evaluation):
            key, label = group_of(evaluation, registry)
            groups.setdefault(key, EvalGroup(key, label)).evals.append(evaluation)
    return sorted(groups.values(), key=lambda g: g.label)


def compare_url(evals: list[Artifact]) -> str:
    return "/compare?" + urlencode([("eval", e.id) for e in evals])


def primary_metric(evaluation: Artifact) -> tuple[str, float | None]:
    """The eval's headline score as it recorded it: exact_match, acc, else its first number."""
    metrics = evaluation.manifest.get("metrics") or {}
    numbers = {k: v for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and k != "n" and not k.startswith("n_")}
    name = next((m for m in PRIMARY_METRICS if m in numbers), next(iter(numbers), ""))
    return name, numbers.get(name)


def evaluated_model(evaluation: Artifact, registry: Registry) -> tuple[str, str]:
    """(id, name) of the model an eval evaluated."""
    model_id = next((p["id"] for p in evaluation.manifest.get("parents") or [] if p["relation"] == "evaluated_model"),
                    None) or str((evaluation.manifest.get("config") or {}).get("model_id") or evaluation.name)
    model = registry.find_id(model_id)
    return model_id, model.name if model else model_id


# ----------------------------------------------------------------------------------------- selection


def _refs(values: list[str]) -> list[str]:
    """Repeated query parameters, each possibly a comma-separated list."""
    return [ref.strip() for value in values for ref in value.split(",") if ref.strip()]


def resolve_evals(registry: Registry, refs: list[str]) -> list[Artifact]:
    """The eval artifacts named by id, id prefix or name (each once, in order)."""
    found: dict[str, Artifact] = {}
    for ref in refs:
        evaluation = registry.find(ref, kind="eval")
        if evaluation is None:
            raise NotFoundError(f"no evaluation {ref!r} in the registry")
        if not has_predictions(evaluation):
            raise SelectionError(f"{evaluation.name} ({evaluation.id}) holds no per-item outputs ({PREDICTIONS}): "
                                 "it cannot be compared item by item")
        found.setdefault(evaluation.id, evaluation)
    return list(found.values())


def _ran_on(evaluation: Artifact, data: str, dataset: Artifact | None) -> bool:
    return (_dataset_parent(evaluation) == dataset.id) if dataset is not None else _task(evaluation) == data


def evals_for_models(registry: Registry, models: list[str], data: str) -> list[Artifact]:
    """For each model, its newest evaluation on ``data`` (a dataset's id or name, or a benchmark task)."""
    dataset = registry.find(data, kind="dataset")
    chosen = []
    for ref in models:
        model = registry.find(ref)
        if model is None:
            raise NotFoundError(f"no model {ref!r} in the registry")
        matching = [e for e in evaluations(model, registry) if has_predictions(e) and _ran_on(e, data, dataset)]
        if not matching:
            raise NotFoundError(f"{model.name} ({model.id}) has no evaluation on {data!r} with per-item outputs "
                                f"(run `kaiyuan eval {model.id} --data {data}`)")
        chosen.append(matching[-1])
    return list({e.id: e for e in chosen}.values())


def check_one_group(evals: list[Artifact], registry: Registry) -> str:
    """The label of the data every eval ran on; SelectionError when they ran on different data."""
    groups = {e.id: group_of(e, registry) for e in evals}
    if len({key for key, _ in groups.values()}) > 1:
        ran = "; ".join(f"{e.name} on {groups[e.id][1]}" for e in evals)
        raise SelectionError(f"these evaluations ran on different data ({ran}): compare evaluations of one dataset")
    return next(iter(groups.values()))[1]


# ----------------------------------------------------------------------------------------- items


@dataclass
class Output:
    text: str
    answer: str
    correct: bool | None  # None: the eval scored this item without a right or wrong (perplexity)


@dataclass
class Item:
    key: str
    subject: str
    prompt: str
    reference: str  # the reference answer as the dataset has it
    gold: str  # what the eval compared the outputs with (the answer extracted from the reference)
    outputs: list[Output | None]  # one per model, None where that eval has no such item

    @property
    def disagree(self) -> bool:
        """Some models got it right and others wrong."""
        return len({o.correct for o in self.outputs if o is not None and o.correct is not None}) > 1


@dataclass
class Run:
    """One eval artifact of the comparison: whose it is, its recorded score, its rows by item key."""

    evaluation: Artifact
    model_id: str
    model_name: str
    metric: str
    recorded: float | None
    rows: dict[str, dict[str, Any]]


def load_run(evaluation: Artifact, registry: Registry) -> Run:
    """An eval's predictions, once its files are checked against its manifest."""
    registry.ensure_intact(evaluation)
    rows: dict[str, dict[str, Any]] = {}
    for _line, row, _error in iter_json_objects(evaluation.path / PREDICTIONS):
        if isinstance(row, dict):
            rows[str(row.get("line", row.get("id")))] = row
    metric, recorded = primary_metric(evaluation)
    model_id, model_name = evaluated_model(evaluation, registry)
    return Run(evaluation, model_id, model_name, metric, recorded, rows)


def _prompt(chat: list[dict[str, str]]) -> str:
    if len(chat) == 1:
        return chat[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in chat)


def dataset_items(dataset: Artifact, registry: Registry) -> dict[str, tuple[str, str, str]]:
    """(prompt, reference answer, subject) of each record of a dataset, by line. The subject is the record's own
    ``subject`` (or ``category``) field where it has one, else the dataset's task."""
    default = str((dataset.manifest.get("config") or {}).get("task") or dataset.name)
    subjects = {str(line): str(obj.get("subject") or obj.get("category") or default)
                for line, obj, _error in iter_json_objects(dataset.path / DATA_FILE) if isinstance(obj, dict)}
    details = {}
    for record in dataset_records(dataset, registry):
        chat = record.as_chat()
        key = str(record.line)
        details[key] = (_prompt(chat[:-1]), chat[-1]["content"] if chat else "", subjects.get(key, default))
    return details


def _output(row: dict[str, Any], metric: str) -> Output:
    if "correct" in row:  # the exact-match eval
        return Output(str(row.get("output", "")), str(row.get("pred", "")), bool(row["correct"]))
    score = row.get(metric, row.get("exact_match", row.get("acc")))
    correct = None if not isinstance(score, int | float) else score >= 1.0
    text = row.get("output")
    if text is None and "pred" in row:
        text = f"choice {row['pred']}"
    answer = row.get("answer", row.get("pred", ""))
    return Output(str(text or ""), str(answer), correct)


def build_items(runs: list[Run], registry: Registry) -> list[Item]:
    """Every item of any run, in the first run's order, with each model's output."""
    dataset_id = _dataset_parent(runs[0].evaluation)
    dataset = registry.find_id(dataset_id) if dataset_id else None
    details = dataset_items(dataset, registry) if dataset is not None else {}
    keys = list(dict.fromkeys(k for run in runs for k in run.rows))
    items = []
    for key in keys:
        first = next(run.rows[key] for run in runs if key in run.rows)
        prompt, reference, subject = details.get(key, ("", "", ""))
        gold = str(first.get("gold", ""))
        items.append(Item(key, str(first.get("subject") or subject or "all"), prompt, reference or gold, gold,
                          [_output(run.rows[key], run.metric) if key in run.rows else None for run in runs]))
    return items


# ----------------------------------------------------------------------------------------- filters and slices


@dataclass
class Filters:
    """The view's query parameters: subject; correct = all | none | EVAL_ID (that model right) | -EVAL_ID (that
    model wrong); disagree: only items where the models disagree; offset: the first item shown."""

    subject: str = ""
    correct: str = ""
    disagree: bool = False
    offset: int = 0

    def keeps(self, item: Item, runs: list[Run]) -> bool:
        if self.subject and item.subject != self.subject:
            return False
        if self.disagree and not item.disagree:
            return False
        return _correct_matches(self.correct, item, runs)

    def query(self, evals: list[Artifact], **changes: Any) -> str:
        values = {"subject": self.subject, "correct": self.correct, "disagree": self.disagree,
                  "offset": self.offset, **changes}
        params = [("eval", e.id) for e in evals] + [(k, "1" if v is True else str(v)) for k, v in values.items()
                                                    if v not in ("", False, 0, None)]
        return "/compare?" + urlencode(params)


def _correct_matches(wanted: str, item: Item, runs: list[Run]) -> bool:
    marks = [o.correct if o is not None else None for o in item.outputs]
    if not wanted:
        return True
    if wanted in ("all", "none"):
        return all(m is (wanted == "all") for m in marks)
    negate = wanted.startswith("-")
    eval_id = wanted[1:] if negate else wanted
    for run, mark in zip(runs, marks, strict=True):
        if run.evaluation.id == eval_id:
            return mark is (not negate)
    return True  # not one of the compared evals: no filter


@dataclass
class Cell:
    right: int
    scored: int

    @property
    def value(self) -> float | None:
        return self.right / self.scored if self.scored else None


@dataclass
class Slice:
    name: str
    n: int
    cells: list[Cell]


def slices(items: list[Item], runs: list[Run]) -> list[Slice]:
    """Accuracy per subject and model (over all items, not only those a filter shows), then over everything."""
    def slice_of(name: str, chosen: list[Item]) -> Slice:
        cells = []
        for index in range(len(runs)):
            marks = [i.outputs[index].correct for i in chosen if i.outputs[index] is not None]
            scored = [m for m in marks if m is not None]
            cells.append(Cell(sum(scored), len(scored)))
        return Slice(name, len(chosen), cells)

    subjects = sorted({i.subject for i in items})
    rows = [slice_of(s, [i for i in items if i.subject == s]) for s in subjects] if len(subjects) > 1 else []
    return [*rows, slice_of("all", items)]


# ----------------------------------------------------------------------------------------- the page


@dataclass
class Comparison:
    data: str
    runs: list[Run]
    items: list[Item]  # those the filters keep, this page only
    matching: int
    total: int
    slices: list[Slice]
    subjects: list[str]
    filters: Filters
    previous_url: str | None
    next_url: str | None


def compare(evals: list[Artifact], registry: Registry, filters: Filters) -> Comparison:
    """The comparison of ``evals`` (two or more, of one dataset) as the page shows it."""
    data = check_one_group(evals, registry)
    runs = [load_run(e, registry) for e in evals]
    items = build_items(runs, registry)
    kept = [i for i in items if filters.keeps(i, runs)]
    start = filters.offset if 0 <= filters.offset < len(kept) else 0
    end = start + PAGE_SIZE
    previous_url = filters.query(evals, offset=max(start - PAGE_SIZE, 0)) if start > 0 else None
    next_url = filters.query(evals, offset=end) if end < len(kept) else None
    return Comparison(data, runs, kept[start:end], len(kept), len(items), slices(items, runs),
                      sorted({i.subject for i in items}), filters, previous_url, next_url)


def _selection(registry: Registry, eval_refs: list[str], models: list[str], data: str) -> list[Artifact]:
    if models:
        if not data:
            raise SelectionError("say which evaluation to compare the models on: ?models=A,B&data=DATASET")
        return evals_for_models(registry, models, data)
    return resolve_evals(registry, eval_refs)


@router.get("/compare")
def compare_page(request: Request, eval_refs: Annotated[list[str] | None, Query(alias="eval")] = None,
                 models: Annotated[list[str] | None, Query()] = None, data: str = "", subject: str = "",
                 correct: str = "", disagree: bool = False, offset: int = 0,
                 user: str = Depends(current_user)) -> Response:
    """With two or more evaluations of one dataset (``?eval=ID&eval=ID`` or ``?models=A,B&data=D``): the items
    side by side, filtered, with accuracy per slice. Without: the evaluations that can be compared, as a form."""
    registry = Registry(ui_state(request).home)
    groups = eval_groups(registry)
    try:
        evals = _selection(registry, _refs(eval_refs or []), _refs(models or []), data)
        if len(evals) < 2:
            return page(request, "compare.html", active="compare", groups=groups, comparison=None,
                        notice="Pick two or more evaluations of the same data." if evals else "")
        comparison = compare(evals, registry, Filters(subject, correct, disagree, offset))
    except NotFoundError as exc:
        return error_page(request, 404, "Nothing to compare", str(exc))
    except ArtifactCorruptError as exc:
        return error_page(request, 409, "A damaged evaluation", str(exc))
    except KaiyuanError as exc:
        return error_page(request, 400, "These cannot be compared", str(exc))
    return page(request, "compare.html", active="compare", groups=groups, comparison=comparison, notice="",
                evals=evals)
