"""How open is a model? Three readings, each with its evidence, computed from the manifests and artifact files:

* the **Model Openness Framework** (MOF) class — White et al., "The Model Openness Framework: Promoting
  Completeness and Openness for Reproducibility, Transparency, and Usability in Artificial Intelligence",
  LF AI & Data, arXiv:2403.13784 — 17 components in three cumulative classes, a component counting only when
  it is released under an open license;
* the 14-dimension **openness index** of Liesenfeld & Dingemanse, "Rethinking open source generative AI:
  open-washing and the EU AI Act" (FAccT 2024; the European Open Source AI Index): open 1, partial 0.5,
  closed 0;
* the **Open Source AI Definition** 1.0 (OSI): data information, code and parameters under OSI-approved terms.

Scope: the artifact and its recorded lineage (see :func:`kaiyuan.hub.licenses.lineage_inputs`). kaiyuan itself
is Apache-2.0, so training, inference, evaluation and preprocessing done by kaiyuan — at the version and git
commit in the manifests — is open code. Base weights imported from elsewhere are open inputs when their
license is; their own pretraining (data, code) is upstream and is only visible here when kaiyuan recorded it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import recorded_run_dir
from kaiyuan.hub.known_models import with_catalog
from kaiyuan.hub.licenses import (
    WEIGHT_RELATIONS,
    LicenseReport,
    LineageInput,
    license_properties,
    license_report,
    lineage_inputs,
)
from kaiyuan.hub.registry import Artifact, Registry

KAIYUAN_LICENSE = "Apache-2.0"  # pyproject.toml: license = "Apache-2.0"
LIBRARY_LICENSES = {"torch": "BSD-3-Clause", "transformers": "Apache-2.0", "peft": "Apache-2.0", "trl": "Apache-2.0",
                    "datasets": "Apache-2.0", "accelerate": "Apache-2.0", "safetensors": "Apache-2.0",
                    "tokenizers": "Apache-2.0", "gguf": "MIT"}
BENCHMARK_LICENSES = {"mmlu": "MIT", "gsm8k": "MIT", "lambada": "CC-BY-4.0", "ceval": "CC-BY-NC-SA-4.0",
                      "cmmlu": "CC-BY-NC-4.0"}
REPORT_FILE = re.compile(r"^(technical[_-]?report|tech[_-]?report)\.(md|pdf|tex|txt)$", re.IGNORECASE)
PAPER_FILE = re.compile(r"^(paper|research[_-]?paper|preprint)\.(md|pdf|tex)$", re.IGNORECASE)
CHECKPOINT_DIR = re.compile(r"^(checkpoint-\d+)/")
CARD = "README.md"


CARD_FILE = "README.md"
CARD_KIND = "card"
DOCUMENTED = "documented"  # relation from a card to the artifact it documents

@dataclass(frozen=True)
class MOFComponent:
    name: str
    mof_class: int  # 3 = Class III (Open Model), 2 = Class II (Open Tooling), 1 = Class I (Open Science)
    required: bool
    content: str  # code | data | document | weights: which licenses count as open


# The MOF's 17 components, their class and whether the class requires them: arXiv:2403.13784 (Table 2) as
# implemented by the Model Openness Tool (github.com/lfai/model_openness_tool, mof.settings.yml). The classes
# are cumulative: Class II needs every Class III component, Class I every Class II one — 6, 10 and 14
# required components. Optional components are reported but never decide a class.
MOF_COMPONENTS = (
    MOFComponent("Model architecture", 3, True, "code"),
    MOFComponent("Model parameters (Final)", 3, True, "weights"),
    MOFComponent("Technical report", 3, True, "document"),
    MOFComponent("Evaluation results", 3, True, "document"),
    MOFComponent("Model card", 3, True, "document"),
    MOFComponent("Data card", 3, True, "document"),
    MOFComponent("Sample model outputs", 3, False, "data"),
    MOFComponent("Training code", 2, True, "code"),
    MOFComponent("Inference code", 2, True, "code"),
    MOFComponent("Evaluation code", 2, True, "code"),
    MOFComponent("Evaluation data", 2, True, "data"),
    MOFComponent("Supporting libraries and tools", 2, False, "code"),
    MOFComponent("Research paper", 1, True, "document"),
    MOFComponent("Datasets", 1, True, "data"),
    MOFComponent("Data preprocessing code", 1, True, "code"),
    MOFComponent("Model parameters (Intermediate)", 1, True, "weights"),
    MOFComponent("Model metadata", 1, False, "data"),
)
CLASS_NAMES = {3: "Class III", 2: "Class II", 1: "Class I"}
INDEX_DIMENSIONS = (  # Liesenfeld & Dingemanse 2024: availability, documentation, access
    ("availability", "Open code"), ("availability", "LLM data"), ("availability", "LLM weights"),
    ("availability", "RL data"), ("availability", "RL weights"), ("availability", "License"),
    ("documentation", "Code"), ("documentation", "Architecture"), ("documentation", "Preprint"),
    ("documentation", "Paper"), ("documentation", "Modelcard"), ("documentation", "Datasheet"),
    ("access", "Package"), ("access", "API"),
)


@dataclass
class OpennessReport:
    model_id: str
    name: str
    kind: str
    license: str
    mof_class: str | None  # "Class I" | "Class II" | "Class III" | None
    mof_components: list[dict[str, Any]]
    progress: dict[str, dict[str, Any]]
    index: list[dict[str, Any]]
    index_score: float
    index_max: int
    osaid: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Check:
    present: bool
    open: bool
    license: str | None
    evidence: str


# ------------------------------------------------------------------------------------------- facts


def card_of(artifact: Artifact, registry: Registry | None = None, pending: Artifact | None = None
            ) -> Artifact | None:
    """The artifact that holds ``artifact``'s card: ``pending`` (a card about to be registered for it), else the
    newest card registered for it (relation ``documented``), else the artifact itself when README.md is among its
    own files (an imported Hub model), else None."""
    if pending is not None and {"id": artifact.id, "relation": DOCUMENTED} in pending.manifest.get("parents", []):
        return pending
    registry = registry or Registry()
    cards = registry.children(artifact.id, DOCUMENTED, CARD_KIND)
    if cards:
        return cards[-1]
    return artifact if CARD_FILE in (artifact.manifest.get("files") or {}) else None


def _files(artifact: Artifact) -> set[str]:
    return set(artifact.manifest.get("files") or {})


def _weights_files(artifact: Artifact) -> list[str]:
    return sorted(f for f in _files(artifact) if "/" not in f and f.endswith((".safetensors", ".gguf")))


def _upstream(artifact: Artifact) -> dict[str, Any] | None:
    """A catalog record's facts (a model or dataset known to kaiyuan's catalog, not in the registry), else None."""
    facts = artifact.manifest.get("catalog")
    return facts if isinstance(facts, dict) else None


def _data_recorded(artifact: Artifact, registry: Registry) -> bool:
    """A catalog base whose pretraining corpora the catalog records (its origin is then known, if not made here)."""
    return _upstream(artifact) is not None and any(
        (_upstream(p) or {}).get("role") == "pretraining" for p in
        (registry.find_id(parent) for parent, relation in registry.parents(artifact.id) if relation == "dataset")
        if p is not None)


def _weights_available(artifact: Artifact) -> bool:
    """Weights files in the artifact, or published on the Hub (a catalog model with Hugging Face ids)."""
    return bool(_weights_files(artifact)) or bool((_upstream(artifact) or {}).get("hub_ids"))


def _published(artifact: Artifact) -> str | None:
    """Where a catalog dataset is published (its source), when the catalog records it as published."""
    facts = _upstream(artifact)
    if facts is None or not facts.get("published", facts.get("role") == "tuning"):
        return None
    source = str(artifact.manifest.get("source") or "")
    return source if source.startswith("http") else None


def _card_ref(artifact: Artifact, f: _Facts) -> str:
    """Where an artifact's card is: its registered card artifact, or its own README.md."""
    if _upstream(artifact) is not None and _published(artifact):
        return f"{artifact.name}: its page {_published(artifact)}"
    card = card_of(artifact, f.registry, f.pending_card)
    if card is None or card.id == artifact.id:
        return f"{CARD} of {artifact.name}"
    return f"{artifact.name}: card {card.id} ({CARD})"


