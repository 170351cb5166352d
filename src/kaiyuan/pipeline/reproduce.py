"""``kaiyuan reproduce MODEL``: re-run the recorded pipeline in a fresh KAIYUAN_HOME and compare hashes.

The model's lineage (its parents, their parents, …) is a DAG of registered artifacts. Each one is, in
dependency order, either

* **re-made** by the stage that produced it, from what its manifest records — ``create-tiny`` (config
  ``template`` + ``seed``), ``data synthetic`` (config ``task``, ``n_train``, ``n_heldout``, ``split`` +
  ``seed``), ``train <stage>`` (the resolved stage config; references to models and data are replaced by
  the re-made parents' ids) and merges (``kaiyuan export --to merged`` or a training stage's ``--merge``: the
  adapter parent) — looked up by the manifest's ``stage`` (older manifests: by their ``source``) — or
* **copied in as an input** when it came from outside (a hub model, a local directory, a GGUF file, a data
  file): its files must still match the sha256 its manifest records.

Then every file of the re-made artifact is compared with the original's: the sha256 recorded in the
original manifest, the original file as it is on disk now, and the reproduced file. Ids are content
hashes (kind, files, parents), so an exact reproduction also gets the original's id.

Two registries are open at once: the original's and the fresh home's (``Registry(home)``); every stage is run
with ``registry=`` the fresh one, and KAIYUAN_HOME (``os.environ``) is never changed. (Training stages still
keep their run folders — checkpoints, completion records — under KAIYUAN_HOME's ``runs/``: :func:`kaiyuan.home.run_dir`
takes no registry yet.)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kaiyuan.config import load_config
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.errors import KaiyuanError
from kaiyuan.export.merge import merge_adapter
from kaiyuan.hub.manifest import hash_tree, kaiyuan_git_commit, library_versions, read_manifest
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import create_tiny_llama
from kaiyuan.pipeline.stages import STAGES, TRAINING_STAGES
from kaiyuan.train.launch import launch

IDENTICAL, DIFFERS, INPUT, CANNOT = "identical", "differs", "input", "cannot reproduce"
# A manifest's ``stage`` for what no entry of STAGES makes: kaiyuan.models.create_tiny_llama, export.merge_adapter.
TINY_STAGE, MERGE_STAGE = "create_tiny", "merge"
TINY_COMMAND = "kaiyuan models create-tiny"
MERGE_COMMAND = "kaiyuan export --to merged"  # or a training stage's --merge: the same merge_adapter
# Manifests from before the ``stage`` field: recognised by their source
TINY_SOURCE = "kaiyuan.tiny (random weights)"  # kaiyuan.models.create_tiny_llama
SYNTHETIC_SOURCE = "kaiyuan.data.synthetic:"  # kaiyuan.data.synthetic.run_synthetic
TRAINED_SOURCE = "kaiyuan train "  # kaiyuan.train.common.register_trained, ppo, reward
# Config fields of the training stages that name another artifact, and the parent relation that holds its id.
REFERENCE_RELATIONS = {"model": ("adapter", "finetune"), "data": ("dataset",), "reward_model": ("reward_model",)}


class CannotReproduce(KaiyuanError):
    """What a manifest lacks (or records) that keeps its stage from being re-run."""

    def __init__(self, reason: str, missing: list[str] | None = None) -> None:
        super().__init__(reason)
        self.missing = missing or []


@dataclass
class ReproduceConfig:
    """``kaiyuan reproduce``'s flags (and ``--config`` keys); :func:`reproduce` takes them as arguments."""

    model: str = field(metadata={"help": "Artifact id or name whose lineage to re-run.", "argument": True})
    home: str | None = field(default=None, metadata={
        "help": "Fresh KAIYUAN_HOME to reproduce into (new or empty; default: a temporary directory, removed "
                "afterwards)."})


@dataclass(frozen=True)
class FileDifference:
    path: str
    recorded: str | None  # sha256 in the original manifest
    original: str | None  # sha256 of the original file on disk now
    reproduced: str | None  # sha256 of the reproduced file

    @property
    def problem(self) -> str:
        if self.reproduced is None:
            return "not reproduced"
        if self.recorded is None:
            return "only in the reproduction"
        if self.original != self.recorded:
            return "original changed since it was registered" if self.original else "original file missing"
        return "reproduced file differs"


@dataclass
class ArtifactReport:
    id: str
    kind: str | None
    name: str | None
    how: str
    status: str = CANNOT
    reproduced_id: str | None = None
    differences: list[FileDifference] = field(default_factory=list)
    reason: str | None = None
    missing: list[str] = field(default_factory=list)
    library_changes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["differences"] = [{**asdict(d), "problem": d.problem} for d in self.differences]
        return data


