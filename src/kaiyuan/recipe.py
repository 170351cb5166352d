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

from kaiyuan.config_cli import load_config
from kaiyuan.errors import KaiyuanError

REFERENCE = re.compile(r"^\$\{(?P<step>[A-Za-z_][\w-]*)\.(?P<output>\w+)\}$")


@dataclass
class StageSpec:
    config: type
    run: Callable[[Any], dict[str, str]]
    outputs: tuple[str, ...]


def _trained(stage: Any) -> Callable[[Any], dict[str, Any]]:
    """A recipe step for a training stage: its artifact, merged model (if any) and metrics."""

    def run(cfg: Any) -> dict[str, Any]:
        result = stage.run(cfg)
        return {"artifact": result.artifact.id, "merged": result.merged.id if result.merged else "",
                "metrics": result.metrics}

    return run


def _eval(cfg: Any) -> dict[str, str]:
    from kaiyuan.evaluate.generation import run_exact_match

    result = run_exact_match(cfg)
    return {"artifact": result.artifact.id, "metrics": {"exact_match": result.exact_match, "n": result.n}}


def _synthetic(cfg: Any) -> dict[str, str]:
    from kaiyuan.data.synthetic import run_synthetic

    return {name: artifact.id for name, artifact in run_synthetic(cfg).items()}


def _near_misses(cfg: Any) -> dict[str, Any]:
    from kaiyuan.data.near_misses import run_near_misses

    dataset, kept = run_near_misses(cfg)
    return {"pairs": dataset.id, "metrics": {"pairs": len(kept)}}


def _export(cfg: Any) -> dict[str, Any]:
    from kaiyuan.export.export_cli import run_export

    result = run_export(cfg)
    return {"artifact": result.artifact.id, "merged": result.merged.id if result.merged else "",
            "metrics": result.checks()}


def stages() -> dict[str, StageSpec]:
    from kaiyuan.data.near_misses import NearMissConfig
    from kaiyuan.data.synthetic import SyntheticConfig
    from kaiyuan.evaluate.generation import ExactMatchConfig
    from kaiyuan.export.export_cli import ExportConfig
    from kaiyuan.train.stages import TRAINING_STAGES

    return {
        "synthetic": StageSpec(SyntheticConfig, _synthetic, ("train", "heldout", "pairs")),
        "near_misses": StageSpec(NearMissConfig, _near_misses, ("pairs",)),
        **{stage.name: StageSpec(stage.config_class(), _trained(stage), stage.outputs) for stage in TRAINING_STAGES},
        "eval": StageSpec(ExactMatchConfig, _eval, ("artifact",)),
        "export": StageSpec(ExportConfig, _export, ("artifact", "merged")),
    }


@dataclass
class PlannedStage:
    id: str
    stage: str
    values: dict[str, Any]


def plan(recipe: dict[str, Any], source: str) -> list[PlannedStage]:
    """Check the whole recipe before anything runs."""
    known = stages()
    if not isinstance(recipe, dict) or not isinstance(recipe.get("stages"), list) or not recipe["stages"]:
        raise KaiyuanError(f"{source}: a recipe is a mapping with a non-empty 'stages' list")
    unknown_top = sorted(set(recipe) - {"name", "description", "stages"})
    if unknown_top:
        raise KaiyuanError(f"{source}: unknown key(s) {', '.join(unknown_top)}; expected name, description, stages")
    planned: list[PlannedStage] = []
    outputs: dict[str, tuple[str, ...]] = {}
    for index, entry in enumerate(recipe["stages"], start=1):
        where = f"{source}: stages[{index}]"
        if not isinstance(entry, dict) or "stage" not in entry:
            raise KaiyuanError(f"{where}: each stage needs a 'stage' key ({', '.join(known)})")
        values = dict(entry)
        kind = values.pop("stage")
        step_id = str(values.pop("id", f"{kind}{index}"))
        if kind not in known:
            raise KaiyuanError(f"{where}: unknown stage {kind!r}; expected one of {', '.join(known)}")
        if step_id in outputs:
            raise KaiyuanError(f"{where}: id {step_id!r} is used twice")
        for key, value in values.items():
            match = REFERENCE.match(value) if isinstance(value, str) else None
            if isinstance(value, str) and value.startswith("${") and not match:
                raise KaiyuanError(f"{where}: {key}: malformed reference {value!r}; write ${{ID.OUTPUT}}")
            if match:
                if match["step"] not in outputs:
                    raise KaiyuanError(f"{where}: {key}: {value} refers to no earlier stage")
                if match["output"] not in outputs[match["step"]]:
                    raise KaiyuanError(f"{where}: {key}: stage {match['step']!r} has no output {match['output']!r}; "
                                       f"it has {', '.join(outputs[match['step']])}")
        load_config(known[kind].config, values, f"{where} ({kind})")
        outputs[step_id] = known[kind].outputs
        planned.append(PlannedStage(step_id, kind, values))
    return planned


def _cache_file(stage: str, values: dict[str, Any]) -> Path:
    import hashlib
    import json

    from kaiyuan.home import kaiyuan_home

    digest = hashlib.sha256(json.dumps([stage, values], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return kaiyuan_home() / "runs" / "recipe-cache" / f"{stage}-{digest}.json"


def _cached(stage: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """A finished stage with the same resolved config whose artifacts are all still registered."""
    import json

    from kaiyuan.hub.registry import Registry

    path = _cache_file(stage, values)
    if not path.is_file():
        return None
    outputs = json.loads(path.read_text())
    registry = Registry()
    ids = [v for k, v in outputs.items() if k != "metrics" and isinstance(v, str) and v]
    return outputs if all(registry.find(i) is not None for i in ids) else None


def run_recipe(path: Path, on_stage: Callable[[int, int, PlannedStage], None] | None = None,
               use_cache: bool = True) -> dict[str, Any]:
    """Run every stage; a stage whose resolved config already ran to completion is reused (stages are
    deterministic), so re-running a recipe after a failure continues where it stopped."""
    import json

    import yaml

    from kaiyuan.hub.manifest import atomic_write_json

    recipe = yaml.safe_load(Path(path).read_text())
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
        outputs = known[step.stage].run(load_config(known[step.stage].config, values, step.id))
        atomic_write_json(_cache_file(step.stage, values), json.loads(json.dumps(outputs, default=str)))
        results[step.id] = outputs
    return {"recipe": str(path), "name": recipe.get("name"), "stages": results}