def _has_card(artifact: Artifact, f: _Facts) -> bool:
    """A README.md among the artifact's own files (an imported Hub model), or a card registered for it by
    ``kaiyuan card`` (kind card, relation documented); for a published dataset the catalog knows, its page."""
    if _upstream(artifact) is not None:
        return _published(artifact) is not None
    return card_of(artifact, f.registry, f.pending_card) is not None


def _training_stage(artifact: Artifact) -> str | None:
    """The kaiyuan training stage that made the artifact (``sft``, ``dpo``, ``pretrain`` …), if one did."""
    source = str(artifact.manifest.get("source") or "")
    if not source.startswith("kaiyuan train"):
        return None
    words = source.split()
    return str((artifact.manifest.get("config") or {}).get("stage") or (words[2] if len(words) > 2 else "train"))


def _of(item: LineageInput) -> Artifact:
    """The registered artifact of an input known to be in the registry."""
    assert item.artifact is not None
    return item.artifact


def _is_open(spdx: str | None, content: str) -> bool:
    props = license_properties(spdx)
    return (props.osi_approved or props.fsf_libre) if content == "code" else props.open_license


def _names(items: list[Artifact] | list[LineageInput]) -> str:
    return ", ".join(i.name for i in items)


@dataclass
class _Facts:
    """What the registry says about the model and its lineage, gathered once."""

    artifact: Artifact
    registry: Registry
    terms: LicenseReport
    inputs: list[LineageInput]
    chain: list[Artifact]  # the artifact and every input whose weights it contains
    paths: dict[str, list[str]]
    datasets: list[LineageInput]
    missing: list[LineageInput]
    trained: list[Artifact]
    evals: list[Artifact]
    exports: list[Artifact]
    roots: list[Artifact]
    imported: list[Artifact]
    pending_card: Artifact | None = None  # the card being written, counted as if registered

    @property
    def own(self) -> str:
        return self.terms.license

    def consumer_stage(self, item: LineageInput) -> str | None:
        consumer = next((a for a in self.chain if a.id == item.path[-2]), None) if len(item.path) > 1 else None
        return _training_stage(consumer) if consumer else None

    def weights_licenses(self) -> list[tuple[str, str]]:
        return [(e["name"], e["license"]) for e in self.terms.evidence
                if e["role"] in ("self", "weights") and e["license"] is not None]