@dataclass
class ReproductionReport:
    target: str
    home: str | None
    artifacts: list[ArtifactReport]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(a.status in (IDENTICAL, INPUT) for a in self.artifacts)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "ok": self.ok, "home": self.home, "seconds": round(self.seconds, 1),
                "artifacts": [a.to_dict() for a in self.artifacts]}


def ancestry(registry: Registry, artifact_id: str) -> list[str]:
    """The artifact and all its ancestors, every parent before its children."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(current: str) -> None:
        if current in seen:
            return
        seen.add(current)
        for parent_id, _ in registry.parents(current):
            visit(parent_id)
        order.append(current)

    visit(artifact_id)
    return order


def compare_files(recorded: dict[str, str], original: dict[str, str], reproduced: dict[str, str]
                  ) -> list[FileDifference]:
    names = sorted(set(recorded) | set(original) | set(reproduced))
    return [FileDifference(n, recorded.get(n), original.get(n), reproduced.get(n)) for n in names
            if not recorded.get(n) == original.get(n) == reproduced.get(n)]


def reproduce(ref: str, home: Path | None = None, registry: Registry | None = None,
              on_artifact: Callable[[ArtifactReport], None] | None = None) -> ReproductionReport:
    """Re-make ``ref`` and its lineage in ``home`` (default: a temporary directory, removed afterwards)."""
    registry = registry or Registry()
    target = registry.get(ref)
    if home is None:
        with tempfile.TemporaryDirectory(prefix="kaiyuan-reproduce-") as tmp:
            report = Reproduction(registry, on_artifact).run(target, Path(tmp))
        report.home = None
        return report
    home = home.expanduser().resolve()
    if home == registry.home.resolve():
        raise KaiyuanError(f"{home} is the home being checked; reproduce into a new or empty directory")
    if home.exists() and (not home.is_dir() or any(home.iterdir())):
        raise KaiyuanError(f"{home}: not an empty directory; reproduce into a new or empty directory")
    home.mkdir(parents=True, exist_ok=True)
    return Reproduction(registry, on_artifact).run(target, home)


class Reproduction:
    """One reproduction: original artifacts (``original``, their registry) → the ones re-made (or copied) in the
    fresh home (``fresh``, its registry, open from :meth:`run` on)."""

    def __init__(self, registry: Registry, on_artifact: Callable[[ArtifactReport], None] | None = None) -> None:
        self.original = registry
        self.fresh: Registry | None = None
        self.on_artifact = on_artifact
        self.made: dict[str, Artifact] = {}  # original id → artifact in the fresh home
        self.merged_by_adapter: dict[str, Artifact] = {}  # re-made adapter id → model merged by its training run
        self.synthetic_runs: dict[tuple, dict[str, Artifact]] = {}
        self.environment: dict[str, str] | None = None

    def run(self, target: Artifact, home: Path) -> ReproductionReport:
        started = time.time()
        order = ancestry(self.original, target.id)
        reports = []
        self.fresh = Registry(home)
        for artifact_id in order:
            report = self.reproduce_one(artifact_id)
            reports.append(report)
            if self.on_artifact:
                self.on_artifact(report)
        return ReproductionReport(target.id, str(home), reports, time.time() - started)

    def reproduce_one(self, artifact_id: str) -> ArtifactReport:
        original = self.original.find(artifact_id)
        if original is None or original.id != artifact_id:
            return ArtifactReport(artifact_id, None, None, "–", reason="not in the registry")
        how, remake = recipe_of(original.manifest)
        report = ArtifactReport(original.id, original.kind, original.name, how)
        absent = [p["id"] for p in original.manifest.get("parents") or [] if p["id"] not in self.made]
        if absent:
            report.reason = f"needs {', '.join(absent)}, which could not be reproduced or copied"
            return report
        if remake is None:
            stage = original.manifest.get("stage")
            why = (f"kaiyuan reproduce does not re-run the {stage} stage" if stage else
                   f"no kaiyuan stage re-makes source {original.manifest.get('source')!r}")
            return self._copy_input(original, report, reason=None if not original.manifest.get("parents") else why)
        try:
            made = remake(self, original)
        except CannotReproduce as exc:
            report.missing = exc.missing
            return self._copy_input(original, report, reason=str(exc))
        except Exception as exc:  # a failing re-run is a finding of the reproduction, not a crash of it
            report.reason = f"re-running failed: {type(exc).__name__}: {exc}"
            return report
        self.made[original.id] = made
        report.reproduced_id = made.id
        report.library_changes = self.changes_since(original.manifest)
        report.differences = compare_files(original.manifest.get("files", {}), _on_disk(original),
                                           made.manifest.get("files", {}))
        report.status = IDENTICAL if not report.differences and made.id == original.id else DIFFERS
        if report.status == DIFFERS and not report.differences:
            report.reason = "same files, but made from different parents (see the artifacts above)"
        return report

    def _copy_input(self, original: Artifact, report: ArtifactReport, reason: str | None) -> ArtifactReport:
        """Bring an artifact that is not re-made into the fresh home, if its files still match its manifest."""
        recorded = original.manifest.get("files", {})
        on_disk = _on_disk(original)
        report.differences = compare_files(recorded, on_disk, on_disk)
        report.reason = reason
        if report.differences:
            report.status = DIFFERS if reason is None else CANNOT
            report.reason = "; ".join(filter(None, [reason, "its files no longer match its manifest: not copied"]))
            return report

        destination = self.registry.artifacts_dir() / original.id
        shutil.copytree(original.path, destination)
        self.made[original.id] = self.registry.add(read_manifest(destination), destination)
        report.reproduced_id = original.id
        report.status = INPUT if reason is None else CANNOT
        report.how = "input: copied, sha256 verified" if reason is None else f"{report.how}; copied, sha256 verified"
        return report

    def changes_since(self, manifest: dict[str, Any]) -> dict[str, str]:
        """Libraries (and the kaiyuan commit) that differ from those the artifact was made with."""
        if self.environment is None:
            self.environment = {**library_versions(), "kaiyuan": kaiyuan_git_commit() or "unknown"}
        recorded = {**(manifest.get("library_versions") or {}), "kaiyuan": manifest.get("kaiyuan_git_commit")}
        return {name: f"{version} → {self.environment.get(name, 'not installed')}" for name, version in recorded.items()
                if version and self.environment.get(name) != version}

    def new_id(self, original_id: str) -> str:
        return self.made[original_id].id

    @property
    def registry(self) -> Registry:
        """The fresh home's registry: where everything re-made or copied is written."""
        if self.fresh is None:
            raise KaiyuanError("the reproduction has not started: no fresh home yet")
        return self.fresh


