"""Model and data cards: Hugging Face ``README.md`` files (YAML metadata + prose) written from the manifests.

A **model card** carries the Hub's metadata — ``license`` (or ``license: other`` + ``license_name`` +
``license_link``), ``base_model`` + ``base_model_relation``, ``datasets``, ``tags`` and a ``model-index`` with every
registered evaluation of the model — and, as prose and tables, the lineage, the license verdict of
:func:`kaiyuan.hub.licenses.license_report`, the openness grade of :func:`kaiyuan.hub.openness.openness_report` and
how the model was made (kaiyuan version and git commit, library versions, each stage's config and seed, the
``kaiyuan reproduce`` command). A **data card** does the same for a dataset (Hub dataset-card metadata; source,
generation config and seed, splits, size, hashes, license, intended use).

Where cards live. Artifacts are content-addressed: an id is the hash of the kind, the files and the parents, and
``kaiyuan reproduce`` compares every file with the sha256 its manifest records. A model card is written *after* the
model — it reports evaluations, the license verdict and the openness grade, which exist only later and change as
evaluations are added — so it cannot go into the model's directory without making the recorded hashes stale.
A card is therefore its own small registered artifact (kind ``card``, one file: ``README.md``), linked to what it
documents by the parent relation ``documented`` — the way an evaluation is linked to its model by
``evaluated_model``. :func:`card_of` finds an artifact's card (for ``kaiyuan openness``). Cards are content-addressed
too: writing the same card again reuses it; a new evaluation makes a new card. :func:`write_cards` registers the
data cards first and states, in the model card, the openness grade *with* the cards in place.

Everything that comes from users or models (names, configs, messages) is escaped: metadata goes through
``yaml.safe_dump``, prose through :func:`kaiyuan.hub.markdown.md`, configs into fenced blocks that no backtick run
can close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.known_models import with_catalog
from kaiyuan.hub.licenses import SPDX_IDS, UNKNOWN, license_properties, license_report, lineage_inputs
from kaiyuan.hub.manifest import DATA_FILE, Parent, atomic_write_text
from kaiyuan.hub.markdown import bullets, code, code_block, front_matter, md, table, yaml_text
from kaiyuan.hub.openness import CARD_FILE, CARD_KIND, DOCUMENTED, openness_report
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry

CARD_SOURCE = "kaiyuan card"
SYNTHETIC_SOURCE = "kaiyuan.data.synthetic:"

# License identifiers the Hub accepts in `license:` (huggingface.co/docs/hub/repositories-licenses); any other
# license is `license: other` with `license_name` and `license_link`.
HUB_LICENSE_IDS = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0",
    "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0",
    "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1",
    "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc",
    "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0",
    "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2",
    "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other",
})
# The Hub's dataset ids of the benchmarks `kaiyuan eval --task` runs (for model-index `dataset.type`).
BENCHMARK_DATASETS = {"mmlu": "cais/mmlu", "gsm8k": "openai/gsm8k", "piqa": "ybisk/piqa",
                      "lambada": "EleutherAI/lambada_openai", "ceval": "ceval/ceval-exam", "cmmlu": "haonan-li/cmmlu"}
HUB_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
INTENDED_USE = {
    "train": "fine-tuning: the training split",
    "heldout": "evaluation only: held out from training — do not train on it, or evaluations on it stop meaning "
               "anything",
    "pairs": "preference tuning (DPO, KTO, ORPO, SimPO) and reward models: chosen / rejected pairs",
}

# ------------------------------------------------------------------------------------ Hub metadata


def hub_license(license: str) -> dict[str, str]:
    """The Hub's license metadata for a license: its Hub id (``apache-2.0``, ``cc0-1.0``, ``gemma``, ``llama3.1``),
    or ``other`` with ``license_name`` and ``license_link`` (the license's URL when known, else a LICENSE file to
    publish beside the card)."""

    props = license_properties(license)
    hub_id = next((hub for hub, spdx in SPDX_IDS.items() if spdx == props.spdx and hub in HUB_LICENSE_IDS), None)
    if hub_id:
        return {"license": hub_id}
    if props.spdx == UNKNOWN:
        return {"license": "unknown"}
    name = re.sub(r"[^a-z0-9.]+", "-", props.spdx.removeprefix("LicenseRef-").lower()).strip("-.")
    return {"license": "other", "license_name": name, "license_link": props.url or "LICENSE"}


def hub_repo_id(artifact: Artifact) -> str | None:
    """The Hub repository an artifact came from: its name when that is a repo id (hub imports are named so), or an
    ``upstream ORG/NAME`` or ``hub:ORG/NAME`` recorded in its source."""
    if HUB_REPO_ID.fullmatch(artifact.name):
        return artifact.name
    found = re.search(rf"(?:\bupstream |\bhub:)({HUB_REPO_ID.pattern})", str(artifact.manifest.get("source") or ""))
    return found.group(1) if found else None


def _registered_parents(artifact: Artifact, registry: Registry) -> dict[str, list[Artifact]]:
    parents: dict[str, list[Artifact]] = {}
    for parent_id, relation in registry.parents(artifact.id):
        found = registry.find(parent_id)
        if found is not None and found.id == parent_id:
            parents.setdefault(relation, []).append(found)
    return parents


def base_models(artifact: Artifact, registry: Registry) -> tuple[list[Artifact], str | None]:
    """The models ``artifact`` was made from and the Hub's ``base_model_relation``: ``adapter`` (a LoRA adapter),
    ``quantized`` (an export such as GGUF), ``finetune`` (full fine-tuning, and an adapter merged into its base —
    the result is a fine-tune of that one base) or ``merge`` (the weights of several models merged)."""
    parents = _registered_parents(artifact, registry)
    for relation in ("adapter", "quantized", "finetune"):
        if relation in parents:
            return parents[relation], relation
    merged = parents.get("merge", [])
    if merged and all(m.kind == "adapter" for m in merged):
        bases = parents.get("base_model") or [b for m in merged for b in _registered_parents(m, registry).get(
            "adapter", [])]
        return bases, "finetune"
    if merged:
        return merged + parents.get("base_model", []), "merge"
    if "base_model" in parents:
        return parents["base_model"], "finetune"
    return [], None


def hub_ancestor(artifact: Artifact, registry: Registry) -> str | None:
    """The Hub repo id of the nearest model ``artifact`` was fine-tuned from (through merges and fine-tunes)."""
    frontier, seen = [artifact], set()
    while frontier:
        current = frontier.pop(0)
        if current.id in seen:
            continue
        seen.add(current.id)
        if current is not artifact and (repo := hub_repo_id(current)) is not None:
            return repo
        bases, relation = base_models(current, registry)
        if relation == "finetune":
            frontier.extend(bases)
    return None


def evaluations(artifact: Artifact, registry: Registry) -> list[Artifact]:
    """Every registered eval artifact whose parent is ``artifact`` with relation ``evaluated_model``, oldest first."""
    return registry.children(artifact.id, "evaluated_model", "eval")


def _metric_values(evaluation: Artifact, model: Artifact) -> dict[str, float]:
    """The scores an eval recorded for ``model`` (counts such as ``n`` and ``n_correct`` are not scores)."""
    metrics = evaluation.manifest.get("metrics") or {}
    per_model = metrics.get("models") if isinstance(metrics.get("models"), dict) else {}
    own = per_model.get(model.id) or per_model.get(model.name) or {}
    values = {}
    for source in (metrics, own if isinstance(own, dict) else {}):
        for key, value in source.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "n" \
                    and not key.startswith("n_"):
                values[key] = value
    return values


def eval_result(evaluation: Artifact, model: Artifact, registry: Registry) -> dict[str, Any] | None:
    """One ``model-index`` result (task, dataset, metrics) for an eval artifact; None when it recorded no score."""
    values = _metric_values(evaluation, model)
    if not values:
        return None
    manifest = evaluation.manifest
    metrics, config = manifest.get("metrics") or {}, manifest.get("config") or {}
    dataset = next((registry.find(p["id"]) for p in manifest.get("parents") or [] if p["relation"] == "dataset"), None)
    data_config = (dataset.manifest.get("config") or {}) if dataset else {}
    task = str(metrics.get("task") or config.get("task_name") or data_config.get("task")
               or (dataset.name if dataset else evaluation.name))
    name = dataset.name if dataset else task
    result: dict[str, Any] = {"task": {"type": "text-generation", "name": task},
                              "dataset": {"name": name, "type": BENCHMARK_DATASETS.get(task) or (
                                  hub_repo_id(dataset) if dataset else None) or name}}
    split = data_config.get("split") or config.get("split")
    if split:
        result["dataset"]["split"] = str(split)
    result["metrics"] = [{"type": key, "value": value} for key, value in values.items()]
    return result


# ------------------------------------------------------------------------------------------- shared


@dataclass
class RenderedCard:
    """A card's README text and the metadata in its YAML block."""

    metadata: dict[str, Any]
    text: str
    warnings: list[str] = field(default_factory=list)