def _gather(artifact: Artifact, registry: Registry, pending_card: Artifact | None = None) -> _Facts:
    inputs = lineage_inputs(artifact, registry)
    weights = [i for i in inputs if i.role == "weights" and i.artifact is not None]
    chain = [artifact] + [i.artifact for i in weights if i.artifact is not None]
    paths = {artifact.id: [artifact.id], **{i.id: i.path for i in weights}}
    roots = [a for a in chain if not any(r in WEIGHT_RELATIONS for _, r in registry.parents(a.id))]
    by_id = {a.id: a for a in chain}

    def origin_recorded(root: Artifact) -> bool:  # random init, or behind a from-scratch pretraining
        if str(root.manifest.get("source") or "").startswith("kaiyuan.tiny"):
            return True
        return any((by_id[node].manifest.get("config") or {}).get("from_scratch")
                   and _training_stage(by_id[node]) == "pretrain" for node in paths[root.id][:-1])

    return _Facts(
        artifact=artifact, registry=registry, pending_card=pending_card, terms=license_report(artifact.id, registry),
        inputs=inputs,
        chain=chain, paths=paths,
        datasets=[i for i in inputs if i.artifact is not None and i.artifact.kind == "dataset"],
        missing=[i for i in inputs if i.artifact is None],
        trained=[a for a in chain if _training_stage(a)],
        evals=registry.children(artifact.id, "evaluated_model", "eval"),
        exports=registry.children(artifact.id, kind="export"),
        roots=roots, imported=[r for r in roots if not origin_recorded(r)])


# ---------------------------------------------------------------------------------------- components


def _architecture(f: _Facts) -> Check:
    holder = next((a for a in f.chain if "config.json" in _files(a)), None)
    if holder is None:
        return Check(False, False, None, "no config.json in the model or the weights it builds on: the architecture "
                                         "is not recorded")
    try:
        model_type = json.loads((holder.path / "config.json").read_text()).get("model_type") or "unknown"
    except (OSError, ValueError):
        model_type = "unknown"
    return Check(True, True, "Apache-2.0", f"{holder.name}/config.json (model_type {model_type}); the architecture's "
                                           "code is its transformers implementation (Apache-2.0)")


def _final_parameters(f: _Facts) -> Check:
    files = _weights_files(f.artifact)
    if not files:
        return Check(False, False, f.own, f"no weights (*.safetensors, *.gguf) in {f.artifact.name}")
    closed = [f"{name} ({spdx})" for name, spdx in f.weights_licenses() if not _is_open(spdx, "weights")]
    evidence = f"{', '.join(files)} under {f.own}"
    if closed:
        evidence += f"; weights in the chain not under an open license: {', '.join(closed)}"
    return Check(True, not closed, f.own, evidence)


def _imported_note(f: _Facts) -> str:
    return f": the weights were imported ({_names(f.imported)})" if f.imported else ""


def _made_by_kaiyuan(f: _Facts) -> list[Artifact]:
    return [a for a in f.chain if str(a.manifest.get("source") or "").startswith(("kaiyuan train", "kaiyuan merge"))]


def _pipeline(f: _Facts) -> str:
    version = f.artifact.manifest.get("kaiyuan_version")
    commit = next((a.manifest.get("kaiyuan_git_commit") for a in f.trained if a.manifest.get("kaiyuan_git_commit")),
                  f.artifact.manifest.get("kaiyuan_git_commit"))
    return f"kaiyuan {version} ({KAIYUAN_LICENSE}" + (f", commit {commit})" if commit else ")")


def _document_file(f: _Facts, pattern: re.Pattern[str]) -> str | None:
    return next((name for name in sorted(_files(f.artifact)) if "/" not in name and pattern.match(name)), None)