def _on_disk(artifact: Artifact) -> dict[str, str]:
    return hash_tree(artifact.path) if artifact.path.is_dir() else {}




# ------------------------------------------------------------------------ how each kind of artifact is re-made


Remake = Callable[[Reproduction, Artifact], Artifact]


def recipe_of(manifest: dict[str, Any]) -> tuple[str, Remake | None]:
    """The command that made an artifact and the function that re-makes it (None: an input from outside, or a
    stage reproduce does not re-run). By the manifest's ``stage`` (in :data:`STAGES`, or create-tiny / merge);
    a manifest written before that field existed is recognised by its ``source``."""

    recorded = manifest.get("stage")
    if recorded:
        if recorded == TINY_STAGE:
            return TINY_COMMAND, remake_tiny
        if recorded == MERGE_STAGE:
            return MERGE_COMMAND, remake_merge
        stage_entry = STAGES.get(recorded)
        if stage_entry is None:
            return f"stage {recorded!r}", remake_unknown_stage
        if stage_entry in TRAINING_STAGES:
            return f"kaiyuan {stage_entry.command}", remake_trained
        return f"kaiyuan {stage_entry.command}", REMAKES.get(recorded)
    return _recipe_from_source(manifest)


def _recipe_from_source(manifest: dict[str, Any]) -> tuple[str, Remake | None]:
    """``recipe_of`` for manifests without a ``stage``: what their ``source`` (and ``config.stage``) say."""
    source = manifest.get("source") or ""
    stage = (manifest.get("config") or {}).get("stage")
    if source == TINY_SOURCE:
        return TINY_COMMAND, remake_tiny
    if source.startswith(SYNTHETIC_SOURCE):
        return "kaiyuan data synthetic", remake_synthetic
    if stage == MERGE_STAGE:
        return MERGE_COMMAND, remake_merge
    if source.startswith(TRAINED_SOURCE):
        known = {s.name for s in TRAINING_STAGES}
        return f"kaiyuan train {stage or '?'}", remake_trained if stage in known else remake_unknown_stage
    return (f"source {source!r}", None)


def _require(manifest: dict[str, Any], config_keys: tuple[str, ...], seed: bool = True) -> dict[str, Any]:
    config = manifest.get("config") or {}
    missing = [f"config.{k}" for k in config_keys if config.get(k) is None]
    if seed and manifest.get("seed") is None:
        missing.append("seed")
    if missing:
        raise CannotReproduce(f"the manifest does not record {', '.join(missing)}", missing)
    return config


