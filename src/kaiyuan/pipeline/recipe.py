"""``kaiyuan run RECIPE.yaml``: stages in order, each output feeding the next by registry reference.

```yaml
name: dpo-on-dates
stages:
  - id: data
    stage: synthetic
    n_pairs: 200
  - id: sft
    stage: sft
    model: smollm2-135m-instruct
    data: ${data.train}
    merge: true
  - stage: dpo
    model: ${sft.merged}
    data: ${data.pairs}
```

``${ID.OUTPUT}`` is replaced by the id of the artifact a previous stage produced. Every stage's config
is checked (keys, types, references) before the first one runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan.config import config_problems, did_you_mean, load_config
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home, registry_path
from kaiyuan.hub.manifest import atomic_write_json
from kaiyuan.hub.registry import Registry
from kaiyuan.pipeline.stages import STAGES, Stage

REFERENCE = re.compile(r"^\$\{(?P<step>[A-Za-z_][\w-]*)\.(?P<output>\w+)\}$")


class RecipeError(KaiyuanError):
    """Every problem found in a recipe, one a line (``problems``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


MAX_RECIPE_BYTES = 1 << 20


def load_recipe(path: str | Path) -> Any:
    """The parsed YAML of a recipe file, or a :class:`KaiyuanError` naming the file (and line, for YAML syntax)."""
    import yaml

    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise KaiyuanError(f"{path}: no such recipe file") from None
    except IsADirectoryError:
        raise KaiyuanError(f"{path}: is a directory, not a recipe file") from None
    except OSError as exc:
        raise KaiyuanError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise KaiyuanError(f"{path}: larger than 1 MiB; a recipe is a short YAML file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KaiyuanError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        column = f" (column {mark.column + 1})" if mark else ""
        problem = ": ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise KaiyuanError(f"{where}: invalid YAML: {problem}{column}") from None
    except yaml.YAMLError as exc:
        raise KaiyuanError(f"{path}: invalid YAML: {exc}") from None
    except RecursionError:
        raise KaiyuanError(f"{path}: invalid YAML: nested too deeply") from None


def stages() -> dict[str, Stage]:
    """The stages a recipe can name: the stage table."""
    return STAGES


@dataclass
class PlannedStage:
    id: str
    stage: str
    values: dict[str, Any]


TOP_KEYS = ("name", "description", "stages")
DATA_KEYS = ("data",)  # config keys that name a dataset: a registered id or name, or a file


def _registry() -> Any:
    """The registry, when there is one (a check creates nothing)."""
    import sqlite3


    try:
        if not registry_path().is_file():
            return None

        return Registry()
    except (OSError, sqlite3.Error):
        return None


def _dataset_problem(value: str, registry: Any, registered_later: set[str]) -> str | None:
    """Why ``value`` cannot be resolved as a dataset right now (None: it can)."""
    import sqlite3

    if value in registered_later:
        return None
    try:
        found = registry.find(value) if registry is not None else None
    except (sqlite3.Error, ValueError):
        found = None
    if found is not None:
        return None if found.kind == "dataset" else f"{value!r} is a {found.kind}, not a dataset"
    try:
        path = Path(value).expanduser()
        if path.is_file():
            return None
        where = path.resolve()
    except (OSError, ValueError, RuntimeError):
        where = value
    return f"cannot resolve dataset {value!r}: not a registry id or name, nor a file (no {where})"


def _registers(kind: str, values: dict[str, Any]) -> set[str]:
    """Names of the datasets a stage registers (so later stages may name them)."""
    names = {values["name"]} if isinstance(values.get("name"), str) else set()
    if kind == "synthetic":
        task = values.get("task", "dates")
        names |= {f"{task}-{split}" for split in ("train", "heldout", "pairs")}
    return names


def plan(recipe: Any, source: str) -> list[PlannedStage]:
    """Check the whole recipe before anything runs: every stage's keys and types, every ``${ID.OUTPUT}``
    reference (to an earlier stage, an output it has and will produce) and every dataset that is named rather
    than referenced. Raises :class:`RecipeError` with all the problems found, not just the first."""
    known = stages()
    if not isinstance(recipe, dict):
        raise RecipeError([f"{source}: a recipe is a mapping with a non-empty 'stages' list"])
    problems: list[str] = []
    unknown_top = sorted((k for k in recipe if k not in TOP_KEYS), key=str)
    if unknown_top:
        hint = did_you_mean(unknown_top[0], TOP_KEYS) if len(unknown_top) == 1 else ""
        problems.append(f"{source}: unknown key(s) {', '.join(map(str, unknown_top))}; expected name, description, "
                        f"stages{hint}")
    entries = recipe.get("stages")
    if not isinstance(entries, list) or not entries:
        problems.append(f"{source}: a recipe is a mapping with a non-empty 'stages' list")
        raise RecipeError(problems)
    ids_later = {}
    for index, entry in enumerate(entries, start=1):
        if isinstance(entry, dict) and "id" in entry:
            ids_later.setdefault(str(entry["id"]), index)
    registry = _registry()
    planned: list[PlannedStage] = []
    outputs: dict[str, tuple[tuple[str, ...], dict[str, str]] | None] = {}  # None: a stage with problems
    registered: set[str] = set()
    for index, entry in enumerate(entries, start=1):
        where = f"{source}: stages[{index}]"
        if not isinstance(entry, dict) or "stage" not in entry:
            close = [k for k in entry if did_you_mean(k, ["stage"])] if isinstance(entry, dict) else []
            hint = f"; did you mean 'stage' for {close[0]!r}?" if close else ""
            problems.append(f"{where}: each stage needs a 'stage' key ({', '.join(known)}){hint}")
            if isinstance(entry, dict) and "id" in entry:
                outputs.setdefault(str(entry["id"]), None)
            continue
        values = dict(entry)
        kind = values.pop("stage")
        step_id = str(values.pop("id", f"{kind}{index}"))
        if step_id in outputs:
            problems.append(f"{where}: id {step_id!r} is used twice")
        known_kind = isinstance(kind, str) and kind in known
        if not known_kind:
            problems.append(f"{where}: unknown stage {kind!r}; expected one of {', '.join(known)}"
                            + (did_you_mean(kind, known) if isinstance(kind, str) else ""))
        for key, value in values.items():
            problem = _reference_problem(key, value, outputs, ids_later, index)
            if problem:
                problems.append(f"{where}: {problem}")
        if not known_kind:
            outputs.setdefault(step_id, None)
            continue
        spec = known[kind]
        found = config_problems(spec.config, values, f"{where} ({kind})")
        problems += found
        for key in DATA_KEYS:
            value = values.get(key)
            if isinstance(value, str) and not value.lstrip().startswith("${"):
                problem = _dataset_problem(value, registry, registered)
                if problem:
                    problems.append(f"{where} ({kind}): {key}: {problem}")
        unproduced = spec.unproduced(spec.config, values) if spec.unproduced else {}
        outputs.setdefault(step_id, (spec.outputs, unproduced))
        registered |= _registers(kind, values)
        planned.append(PlannedStage(step_id, kind, values))
    if problems:
        raise RecipeError(problems)
    return planned


def _reference_problem(key: Any, value: Any, outputs: dict[str, Any], ids_later: dict[str, int],
                       index: int) -> str | None:
    if not isinstance(value, str) or not value.lstrip().startswith("${"):
        return None
    match = REFERENCE.match(value)
    if not match:
        return f"{key}: malformed reference {value!r}; write ${{ID.OUTPUT}}"
    step, output = match["step"], match["output"]
    if step not in outputs:
        if ids_later.get(step, 0) >= index:
            return (f"{key}: {value} refers to stage {step!r}, which is not an earlier stage "
                    f"(stages[{ids_later[step]}]); a stage can only use what the stages before it produced")
        return f"{key}: {value} refers to no earlier stage" + did_you_mean(step, outputs)
    if outputs[step] is None:  # that stage's own problems are reported already
        return None
    has, unproduced = outputs[step]
    if output not in has:
        return f"{key}: stage {step!r} has no output {output!r}; it has {', '.join(has)}" + did_you_mean(output, has)
    if output in unproduced:
        return f"{key}: {value} is never produced: stage {step!r} makes no {output!r} output because " \
               f"{unproduced[output]}"
    return None


def _cache_file(stage: str, values: dict[str, Any]) -> Path:
    import hashlib
    import json


    digest = hashlib.sha256(json.dumps([stage, values], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return kaiyuan_home() / "runs" / "recipe-cache" / f"{stage}-{digest}.json"


def _cached(stage: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """A finished stage with the same resolved config whose artifacts are all still registered."""
    import json


    path = _cache_file(stage, values)
    if not path.is_file():
        return None
    try:
        outputs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # an unreadable cache entry: run the stage again
        return None
    if not isinstance(outputs, dict):
        return None
    registry = Registry()
    ids = [v for k, v in outputs.items() if k != "metrics" and isinstance(v, str) and v]
    return outputs if all(registry.find(i) is not None for i in ids) else None


def run_recipe(path: Path, on_stage: Callable[[int, int, PlannedStage], None] | None = None,
               use_cache: bool = True) -> dict[str, Any]:
    """Run every stage; a stage whose resolved config already ran to completion is reused (stages are
    deterministic), so re-running a recipe after a failure continues where it stopped."""
    import json


    recipe = load_recipe(path)
    planned = plan(recipe, str(path))
    known = stages()
    results: dict[str, dict[str, Any]] = {}
    for number, step in enumerate(planned, start=1):
        if on_stage:
            on_stage(number, len(planned), step)
        values = {}
        for key, value in step.values.items():
            match = REFERENCE.match(value) if isinstance(value, str) else None
            if match:
                value = results[match["step"]].get(match["output"])
                if not value:
                    raise KaiyuanError(f"{path}: {step.id}: {key}: {step.values[key]} produced nothing "
                                       "(e.g. 'merged' needs merge: true)")
            values[key] = value
        cached = _cached(step.stage, values) if use_cache else None
        if cached is not None:
            results[step.id] = {**cached, "cached": True}
            continue
        stage = known[step.stage]
        outputs = stage.outputs_of(stage.run(load_config(stage.config, values, step.id)))
        atomic_write_json(_cache_file(step.stage, values), json.loads(json.dumps(outputs, default=str)))
        results[step.id] = outputs
    return {"recipe": str(path), "name": recipe.get("name"), "stages": results}