def _technical_report(f: _Facts) -> Check:
    found = _document_file(f, REPORT_FILE) or _document_file(f, PAPER_FILE)
    if found:
        return Check(True, _is_open(f.own, "document"), f.own, f"{found} in {f.artifact.name}")
    if _has_card(f.artifact, f) and _made_by_kaiyuan(f):
        return Check(True, _is_open(f.own, "document"), f.own, (
            f"stand-in: no report file, so the model card ({CARD}) with the pipeline recorded in the manifests "
            f"(resolved configs, seeds, library versions, chat template hash, lineage; {_pipeline(f)}) serves as "
            "the technical report"))
    why = "no model card" if not _has_card(f.artifact, f) else "no kaiyuan training or merge step recorded"
    return Check(False, False, None, f"no technical report (technical_report.md/pdf) in the artifact, and {why} to "
                                     "stand in for one")


def _evaluation_results(f: _Facts) -> Check:
    if not f.evals:
        return Check(False, False, None, "no evaluation of this model is registered (run `kaiyuan eval`)")
    licenses = sorted({e.license for e in f.evals})
    return Check(True, any(_is_open(e.license, "document") for e in f.evals), "/".join(licenses),
                 "eval artifacts " + ", ".join(f"{e.id} ({e.name})" for e in f.evals))


def _model_card(f: _Facts) -> Check:
    if not _has_card(f.artifact, f):
        return Check(False, False, None, f"no model card for {f.artifact.name} (run kaiyuan card {f.artifact.id})")
    return Check(True, _is_open(f.own, "document"), f.own, f"{_card_ref(f.artifact, f)}, under the "
                                                            f"artifact's license {f.own}")


def _data_card(f: _Facts) -> Check:
    if not f.datasets:
        return Check(False, False, None, "no training datasets recorded in the lineage")
    without = [d for d in f.datasets if not _has_card(_of(d), f)]
    closed = [d for d in f.datasets if d not in without and not _is_open(_of(d).license, "document")]
    if without:
        return Check(False, False, None, "no data card for dataset(s) " + ", ".join(
            f"{d.name} ({d.id})" for d in without) + ": run kaiyuan card on them")
    evidence = "data cards: " + ", ".join(f"{_card_ref(_of(d), f)} ({_of(d).license})" for d in f.datasets)
    if closed:
        evidence += f"; not under an open license: {_names(closed)} (a card is under its dataset's license)"
    return Check(True, not closed, "/".join(sorted({_of(d).license for d in f.datasets})),
                 evidence)


def _sample_outputs(f: _Facts) -> Check:
    samples = [e for e in f.evals if any(name.endswith(".jsonl") for name in _files(e))]
    if not samples:
        return Check(False, False, None, "no evaluation with recorded model outputs (predictions.jsonl)")
    licenses = "/".join(sorted({e.license for e in samples}))
    return Check(True, any(_is_open(e.license, "data") for e in samples), licenses,
                 "model outputs in " + ", ".join(f"{e.name}/predictions.jsonl" for e in samples))


def _training_code(f: _Facts) -> Check:
    if not f.trained:
        return Check(False, False, None, "no training by kaiyuan recorded" + _imported_note(f))
    steps = ", ".join(f"`kaiyuan train {_training_stage(a)}` → {a.name}" for a in f.trained)
    evidence = f"{_pipeline(f)}: {steps}; resolved configs and seeds in the manifests"
    if any(str(a.manifest.get("kaiyuan_git_commit") or "").endswith("+dirty") for a in f.trained):
        evidence += " (commit +dirty: local changes that are in no commit — publish them to make the code exact)"
    if f.imported:
        evidence += f"; the imported base weights' own training code is upstream ({_names(f.imported)})"
    return Check(True, True, KAIYUAN_LICENSE, evidence)


def _inference_code(f: _Facts) -> Check:
    if not any(_weights_files(a) for a in f.chain):
        return Check(False, False, None, "no weights (*.safetensors, *.gguf) to run")
    return Check(True, True, KAIYUAN_LICENSE, "`kaiyuan serve` / `kaiyuan eval` with transformers (Apache-2.0) or "
                                              "llama.cpp (MIT) load and run the registered weights")


def _evaluation_code(f: _Facts) -> Check:
    ours = [e for e in f.evals if str(e.manifest.get("source") or "").startswith("kaiyuan")]
    if not ours:
        return Check(False, False, None, "no evaluation of this model by kaiyuan is registered (run `kaiyuan eval`)")
    return Check(True, True, KAIYUAN_LICENSE, f"{_pipeline(f)}: " + ", ".join(
        f"{e.manifest.get('source')} → {e.id}" for e in ours))