def remake_tiny(session: Reproduction, original: Artifact) -> Artifact:

    config = _require(original.manifest, ("template",))
    made_shape = {"hidden_size": 64, "num_layers": 2}
    recorded_shape = {k: config.get(k, v) for k, v in made_shape.items()}
    if recorded_shape != made_shape:
        raise CannotReproduce(f"create-tiny makes {made_shape}; the manifest records {recorded_shape}")
    return create_tiny_llama(template=config["template"], seed=original.manifest["seed"], registry=session.registry)


def remake_synthetic(session: Reproduction, original: Artifact) -> Artifact:

    config = _require(original.manifest, ("task", "n_train", "n_heldout", "split"))
    split, seed = config["split"], original.manifest["seed"]
    if split == "pairs":  # run_synthetic seeds the pairs with seed + 1
        _require(original.manifest, ("n_pairs", "pairs_style"))
        cfg = SyntheticConfig(task=config["task"], n_train=config["n_train"], n_heldout=config["n_heldout"],
                              n_pairs=config["n_pairs"], pairs_style=config["pairs_style"], seed=seed - 1)
    else:
        cfg = SyntheticConfig(task=config["task"], n_train=config["n_train"], n_heldout=config["n_heldout"],
                              seed=seed)
    key = tuple(asdict(cfg).values())
    if key not in session.synthetic_runs:
        session.synthetic_runs[key] = run_synthetic(cfg, registry=session.registry)
    if split not in session.synthetic_runs[key]:
        raise CannotReproduce(f"config.split {split!r} is not a split run_synthetic makes")
    return session.synthetic_runs[key][split]


def remake_trained(session: Reproduction, original: Artifact) -> Artifact:
    """``kaiyuan train <stage>`` with the recorded config; model/data references → the re-made parents."""

    manifest = original.manifest
    values = {k: v for k, v in (manifest.get("config") or {}).items() if k != "stage"}
    stage_name = manifest.get("stage") or (manifest.get("config") or {}).get("stage")
    stage = next((s for s in TRAINING_STAGES if s.name == stage_name), None)
    if stage is None:
        return remake_unknown_stage(session, original)
    config_class = stage.config
    required = [f.name for f in fields(config_class) if f.name in REFERENCE_RELATIONS and f.name not in values]
    if required:
        raise CannotReproduce(f"the manifest does not record {', '.join(f'config.{n}' for n in required)}",
                              [f"config.{n}" for n in required])
    parents = manifest.get("parents") or []
    for key, relations in REFERENCE_RELATIONS.items():
        if values.get(key) is None:
            continue
        parent = next((p["id"] for p in parents if p["relation"] in relations), None)
        if parent is None:
            raise CannotReproduce(f"config.{key} is {values[key]!r} but the manifest has no parent with relation "
                                  f"{' or '.join(relations)}", [f"parents[relation={relations[0]}]"])
        values[key] = session.new_id(parent)
    if "resume" in values:
        values["resume"] = False
    try:
        cfg = load_config(config_class, values, f"{original.id}: manifest config")
    except KaiyuanError as exc:
        raise CannotReproduce(str(exc)) from None
    if getattr(cfg, "nproc", 1) > 1:

        summary = launch(cfg, stage.name, session.registry)
        artifact = session.registry.get(summary["artifact_id"])
        if summary.get("merged_model_id"):
            session.merged_by_adapter[artifact.id] = session.registry.get(summary["merged_model_id"])
        return artifact
    result = stage.run(cfg, registry=session.registry)
    if result.merged is not None:
        session.merged_by_adapter[result.artifact.id] = result.merged
    return result.artifact


def remake_unknown_stage(session: Reproduction, original: Artifact) -> Artifact:
    if original.manifest.get("stage"):
        raise CannotReproduce(f"stage {original.manifest['stage']!r} is not a stage of this kaiyuan")
    stage = (original.manifest.get("config") or {}).get("stage")
    if stage is None:
        raise CannotReproduce("the manifest does not record config.stage", ["config.stage"])
    raise CannotReproduce(f"config.stage {stage!r} is not a training stage of this kaiyuan")


def remake_merge(session: Reproduction, original: Artifact) -> Artifact:
    """The training run that merged it already did (merge: true), or ``merge_adapter`` on the re-made adapter."""

    adapter = next((p["id"] for p in original.manifest.get("parents") or [] if p["relation"] == "merge"), None)
    if adapter is None:
        raise CannotReproduce("the manifest has no parent with relation merge (the adapter)",
                              ["parents[relation=merge]"])
    made_adapter = session.made[adapter]
    if made_adapter.id in session.merged_by_adapter:
        return session.merged_by_adapter[made_adapter.id]
    return merge_adapter(made_adapter, session.registry, name=original.name)


# the stages of STAGES (other than the training stages) that reproduce re-runs; the others' artifacts are copied
REMAKES: dict[str, Remake] = {"synthetic": remake_synthetic}