def _records(dataset: Artifact) -> int | None:
    manifest = dataset.manifest
    recorded = (manifest.get("metrics") or {}).get("records", (manifest.get("config") or {}).get("records"))
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    path = dataset.path / DATA_FILE
    if DATA_FILE in (manifest.get("files") or {}) and path.is_file():
        with open(path, encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())
    return None


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` records."""
    return next((name for limit, name in SIZE_CATEGORIES if n < limit), "n>1B")


def _split(dataset: Artifact) -> str:
    split = str((dataset.manifest.get("config") or {}).get("split") or "train")
    return re.sub(r"\W+", "_", split).strip("_") or "train"


def _made_by_kaiyuan(artifact: Artifact) -> bool:
    return str(artifact.manifest.get("source") or "").startswith("kaiyuan")


def _provenance(artifact: Artifact) -> dict[str, Any]:
    """What a manifest records about how an artifact was made (for a YAML block)."""
    manifest = artifact.manifest
    keys = ("source", "seed", "config", "kaiyuan_version", "kaiyuan_git_commit", "library_versions",
            "python_version", "chat_template_sha256", "created_at")
    return {"id": artifact.id, "kind": artifact.kind, "name": artifact.name,
            **{k: manifest.get(k) for k in keys if manifest.get(k) not in (None, {}, "")}}


def _license_lines(license: str) -> list[str]:

    props = license_properties(license)
    hub = hub_license(license)
    on_hub = ", ".join(str(code(f"{key}: {value}")) for key, value in hub.items() if key != "license_link")
    lines = [f"**{md(props.spdx)}** ({md(props.name)}); on the Hub: {on_hub}."]
    if props.url:
        lines.append(f"Terms: <{props.url}>")
    return lines


# ----------------------------------------------------------------------------------------- data card


def data_card_metadata(dataset: Artifact, registry: Registry) -> dict[str, Any]:
    """The Hub dataset-card metadata of a registered dataset."""
    synthetic = str(dataset.manifest.get("source") or "").startswith(SYNTHETIC_SOURCE)
    metadata: dict[str, Any] = {**hub_license(dataset.license), "pretty_name": dataset.name,
                                "task_categories": ["text-generation"]}
    records = _records(dataset)
    if records is not None:
        metadata["size_categories"] = [size_category(records)]
    derived = _registered_parents(dataset, registry).get("dataset", [])
    metadata["source_datasets"] = [f"extended|{d.name}" for d in derived] or ["original"]
    if synthetic:
        metadata["annotations_creators"] = ["machine-generated"]
        metadata["language_creators"] = ["machine-generated"]
    metadata["tags"] = ["kaiyuan", *(["synthetic"] if synthetic else [])]
    if DATA_FILE in (dataset.manifest.get("files") or {}):
        metadata["configs"] = [{"config_name": "default",
                                "data_files": [{"split": _split(dataset), "path": DATA_FILE}]}]
    return metadata


def _data_source(dataset: Artifact, registry: Registry) -> str:
    manifest = dataset.manifest
    source, config = str(manifest.get("source") or "not recorded"), manifest.get("config") or {}
    parents = _registered_parents(dataset, registry)
    lines = []
    if source.startswith(SYNTHETIC_SOURCE):
        task = config.get("task") or source[len(SYNTHETIC_SOURCE):]
        lines.append(f"Generated by kaiyuan's synthetic task {md(task)} ({code('kaiyuan.data.synthetic')}), "
                     f"deterministically from its config and seed {md(manifest.get('seed'))}: the same config and "
                     "seed give the same bytes. Every record comes from the generator's code: no personal or scraped "
                     "data.")
    else:
        lines.append(f"Source recorded in the manifest: {md(source)}.")
    for generator in parents.get("generator", []):
        lines.append(f"Generated with the model {md(generator.name)} ({code(generator.id)}, license "
                     f"{md(generator.license)}): its terms may reach models trained on this data.")
    for origin in parents.get("dataset", []):
        lines.append(f"Derived from the dataset {md(origin.name)} ({code(origin.id)}, license {md(origin.license)}).")
    return "\n\n".join(lines)


def render_data_card(dataset: Artifact, registry: Registry | None = None) -> RenderedCard:
    """A dataset's card (README.md): Hub metadata, then source, how it was made, split and size, hashes, license and
    intended use — everything from its manifest, so the same dataset always gets the same card."""

    registry = registry or Registry()
    metadata = data_card_metadata(dataset, registry)
    manifest, files = dataset.manifest, dataset.manifest.get("files") or {}
    records, split = _records(dataset), _split(dataset)
    sizes = {name: (dataset.path / name).stat().st_size for name in files if (dataset.path / name).is_file()}
    obligations = list(license_properties(dataset.license).obligations)
    body = [
        f"# {md(dataset.name)}",
        f"A dataset in the kaiyuan registry: {code(dataset.id)}, content sha256 {code(dataset.sha256)}, license "
        f"{md(dataset.license)}.",
        "## Source", _data_source(dataset, registry),
        "## How it was made",
        table(["kaiyuan", "git commit", "seed"], [[manifest.get("kaiyuan_version"), code(str(
            manifest.get("kaiyuan_git_commit") or "not recorded")), manifest.get("seed")]]),
        code_block(yaml_text({"source": manifest.get("source"), "config": manifest.get("config") or {},
                              "seed": manifest.get("seed")})),
        f"Re-make it and compare every file's sha256: {code(f'kaiyuan reproduce {dataset.id}')}",
        "## Split and size",
        table(["split", "records", "files", "bytes"], [[split, records if records is not None else "not recorded",
                                                         len(files), sum(sizes.values())]]),
        "kaiyuan registers each split as its own dataset artifact.",
        "## Files and hashes",
        table(["file", "sha256"], [[name, code(digest)] for name, digest in sorted(files.items())]),
        "## License", *_license_lines(dataset.license),
        *([bullets(obligations)] if obligations else []),
        "## Intended use",
        md(INTENDED_USE.get(split, "instruction tuning or evaluation, as its source describes")) + ".",
    ]
    return RenderedCard(metadata, front_matter(metadata, "\n\n".join(body)))


# ---------------------------------------------------------------------------------------- model card


def training_datasets(artifact: Artifact, registry: Registry) -> list[Artifact]:
    """The datasets in an artifact's lineage (what it was trained on, however far up), nearest first."""

    return [i.artifact for i in lineage_inputs(artifact, registry)
            if i.artifact is not None and i.artifact.kind == "dataset"]


def _stages(artifact: Artifact, registry: Registry) -> list[Artifact]:
    """The artifact and every ancestor, in the order they were made (deepest ancestor first)."""
    depth: dict[str, int] = {}
    for node in registry.lineage(artifact.id):
        if not node.get("missing"):
            depth[node["id"]] = max(depth.get(node["id"], 0), node["depth"])
    ancestors = [registry.get(i) for i in sorted(depth, key=lambda i: -depth[i])]
    return [*ancestors, artifact]


def model_card_metadata(artifact: Artifact, registry: Registry) -> RenderedCard:
    """The Hub model-card metadata (as a card without text, with warnings about what the Hub would not accept)."""
    metadata: dict[str, Any] = dict(hub_license(artifact.license))
    warnings = []
    bases, relation = base_models(artifact, registry)
    if bases:
        refs = []
        for base in bases:
            repo = hub_repo_id(base)
            if repo is None and relation == "finetune" and (upstream := hub_ancestor(base, registry)) is not None:
                # a fine-tune of unpublished fine-tunes of a Hub model is, on the Hub, a fine-tune of that model
                warnings.append(f"base_model: {base.name!r} is not on the Hub; its nearest Hub ancestor "
                                f"{upstream!r} is named instead (the lineage section lists every step)")
                repo = upstream
            if repo is None:
                warnings.append(f"base_model {base.name!r} is a kaiyuan registry name, not a Hub repo id: publish "
                                "the base model first, or edit base_model before pushing the card")
            refs.append(repo or base.name)
        metadata["base_model"] = refs[0] if len(refs) == 1 else refs
        metadata["base_model_relation"] = relation
    datasets = training_datasets(artifact, registry)
    if datasets:
        metadata["datasets"] = list(dict.fromkeys(hub_repo_id(d) or d.name for d in datasets))
    gguf = any(name.endswith(".gguf") for name in artifact.manifest.get("files") or {})
    metadata["library_name"] = "gguf" if gguf else "peft" if artifact.kind == "adapter" else "transformers"
    metadata["pipeline_tag"] = "text-generation"
    tags = ["kaiyuan"]
    for stage in _stages(artifact, registry):
        config = stage.manifest.get("config") or {}
        tags += [str(config[k]) for k in ("stage", "method") if _made_by_kaiyuan(stage) and config.get(k)]
    metadata["tags"] = list(dict.fromkeys(tags))
    results = [r for e in evaluations(artifact, registry) if (r := eval_result(e, artifact, registry))]
    if results:
        metadata["model-index"] = [{"name": artifact.name, "results": results}]
    if metadata["license"] == "other" and metadata["license_link"] == "LICENSE":
        warnings.append(f"license_link points to a LICENSE file: publish the text of {artifact.license} beside the "
                        "card")
    return RenderedCard(metadata, "", warnings)


def _evaluation_section(artifact: Artifact, registry: Registry) -> str:
    rows = []
    for evaluation in evaluations(artifact, registry):
        result = eval_result(evaluation, artifact, registry) or {"metrics": []}
        for metric in result["metrics"]:
            task, dataset = result["task"], result["dataset"]
            rows.append([task["name"], dataset["name"], dataset.get("split"), metric["type"], metric["value"],
                         code(evaluation.id)])
    if not rows:
        return "No evaluation of this model is registered yet (run `kaiyuan eval`)."
    return ("Every registered evaluation of this model (also in the `model-index` metadata above):\n\n"
            + table(["task", "dataset", "split", "metric", "value", "eval artifact"], rows))


def _lineage_section(artifact: Artifact, registry: Registry) -> str:
    nodes = registry.lineage(artifact.id)
    if not nodes:
        how = "kaiyuan made it from its config and seed alone" if _made_by_kaiyuan(artifact) else \
            "it entered kaiyuan from outside"
        return f"{md(artifact.name)} has no recorded parents: {how} (source: {md(artifact.manifest.get('source'))})."
    names = {artifact.id: artifact.name, **{n["id"]: n["name"] or n["id"] for n in nodes}}
    rows = [[n["depth"], n["name"] or "missing from the registry", n["kind"], n["license"], n["relation"],
             names.get(n["child"], n["child"]), code(n["id"])] for n in nodes]
    return ("Every ancestor in the registry, nearest first: each was used as *relation* to make *into*.\n\n"
            + table(["depth", "artifact", "kind", "license", "relation", "into", "id"], rows))


def _license_section(artifact: Artifact, registry: Registry) -> str:

    report = license_report(artifact.id, with_catalog(registry))  # a catalog base brings its terms
    parts = [" ".join(_license_lines(report.license)),
             f"Commercial use: **{md(report.verdict)}** — {md(report.summary)}"]
    if report.obligations:
        parts.append("Obligations when you distribute the model or offer it as a service:\n\n"
                     + bullets(report.obligations))
    if report.use_policies:
        parts.append("Acceptable-use policies: " + "; ".join(md(p) for p in report.use_policies) + ".")
    if report.user_cap:
        parts.append(f"User cap: {report.user_cap:,} monthly active users.")
    if report.risks:
        parts.append(table(["level", "risk", "path"], [[r["level"], r["message"], r["path_text"]]
                                                       for r in report.risks]))
    parts.append("From `kaiyuan license`: the licenses recorded along the lineage, intersected — an engineering "
                 "reading, not legal advice.")
    return "\n\n".join(parts)


def pending_card(subject: Artifact) -> Artifact:
    """The card about to be registered for ``subject``: the openness grade a card reports counts the card itself
    (the MOF's Model card component), without registering a draft card first."""
    return Artifact(id="card-(this card)", kind=CARD_KIND, name=f"{subject.name}-card", path=Path(),
                    license=subject.license, sha256="", created_at="",
                    manifest={"kind": CARD_KIND, "files": {CARD_FILE: ""}, "license": subject.license,
                              "parents": [{"id": subject.id, "relation": DOCUMENTED}]})


def _openness_section(artifact: Artifact, registry: Registry) -> str:

    report = openness_report(artifact.id, registry, pending_card(artifact))
    osaid = report.osaid
    progress = [[name, p["required"], p["met"], ", ".join(m["name"] for m in p["missing"]) or "—"]
                for name, p in report.progress.items()]
    components = [[c["name"], c["class"], "yes" if c["required"] else "optional", "yes" if c["counts"] else "no",
                   c["evidence"] if c["counts"] else c["reason"]] for c in report.mof_components]
    index = [[d["group"], d["name"], d["score"], d["evidence"]] for d in report.index]
    return "\n\n".join([
        f"Model Openness Framework (MOF, arXiv:2403.13784): **{md(report.mof_class or 'no class')}**. "
        f"Openness index (Liesenfeld & Dingemanse 2024): **{report.index_score:g} / {report.index_max}**. "
        f"Open Source AI Definition 1.0: **{'passes' if osaid['passes'] else 'does not pass'}**.",
        table(["MOF class", "required", "met", "missing"], progress),
        "### MOF components", table(["component", "class", "required", "counts", "evidence"], components),
        "### Openness index", table(["group", "dimension", "score", "evidence"], index),
        "### Open Source AI Definition", bullets(osaid["reasons"]),
        "From `kaiyuan openness`, computed from the manifests when this card was written, counting this card.",
    ])


def _data_section(datasets: list[Artifact], data_cards: dict[str, Artifact]) -> str:
    if not datasets:
        return "No training data is recorded in the lineage."
    rows = [[d.name, d.license, _records(d), code(d.id), code(data_cards[d.id].id) if d.id in data_cards else "—"]
            for d in datasets]
    return table(["dataset", "license", "records", "id", "data card"], rows)


def _made_section(artifact: Artifact, registry: Registry) -> str:
    stages = _stages(artifact, registry)
    made = [s for s in stages if _made_by_kaiyuan(s)]
    inputs = [s for s in stages if not _made_by_kaiyuan(s)]
    manifest = artifact.manifest
    libraries = {**(manifest.get("library_versions") or {}), "python": manifest.get("python_version")}
    parts = [f"Made with kaiyuan {md(manifest.get('kaiyuan_version'))} at git commit "
             f"{code(str(manifest.get('kaiyuan_git_commit') or 'not recorded'))}. Every stage below is recorded in "
             "its artifact's `manifest.json` (resolved config, seed, versions, file hashes, parents)."]
    if made:
        parts.append(table(["stage", "artifact", "source", "kaiyuan", "git commit", "seed"], [
            [(s.manifest.get("config") or {}).get("stage") or "", s.name, s.manifest.get("source"),
             s.manifest.get("kaiyuan_version"), code(str(s.manifest.get("kaiyuan_git_commit") or "not recorded")),
             s.manifest.get("seed")] for s in made]))
    if inputs:
        parts.append("Inputs from outside kaiyuan (copied in and checked by sha256 on reproduction):\n\n" + table(
            ["artifact", "source", "license", "sha256"],
            [[s.name, s.manifest.get("source"), s.license, code(s.sha256)] for s in inputs]))
    parts.append("Library versions:\n\n" + table(["library", "version"],
                                                 [[k, v] for k, v in libraries.items() if v]))
    for stage in made:
        parts.append(f"### {md(stage.name)}\n\n{code_block(yaml_text(_provenance(stage)))}")
    parts.append("Reproduce: re-run every stage from the manifests in a fresh KAIYUAN_HOME and compare every file's "
                 f"sha256 with the original's:\n\n{code_block(f'kaiyuan reproduce {artifact.id}', 'bash')}")
    return "\n\n".join(parts)


def render_model_card(artifact: Artifact, registry: Registry | None = None,
                      data_cards: dict[str, Artifact] | None = None) -> RenderedCard:
    """A model's (or adapter's, or export's) card: Hub metadata with the model-index of its registered
    evaluations, then lineage, license verdict, openness grade, training data and how it was made."""
    registry = registry or Registry()
    data_cards = data_cards or {}
    card = model_card_metadata(artifact, registry)
    metadata = card.metadata
    bases, relation = base_models(artifact, registry)
    datasets = training_datasets(artifact, registry)
    summary = [f"**Registry id:** {code(artifact.id)} ({md(artifact.kind)}), content sha256 {code(artifact.sha256)}",
               f"**License:** {md(artifact.license)} (see License below)"]
    if bases:
        summary.append(f"**Base model:** {', '.join(f'{md(b.name)} ({code(b.id)})' for b in bases)} — "
                       f"{md(relation)}")
    if datasets:
        summary.append(f"**Training data:** {', '.join(md(d.name) for d in datasets)}")
    summary.append(f"**Reproduce:** {code(f'kaiyuan reproduce {artifact.id}')}")
    body = [
        f"# {md(artifact.name)}", "\n".join(f"- {line}" for line in summary),
        "## Evaluation results", _evaluation_section(artifact, registry),
        "## Lineage", _lineage_section(artifact, registry),
        "## License", _license_section(artifact, registry),
        "## Openness", _openness_section(artifact, registry),
        "## Training data", _data_section(datasets, data_cards),
        "## How it was made", _made_section(artifact, registry),
    ]
    return RenderedCard(metadata, front_matter(metadata, "\n\n".join(body)), card.warnings)


# ------------------------------------------------------------------------------------------- writing


@dataclass
class CardConfig:
    """``kaiyuan card``'s flags (and ``--config`` keys); :func:`write_cards` takes them as arguments."""

    model: str = field(metadata={"help": "Model, adapter, export or dataset: registry id, id prefix or name.",
                                 "argument": True})
    out: str | None = field(default=None, metadata={
        "help": "Also write the cards here: README.md (the model card) and datasets/<dataset id>/README.md."})


@dataclass
class WrittenCard:
    """A registered card: what it documents, the card artifact, its metadata and where its README.md is."""

    documents: Artifact
    card: Artifact
    metadata: dict[str, Any]
    out: Path | None = None

    @property
    def path(self) -> Path:
        return self.card.path / CARD_FILE

    def to_dict(self) -> dict[str, Any]:
        return {"documents": self.documents.id, "name": self.documents.name, "kind": self.documents.kind,
                "card_id": self.card.id, "path": str(self.path), "out": str(self.out) if self.out else None,
                "metadata": self.metadata}


@dataclass
class CardSet:
    """What ``kaiyuan card`` wrote: the model card (None for a dataset) and a data card per dataset."""

    model: WrittenCard | None
    data: list[WrittenCard]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model_card": self.model.to_dict() if self.model else None,
                "data_cards": [d.to_dict() for d in self.data], "warnings": self.warnings}


def register_card(subject: Artifact, rendered: RenderedCard, registry: Registry | None = None) -> Artifact:
    """Register a card for ``subject``: an artifact of kind ``card`` holding README.md, linked by ``documented``.
    It is under the license of what it documents; the same text for the same subject is the same artifact."""
    with ArtifactWriter(CARD_KIND, f"{subject.name}-card", license=subject.license, source=CARD_SOURCE,
                        parents=[Parent(subject.id, DOCUMENTED)],
                        config={"documents": subject.id, "documents_kind": subject.kind}, registry=registry) as writer:
        (writer.path / CARD_FILE).write_text(rendered.text, encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact


def card_datasets(artifact: Artifact, registry: Registry) -> list[Artifact]:
    """The datasets a model's cards cover: its training data, then the data of its evaluations."""
    found = {d.id: d for d in training_datasets(artifact, registry)}
    for evaluation in evaluations(artifact, registry):
        for dataset in _registered_parents(evaluation, registry).get("dataset", []):
            found.setdefault(dataset.id, dataset)
    return list(found.values())


def write_cards(ref: str, registry: Registry | None = None, out: Path | None = None) -> CardSet:
    """Write and register the cards of a model (or adapter, export or dataset): a data card for each of its
    datasets, then the model card. With ``out``, also write them there: ``README.md`` and
    ``datasets/<dataset id>/README.md``. The data cards are registered first, so the openness grade in the model
    card counts them (and the model card itself)."""
    registry = registry or Registry()
    subject = registry.get(ref)
    if subject.kind in (CARD_KIND, "eval"):
        raise KaiyuanError(f"{ref!r} is a {subject.kind}: cards are written for models, adapters, exports and "
                           "datasets")
    datasets = [subject] if subject.kind == "dataset" else card_datasets(subject, registry)
    data = []
    for dataset in datasets:
        rendered = render_data_card(dataset, registry)
        data.append(WrittenCard(dataset, register_card(dataset, rendered, registry), rendered.metadata))
    model, warnings = None, []
    if subject.kind != "dataset":
        rendered = render_model_card(subject, registry, {d.documents.id: d.card for d in data})
        model = WrittenCard(subject, register_card(subject, rendered, registry), rendered.metadata)
        warnings = rendered.warnings
    if out is not None:
        for written in ([model] if model else []) + data:
            where = out if written is model or subject.kind == "dataset" else out / "datasets" / written.documents.id
            written.out = where / CARD_FILE
            atomic_write_text(written.out, written.path.read_text(encoding="utf-8"))
    return CardSet(model, data, warnings)