def _evaluation_datasets(f: _Facts) -> list[tuple[str, str | None]]:
    """(label, license) of the data each evaluation used: registered datasets, or a known published benchmark."""
    found: list[tuple[str, str | None]] = []
    for evaluation in f.evals:
        for parent in evaluation.manifest.get("parents") or []:
            if parent.get("relation") == "dataset":
                data = f.registry.find(parent["id"])
                if data is not None and data.id == parent["id"] and any(n != CARD for n in _files(data)):
                    found.append((f"{data.name} ({data.id})", data.license))
        config = evaluation.manifest.get("config") or {}
        task = str(config.get("task_name") or config.get("task") or "").lower()
        if task and not any(p.get("relation") == "dataset" for p in evaluation.manifest.get("parents") or []):
            found.append((f"benchmark {task}", BENCHMARK_LICENSES.get(task)))
    return list(dict.fromkeys(found))


def _evaluation_data(f: _Facts) -> Check:
    found = _evaluation_datasets(f)
    if not found:
        return Check(False, False, None, "the evaluations record no dataset" if f.evals else
                     "no evaluation of this model is registered")
    open_ = [label for label, spdx in found if _is_open(spdx, "data")]
    evidence = ", ".join(f"{label}: {spdx or 'license unknown'}" for label, spdx in found)
    return Check(True, bool(open_), "/".join(sorted({s or "NOASSERTION" for _, s in found})), evidence)


def _supporting_libraries(f: _Facts) -> Check:
    versions: dict[str, str] = {}
    for artifact in _made_by_kaiyuan(f):
        versions.update(artifact.manifest.get("library_versions") or {})
    if not versions:
        return Check(False, False, None, "no training or merge by kaiyuan recorded: the libraries used to develop "
                                         "the model are unknown")
    closed = [name for name in versions if not _is_open(LIBRARY_LICENSES.get(name), "code")]
    evidence = ", ".join(f"{n} {v} ({LIBRARY_LICENSES.get(n, 'license unknown')})" for n, v in sorted(versions.items()))
    return Check(True, not closed, "/".join(sorted({LIBRARY_LICENSES.get(n, "NOASSERTION") for n in versions})),
                 evidence)


def _research_paper(f: _Facts) -> Check:
    found = _document_file(f, PAPER_FILE)
    if found:
        return Check(True, _is_open(f.own, "document"), f.own, f"{found} in {f.artifact.name}")
    if _has_card(f.artifact, f) and f.trained and not f.missing:
        return Check(True, _is_open(f.own, "document"), f.own, (
            f"stand-in: no paper file, so the model card's methods ({CARD}) with the complete recorded method — every "
            f"training run's resolved config and seed, the lineage to every dataset, library versions and "
            f"{_pipeline(f)} — serve as the research paper: enough to reproduce the model (`kaiyuan reproduce`); "
            "no peer-reviewed paper is claimed"))
    why = ("no model card" if not _has_card(f.artifact, f) else "no kaiyuan training recorded" if not f.trained
           else f"inputs missing from the registry: {', '.join(i.id for i in f.missing)}")
    return Check(False, False, None, f"no research paper (paper.md/pdf) in the artifact, and {why} to stand in for one")


def _datasets(f: _Facts) -> Check:
    missing = [i for i in f.missing if i.relations[-1] == "dataset"]
    if not f.datasets and not missing:
        return Check(False, False, None, "no training datasets recorded in the lineage")
    empty = [d for d in f.datasets if not any(n != CARD for n in _files(_of(d))) and not _published(_of(d))]
    if missing or empty:
        return Check(False, False, None, "datasets not available: " + ", ".join(
            [f"{i.id} (not in the registry)" for i in missing] + [
                f"{d.name} ({'not published, as the catalog records it' if _upstream(_of(d)) else 'no data files'})"
                for d in empty]))
    closed = [d for d in f.datasets if not _is_open(_of(d).license, "data")]
    evidence = ", ".join(f"{d.name} ({_of(d).license}, {d.relations[-1]})" for d in f.datasets)
    if closed:
        evidence += "; not under an open data license: " + ", ".join(
            f"{d.name} ({_of(d).license})" for d in closed)
    return Check(True, not closed, "/".join(sorted({_of(d).license for d in f.datasets})),
                 evidence)


def _preprocessing_code(f: _Facts) -> Check:
    if not f.datasets:
        return Check(False, False, None, "no training datasets recorded in the lineage")
    if not f.trained:
        return Check(False, False, None, "no training by kaiyuan recorded: how the data was prepared is unknown")
    own = [d for d in f.datasets if _upstream(_of(d)) is None]
    upstream = [d for d in f.datasets if d not in own]
    sources = ", ".join(f"{d.name} ← {_of(d).manifest.get('source')}" for d in own)
    evidence = (f"{_pipeline(f)} normalized every dataset it trained on (kaiyuan.data.formats; source and format in "
                f"its manifest) and applied the chat template and loss masks in training: {sources}")
    if upstream:
        evidence += (f"; the data of the catalog's models ({_names([_of(d) for d in upstream])}) was prepared by "
                     "their producers (upstream, not assessed here)")
    return Check(True, True, KAIYUAN_LICENSE, evidence)


def _checkpoints(artifact: Artifact, registry: Registry) -> str | None:
    def by_step(name: str) -> int:
        return int(name.rsplit("-", 1)[1])

    inside = sorted({m.group(1) for name in _files(artifact) if (m := CHECKPOINT_DIR.match(name))}, key=by_step)
    if inside:
        return f"{artifact.name}: {', '.join(inside)} inside the artifact (hashed in its manifest)"
    recorded = (artifact.manifest.get("metrics") or {}).get("checkpoints") or (
        artifact.manifest.get("config") or {}).get("checkpoints")
    if isinstance(recorded, list) and recorded and all(
            registry.find(str(c)) is not None or Path(str(c)).exists() for c in recorded):
        return f"{artifact.name}: checkpoints recorded in its manifest: {', '.join(map(str, recorded))}"
    run = recorded_run_dir(artifact.manifest, registry.home)
    kept = run.glob("checkpoint-*") if run is not None and run.is_dir() else []
    found = sorted((p.name for p in kept if p.is_dir()), key=by_step)
    if found:
        return (f"{artifact.name}: {', '.join(found)} in the run directory {run} (kept outside the artifact, not "
                "hashed by its manifest)")
    return None


def _intermediate_parameters(f: _Facts) -> Check:
    if not f.trained:
        return Check(False, False, None, "no training by kaiyuan recorded: no intermediate checkpoints")
    found = {a.id: _checkpoints(a, f.registry) for a in f.trained}
    without = [a for a in f.trained if found[a.id] is None]
    if without:
        return Check(False, False, None, "no intermediate checkpoints kept for " + ", ".join(
            f"{a.name} (train with --checkpoint-steps N)" for a in without))
    closed = [a for a in f.trained if not _is_open(a.license, "weights")]
    evidence = "; ".join(e for e in found.values() if e)
    if closed:
        evidence += f"; not under an open license: {_names(closed)}"
    return Check(True, not closed, "/".join(sorted({a.license for a in f.trained})), evidence)


def _model_metadata(f: _Facts) -> Check:
    manifest = f.artifact.manifest
    if not manifest.get("config") and not f.trained:
        return Check(False, False, None, "the manifest records no configuration")
    return Check(True, _is_open(f.own, "data"), f.own, "manifest.json: resolved config, seed, library versions, chat "
                                                         "template hash, file hashes and parents")


CHECKS = {
    "Model architecture": _architecture, "Model parameters (Final)": _final_parameters,
    "Technical report": _technical_report, "Evaluation results": _evaluation_results, "Model card": _model_card,
    "Data card": _data_card, "Sample model outputs": _sample_outputs, "Training code": _training_code,
    "Inference code": _inference_code, "Evaluation code": _evaluation_code, "Evaluation data": _evaluation_data,
    "Supporting libraries and tools": _supporting_libraries, "Research paper": _research_paper,
    "Datasets": _datasets, "Data preprocessing code": _preprocessing_code,
    "Model parameters (Intermediate)": _intermediate_parameters, "Model metadata": _model_metadata,
}


def _component(component: MOFComponent, check: Check) -> dict[str, Any]:
    counts = check.present and check.open
    reason = None if counts else (check.evidence if not check.present else
                                  f"not under an open license ({check.license}): {check.evidence}")
    return {"name": component.name, "class": CLASS_NAMES[component.mof_class], "required": component.required,
            "content": component.content, "present": check.present, "open": check.open, "counts": counts,
            "license": check.license, "evidence": check.evidence, "reason": reason}


def _progress(components: list[dict[str, Any]]) -> tuple[str | None, dict[str, dict[str, Any]]]:
    progress: dict[str, dict[str, Any]] = {}
    reached = None
    for level in (3, 2, 1):
        classes = {CLASS_NAMES[c] for c in range(level, 4)}
        required = [c for c in components if c["required"] and c["class"] in classes]
        missing = [{"name": c["name"], "class": c["class"], "reason": c["reason"]} for c in required if not c["counts"]]
        progress[CLASS_NAMES[level]] = {"required": len(required), "met": len(required) - len(missing),
                                        "missing": missing}
        if not missing:  # the classes are cumulative: Class II can only pass when Class III does
            reached = CLASS_NAMES[level]
    return reached, progress


# ------------------------------------------------------------------------------------------- index


def _dimension(group: str, name: str, score: float, evidence: str) -> dict[str, Any]:
    return {"group": group, "name": name, "score": score, "evidence": evidence}


def _share(items: list[Any], good: list[Any], what: str, none: str) -> tuple[float, str]:
    if not items:
        return 0.0, none
    if len(good) == len(items):
        return 1.0, f"{what}: all open"
    return (0.5 if good else 0.0), f"{what}: {len(good)} of {len(items)} open"


def _index(f: _Facts, checks: dict[str, Check]) -> list[dict[str, Any]]:
    groups = dict((name, group) for group, name in INDEX_DIMENSIONS)
    scores: dict[str, tuple[float, str]] = {}
    dirty = any(str(a.manifest.get("kaiyuan_git_commit") or "").endswith("+dirty") for a in f.trained)
    scores["Open code"] = ((0.5, f"{_pipeline(f)}: local changes that are in no commit") if f.trained and dirty else
                           (1.0, f"training code: {_pipeline(f)}") if f.trained else
                           (0.0, "no training code recorded" + _imported_note(f)))
    pretrain_data = [d for d in f.datasets if f.consumer_stage(d) == "pretrain"
                     or (_upstream(_of(d)) or {}).get("role") == "pretraining"]
    tuning_data = [d for d in f.datasets if d not in pretrain_data]

    def open_data(items: list[LineageInput]) -> list[LineageInput]:
        return [d for d in items if _is_open(_of(d).license, "data")]

    unrecorded = [r for r in f.imported if not _data_recorded(r, f.registry)]
    if unrecorded:
        scores["LLM data"] = (0.0, f"base weights imported ({_names(unrecorded)}): their pretraining data is not "
                                   "recorded")
    else:
        scores["LLM data"] = _share(pretrain_data, open_data(pretrain_data), "pretraining datasets " +
                                    _names(pretrain_data), "no pretraining data recorded")
    bases = [a for a in f.chain if _training_stage(a) == "pretrain"] or f.roots
    base_state = [(a, _weights_available(a), _is_open(a.license, "weights")) for a in bases]
    scores["LLM weights"] = (
        (1.0, f"base weights {_names(bases)}: available under open licenses") if all(w and o for _, w, o in base_state)
        else (0.5, f"base weights {_names(bases)}: available, not all under open licenses")
        if all(w for _, w, _ in base_state) else (0.0, f"base weights {_names(bases)}: not all available"))
    scores["RL data"] = _share(tuning_data, open_data(tuning_data), "fine-tuning datasets " + _names(tuning_data),
                               "no instruction or preference tuning data recorded")
    tuned = [a for a in f.trained if _training_stage(a) != "pretrain"]
    final = checks["Model parameters (Final)"]
    scores["RL weights"] = ((0.0, "no fine-tuning recorded") if not tuned else
                            (0.0, final.evidence) if not final.present else
                            (1.0 if final.open else 0.5, f"fine-tuned weights: {final.evidence}"))
    terms = [license_properties(spdx) for _, spdx in f.weights_licenses()]
    spdx_list = ", ".join(dict.fromkeys(t.spdx for t in terms))
    scores["License"] = ((1.0, f"{spdx_list}: OSI-approved or open") if all(t.open_license for t in terms) else
                         (0.5, f"{spdx_list}: published terms with restrictions") if all(t.known for t in terms) else
                         (0.0, f"{spdx_list}: unknown terms"))
    scores["Code"] = ((1.0, "kaiyuan's stages are documented (README, docstrings, --help) and each run's resolved "
                            "config is in its manifest") if f.trained else (0.0, "no training code recorded"))
    architecture = checks["Model architecture"]
    scores["Architecture"] = (1.0 if architecture.present else 0.0, architecture.evidence)
    explicit = _document_file(f, REPORT_FILE) or _document_file(f, PAPER_FILE)
    report = checks["Technical report"]
    scores["Preprint"] = ((1.0, f"{explicit} in the artifact") if explicit else
                          (0.5, "only the stand-in: model card + recorded pipeline") if report.present else
                          (0.0, "no preprint or technical report"))
    paper = _document_file(f, PAPER_FILE)
    scores["Paper"] = ((0.5, f"{paper} in the artifact; peer review cannot be verified from the registry") if paper
                       else (0.0, "no peer-reviewed paper recorded"))
    card = checks["Model card"]
    scores["Modelcard"] = (1.0 if card.present else 0.0, card.evidence)
    carded = [d for d in f.datasets if _has_card(_of(d), f)]
    scores["Datasheet"] = ((0.0, "no training datasets recorded") if not f.datasets else
                           (1.0, f"data cards of {_names(carded)}") if len(carded) == len(f.datasets) else
                           (0.5 if carded else 0.0, f"data cards of {len(carded)} of {len(f.datasets)} "
                                                    f"datasets ({_names(f.datasets)})"))
    scores["Package"] = ((1.0, "exported: " + ", ".join(f"{e.name} ({e.id})" for e in f.exports)) if f.exports else
                         (0.0, "no export package registered (`kaiyuan export`: GGUF / Ollama)"))
    runnable = checks["Inference code"].present
    scores["API"] = ((0.5, "self-hostable OpenAI-compatible API (`kaiyuan serve`); no hosted API recorded") if runnable
                     else (0.0, "no weights to serve"))
    return [_dimension(groups[name], name, *scores[name]) for _, name in INDEX_DIMENSIONS]


# ------------------------------------------------------------------------------------------- OSAID


def _osaid(f: _Facts, checks: dict[str, Check]) -> dict[str, Any]:
    """OSI Open Source AI Definition 1.0: data information, complete code, parameters under OSI-approved terms."""
    reasons: list[str] = []
    data_problems = []
    unrecorded = [r for r in f.imported if not _data_recorded(r, f.registry)]
    if unrecorded:
        data_problems.append(f"the training data of the imported base weights ({_names(unrecorded)}) is not recorded")
    if f.missing:
        data_problems.append(f"inputs missing from the registry: {', '.join(i.id for i in f.missing)}")
    empty = [d for d in f.datasets if not any(n != CARD for n in _files(_of(d))) and not _published(_of(d))]
    if empty:
        unreleased = [d for d in empty if _upstream(_of(d)) is not None]
        held = [d for d in empty if d not in unreleased]
        if held:
            data_problems.append(f"datasets without data files: {_names(held)}")
        if unreleased:
            data_problems.append(f"not released, as kaiyuan's catalog records it: {_names(unreleased)}")
    data_ok = not data_problems
    reasons.append("data information: " + (
        "; ".join(data_problems) if data_problems else
        f"every training dataset is registered with its source and data files ({_names(f.datasets)})" if f.datasets
        else "no training data recorded"))
    code_problems = []
    if not f.trained:
        code_problems.append("no training code recorded" + _imported_note(f))
    if f.imported and f.trained:
        code_problems.append(f"the training code of the imported base weights ({_names(f.imported)}) is not recorded")
    code_ok = not code_problems
    reasons.append("code: " + ("; ".join(code_problems) if code_problems else
                               f"training, inference and data processing by {_pipeline(f)}"))
    final = checks["Model parameters (Final)"]
    terms = [license_properties(spdx) for _, spdx in f.weights_licenses()]
    parameters_ok = final.present and all(t.osi_approved or t.open_data for t in terms)
    reasons.append("parameters: " + (f"{final.evidence}: OSI-approved or open terms" if parameters_ok else
                                     final.evidence if not final.present else
                                     f"{final.evidence}: not all under OSI-approved or open terms"))
    return {"passes": data_ok and code_ok and parameters_ok, "reasons": reasons,
            "requirements": {"data_information": data_ok, "code": code_ok, "parameters": parameters_ok}}


# ------------------------------------------------------------------------------------------ report


def _catalog_notes(f: _Facts) -> list[str]:
    """What kaiyuan's catalog added to the lineage, and what that changes."""
    known = [a for a in f.chain if _upstream(a) is not None]
    data = [d for d in f.datasets if _upstream(_of(d)) is not None]
    if not known:
        return []
    note = (f"Known to kaiyuan's catalog: {_names(known)} (`kaiyuan catalog show {_upstream(known[0])['key']}`). "
            "Their licenses join the license verdict")
    if data:
        note += (f", and the data they were trained on ({_names([_of(d) for d in data])}) counts among this model's "
                 "datasets, published upstream rather than held in the registry")
    return [note + "."]


def openness_report(ref: str, registry: Registry | None = None, pending_card: Artifact | None = None
                    ) -> OpennessReport:
    """MOF class (with progress towards each class), the 14-dimension openness index and an OSAID check.
    ``pending_card``: a card being written for the model, counted as if it were registered (a card's openness
    section counts the card itself)."""
    registry = with_catalog(registry)  # a base the catalog knows brings its own lineage
    artifact = registry.get(ref)
    if artifact.kind not in ("model", "adapter", "export"):
        raise KaiyuanError(f"{artifact.name!r} is a {artifact.kind}, not a model: openness is assessed for models "
                           "(use `kaiyuan license` for the terms of any artifact)")
    facts = _gather(artifact, registry, pending_card)
    checks = {c.name: CHECKS[c.name](facts) for c in MOF_COMPONENTS}
    components = [_component(c, checks[c.name]) for c in MOF_COMPONENTS]
    reached, progress = _progress(components)
    index = _index(facts, checks)
    notes = ["A card counts when it is registered for the artifact (`kaiyuan card`, kind card, relation documented) "
             "or README.md is among the artifact's own files; it is under that artifact's license."]
    if facts.imported == [facts.artifact]:
        notes.append(f"{facts.artifact.name} was imported ({facts.artifact.manifest.get('source')}): how it was made "
                     "is upstream; only what the registry records is assessed.")
    elif facts.imported:
        notes.append(f"Imported base weights ({_names(facts.imported)}) are inputs judged by their license; their own "
                     "pretraining components are upstream (run `kaiyuan openness` on them).")
    notes += _catalog_notes(facts)
    return OpennessReport(
        model_id=facts.artifact.id, name=facts.artifact.name, kind=facts.artifact.kind, license=facts.own,
        mof_class=reached, mof_components=components, progress=progress, index=index,
        index_score=sum(d["score"] for d in index), index_max=len(INDEX_DIMENSIONS), osaid=_osaid(facts, checks),
        notes=notes)
