"""Openness and license answers for a model of the catalog (not made in kaiyuan), each line with its evidence.

* The MOF class and per-class progress are the Model Openness Tool's own (:func:`kaiyuan.catalog.mot.classify` on
  its model file: ``classification`` is the tool's object, class 0–3, label, progress per class in percent).
* The openness dimensions are both indexes' (the European Open Source AI Index, and its predecessor "Opening up
  ChatGPT"), kept side by side; the score shown first is the EU index's where it covers the model (it is the
  maintained successor, rated later), else Opening up ChatGPT's — and the answer says which and why.
* The license verdict walks the catalog's lineage (:class:`kaiyuan.hub.known_models.KnownLineage`): base models'
  weights licenses, the data the model was tuned on and the terms of any model that generated it.
* The Open Source AI Definition check reads the same records.

Verdicts are engineering readings of recorded licenses and published catalogs, not legal advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan.catalog import mot, opening_up, osai_index
from kaiyuan.catalog.imported import ATTRIBUTIONS, CATALOG_NAMES
from kaiyuan.catalog.store import Catalog, CatalogModel, Claim, Source, hub_id_of
from kaiyuan.config import did_you_mean
from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.hub.known_models import KnownLineage, add_local, catalog_id
from kaiyuan.hub.licenses import LicenseReport, license_properties, license_report, normalize_license
from kaiyuan.hub.manifest import atomic_write_bytes
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Registry

DISCLAIMER = "An engineering reading of recorded licenses and published catalogs, not legal advice."
OPEN_RATINGS = ("open",)


def catalog_license(model: CatalogModel, known: Catalog) -> LicenseReport:
    """The model's terms through its catalog lineage (as :func:`kaiyuan.hub.licenses.license_report`)."""
    return license_report(catalog_id(model.key), KnownLineage(None, known))


def _rating(rating: opening_up.Rating) -> dict[str, Any]:
    return {"rating": rating.value, "points": rating.points, "link": rating.link, "notes": rating.notes,
            "file": rating.source_file, "line": rating.line}


def _index_entry(catalog: str, record: Any, names: dict[str, str], score: float, maximum: float, url: str
                 ) -> dict[str, Any]:
    order = [d for d in names if d in record.dimensions] + [d for d in record.dimensions if d not in names]
    return {"catalog": CATALOG_NAMES[catalog], "score": score, "max": maximum, "url": url,
            "file": record.file, "attribution": ATTRIBUTIONS[catalog],
            "dimensions": {dim: {"name": names.get(dim, dim), **_rating(record.dimensions[dim])} for dim in order}}


def openness_index(model: CatalogModel) -> tuple[dict[str, Any], str | None, str]:
    """Both indexes' ratings (those that cover the model), the one used, and why."""
    found: dict[str, Any] = {}
    if model.osai is not None:
        found["osai-index"] = _index_entry("osai-index", model.osai, osai_index.DIMENSION_NAMES,
                                           round(osai_index.score(model.osai) * len(osai_index.DIMENSIONS), 2),
                                           len(osai_index.DIMENSIONS), model.osai.index_url)
        found["osai-index"]["fraction"] = osai_index.score(model.osai)
    if model.opening_up is not None:
        found["opening-up"] = _index_entry("opening-up", model.opening_up, opening_up.DIMENSION_NAMES,
                                           opening_up.score(model.opening_up), len(opening_up.DIMENSIONS),
                                           model.opening_up.source_url)
    if "osai-index" in found:
        why = ("the European Open Source AI Index: the maintained successor of Opening up ChatGPT, by the same "
               "authors, rated later" + ("; Opening up ChatGPT's ratings are kept beside it" if len(found) > 1 else ""))
        return found, "osai-index", why
    if "opening-up" in found:
        return found, "opening-up", "Opening up ChatGPT: the only index that covers this model"
    return found, None, "neither openness index covers this model"


def mof_answer(record: mot.MOTModel, rules: mot.MOTRules) -> dict[str, Any]:
    """The Model Openness Tool's classification of one of its model files, with per-component evidence."""
    return {"classification": mot.classify(record, rules), "file": record.path,
            "url": f"{mot.MOT_REPOSITORY}/blob/main/{record.path}", "tool_commit": mot.MOT_COMMIT,
            "components": [_component(e) for e in mot.component_evidence(record, rules)],
            "attribution": ATTRIBUTIONS["mot"]}


def _component(evidence: mot.ComponentEvidence) -> dict[str, Any]:
    return {"name": evidence.name, "class": evidence.mof_class, "required": evidence.required,
            "included": evidence.included, "license": evidence.license, "status": evidence.status,
            "counted": evidence.counted, "reason": evidence.reason, "line": evidence.line}


def mot_file_answer(path: str | Path, rules: mot.MOTRules | None) -> dict[str, Any]:
    """``kaiyuan openness --mot FILE``: a Model Openness Tool model file, classified as the tool does."""
    if rules is None:
        raise KaiyuanError("the Model Openness Tool's rules are not in this kaiyuan's catalog: import them with "
                           "`kaiyuan catalog import DIR --format mot`")
    record = mot.load_mot_model(path, rules)
    return {"model": record.name, "producer": record.producer, "mof": mof_answer(record, rules),
            "disclaimer": DISCLAIMER}


def _claims(model: CatalogModel) -> list[dict[str, Any]]:
    out = [{"field": f"license.{part}", **claim.to_dict()} for part, claim in model.licenses.items()]
    if model.mot is not None:
        for part, given in model.mot.license.items():
            if given.name:
                out.append({"field": f"license.{part if part != 'distribution' else 'weights'}",
                            **Claim(given.name, _mot_source(model.mot)).to_dict()})
    if model.osai is not None and model.osai.end_model_license:
        out.append({"field": "license.weights", "value": model.osai.end_model_license,
                    "source": {"catalog": "osai-index", "url": model.osai.index_url, "file": model.osai.file}})
    if model.opening_up is not None and model.opening_up.license_text:
        out.append({"field": "license.weights", "value": model.opening_up.license_text,
                    "source": {"catalog": "opening-up", "url": model.opening_up.source_url,
                               "file": model.opening_up.file}})
    return out


def _mot_source(record: mot.MOTModel) -> Source:
    return Source("mot", f"{mot.MOT_REPOSITORY}/blob/main/{record.path}", record.path)


def disagreements(model: CatalogModel) -> list[dict[str, Any]]:
    """Where the catalogs name different weights licenses (read as SPDX ids), which one is used and why."""
    claims = [c for c in _claims(model) if c["field"] == "license.weights"]
    readings = {c["source"]["catalog"]: normalize_license(str(c["value"])) for c in claims}
    if len(set(readings.values())) <= 1:
        return []
    used = model.weights_license
    used_from = next((c["source"]["catalog"] for c in claims if c["source"]["catalog"] == "kaiyuan"), None) or (
        claims[0]["source"]["catalog"] if claims else None)
    why = ("kaiyuan's own record: written against the producer's license file, with its source"
           if used_from == "kaiyuan" else "the first catalog that names one")
    return [{"field": "license.weights", "claims": claims, "readings": readings,
             "used": normalize_license(used) if used else None, "used_from": used_from, "why": why}]


def osaid_check(model: CatalogModel, mof: dict[str, Any] | None, index: dict[str, Any]) -> dict[str, Any]:
    """The Open Source AI Definition 1.0: parameters and code under OSI-approved terms, and data information."""
    weights = license_properties(model.weights_license)
    code = license_properties(model.licenses["code"].value if "code" in model.licenses else None)
    osai = index.get("osai-index", {}).get("dimensions", {})
    data_rating = (osai.get("datasources_basemodel") or {}).get("rating")
    code_rating = (osai.get("trainingcode") or {}).get("rating")
    checks = [
        {"requirement": "parameters under OSI-approved terms", "met": weights.osi_approved,
         "evidence": f"weights: {weights.spdx}" + ("" if weights.known else " (unknown terms)")},
        {"requirement": "code under OSI-approved terms, training code published",
         "met": code.osi_approved and code_rating in (None, *OPEN_RATINGS) and "code" in model.licenses,
         "evidence": f"code: {code.spdx}" + (f"; EU index, training code: {code_rating}" if code_rating else "")},
        {"requirement": "data information: the training data described well enough to rebuild it",
         "met": data_rating in OPEN_RATINGS or bool(model.pretraining_data) and all(
             d.get("published") for d in model.pretraining_data),
         "evidence": (f"EU index, base model data: {data_rating}" if data_rating else
                      f"{len(model.pretraining_data)} pretraining corpora recorded" if model.pretraining_data else
                      "no record of the training data")},
    ]
    if mof is not None:
        checks.append({"requirement": "(the MOF's Class I, for comparison)",
                       "met": mof["classification"]["class"] == 1, "evidence": mof["classification"]["label"]})
    required = [c for c in checks if not c["requirement"].startswith("(")]
    return {"passes": all(c["met"] for c in required), "checks": checks}


def catalog_openness(model: CatalogModel, known: Catalog) -> dict[str, Any]:
    """Everything the catalog says about how open the model is, and what its license allows."""
    mof = mof_answer(model.mot, known.rules) if model.mot is not None and known.rules is not None else None
    index, used, why = openness_index(model)
    terms = catalog_license(model, known)
    return {
        "model": model.key, "name": model.name, "producer": model.producer, "released": model.released,
        "parameters": model.parameters, "hub_ids": model.hub_ids, "catalogs": model.catalogs(),
        "curated": model.curated,
        "mof": mof, "mof_class": (mof["classification"]["label"] if mof else None),
        "openness_index": index, "index_used": used, "index_why": why,
        "osaid": osaid_check(model, mof, index),
        "license": {"verdict": terms.verdict, "summary": terms.summary, "weights": model.weights_license},
        "base_models": model.base_models, "tuning_data": model.tuning_data,
        "pretraining_data": model.pretraining_data, "claims": _claims(model),
        "disagreements": disagreements(model), "sources": model.sources, "notes": model.notes,
        "disclaimer": DISCLAIMER,
    }


# ------------------------------------------------------------------------------------------------------ search


def open_data(model: CatalogModel, index: dict[str, Any] | None = None,
              mof: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether the model's training data is open, and on whose word: the EU index's base-model data rating, the
    Model Openness Tool's Datasets component, or kaiyuan's record of its corpora (every one published under an
    open license)."""
    index = index if index is not None else openness_index(model)[0]
    rating = ((index.get("osai-index") or {}).get("dimensions", {}).get("datasources_basemodel") or {}).get("rating")
    if rating is not None:
        return rating in OPEN_RATINGS, f"EU Open Source AI Index: base model data {rating}"
    if mof is not None:
        datasets = next((c for c in mof["components"] if c["name"] == "Datasets"), None)
        if datasets is not None:
            return bool(datasets["counted"]), f"Model Openness Tool: Datasets {datasets['status']}"
    if model.pretraining_data:
        ok = all(d.get("published") and license_properties(d.get("license")).open_license
                 for d in model.pretraining_data)
        return ok, f"kaiyuan's record: {len(model.pretraining_data)} pretraining corpora"
    return False, "no record of the training data"


def catalog_row(model: CatalogModel, known: Catalog) -> dict[str, Any]:
    """One line of ``kaiyuan catalog list|search``."""
    mof = mof_answer(model.mot, known.rules) if model.mot is not None and known.rules is not None else None
    index, used, _why = openness_index(model)
    data_open, data_why = open_data(model, index, mof)
    terms = catalog_license(model, known)
    score = index[used]["score"] / index[used]["max"] if used else None
    return {"key": model.key, "name": model.name, "producer": model.producer, "released": model.released,
            "parameters": model.parameters, "commercial": terms.verdict, "license": model.weights_license,
            "mof_class": mof["classification"]["class"] if mof else None,
            "mof_progress_class_1": mof["classification"]["progress"]["1"] if mof else None,
            "mof_label": mof["classification"]["label"] if mof else None,
            "openness": score, "openness_index": used, "open_data": data_open, "open_data_why": data_why,
            "catalogs": model.catalogs(), "curated": model.curated, "hub_ids": model.hub_ids}


def parse_class(value: str | None) -> int | None:
    """``II`` / ``Class II`` / ``2`` → 2 (None: no filter)."""
    if value is None:
        return None
    text = str(value).strip().upper().removeprefix("CLASS").strip()
    number = {"I": 1, "II": 2, "III": 3}.get(text) or (int(text) if text in ("1", "2", "3") else None)
    if number is None:
        raise KaiyuanError(f"MOF class {value!r}: expected I, II or III (or 1, 2, 3)")
    return number


def search_catalog(known: Catalog, query: str = "", commercial: bool = False, open_data_only: bool = False,
                   max_params: float | None = None, mof_class: str | None = None,
                   curated_only: bool = False) -> list[dict[str, Any]]:
    """The catalog's models that pass every filter given: ``commercial`` (the verdict is yes), ``open_data_only``,
    ``max_params`` (known and at most that), ``mof_class`` (the Model Openness Tool's class at least that open:
    II keeps II and I), ``query`` (in the key, name, producer or a Hugging Face id). Sorted by openness, then name."""
    wanted = parse_class(mof_class)
    needle = query.lower().strip()
    rows = []
    for model in known.models.values():
        if curated_only and not model.curated:
            continue
        if needle and not any(needle in (text or "").lower() for text in
                              (model.key, model.name, model.producer, *model.hub_ids, *model.aliases)):
            continue
        if max_params is not None and (model.parameters is None or model.parameters > max_params):
            continue
        row = catalog_row(model, known)
        if commercial and row["commercial"] != "yes":
            continue
        if open_data_only and not row["open_data"]:
            continue
        if wanted is not None and (not row["mof_class"] or row["mof_class"] > wanted):
            continue
        rows.append(row)
    return sorted(rows, key=lambda r: (-(r["openness"] or 0), r["name"].lower()))


def plot_catalog(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """A PNG: openness (the index used, as a fraction) against parameters, coloured by commercial use."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(8.0, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = {"yes": "#2e7d32", "risk": "#f9a825", "no": "#c62828"}

    def openness(row: dict[str, Any]) -> float | None:  # the index's fraction, else MOF progress towards Class I
        if row["openness"] is not None:
            return float(row["openness"])
        progress = row.get("mof_progress_class_1")
        return float(progress) / 100 if progress is not None else None

    shown = [r for r in rows if r["parameters"] and openness(r) is not None]
    for verdict, colour in colours.items():
        for by_index, marker in ((True, "o"), (False, "^")):
            points = [r for r in shown if r["commercial"] == verdict and (r["openness"] is not None) == by_index]
            if points:
                how = "openness index" if by_index else "MOF progress to Class I"
                ax.scatter([r["parameters"] for r in points], [openness(r) for r in points], c=colour, s=36,
                           marker=marker, label=f"commercial use: {verdict}, {how} ({len(points)})", alpha=0.85,
                           edgecolors="none")
    for r in shown:
        ax.annotate(r["name"], (r["parameters"], openness(r)), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    if shown:
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no model here has both a size and an openness index score", ha="center",
                transform=ax.transAxes)
    ax.set_xlabel("parameters")
    ax.set_ylabel("openness (index score ÷ maximum; ▲: MOF progress)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{len(shown)} models: openness vs size (not legal advice)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ------------------------------------------------------------------------------------- local files and folders


GGUF_QUANT = ("Q2", "Q3", "Q4", "Q5", "Q6", "Q8", "F16", "BF16", "F32", "IQ")


def _front_matter(text: str) -> dict[str, Any]:
    import yaml

    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    try:
        data = yaml.safe_load(text[3:end]) if end > 0 else None
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def local_facts(path: Path) -> dict[str, Any]:
    """What a local Hugging Face folder or GGUF file says about itself: license (card YAML, LICENSE file, GGUF
    ``general.license``), base models (card ``base_model``, GGUF ``general.base_model.*``) and names to look it up
    by in the catalog — each with where it was read."""
    facts: dict[str, Any] = {"path": str(path), "license": None, "evidence": [], "names": [], "base_models": []}

    def note(field: str, value: Any, where: str) -> None:
        facts["evidence"].append({"field": field, "value": value, "source": where})

    if path.is_file() and path.suffix == ".gguf":
        from gguf import GGUFReader

        fields = GGUFReader(path).fields

        def read(key: str) -> str | None:
            found = fields.get(key)
            return str(found.contents()) if found is not None else None

        if read("general.license"):
            facts["license"] = normalize_license(read("general.license"))
            note("license", read("general.license"), f"{path.name}: general.license")
        org, stem = read("general.organization"), path.stem
        for suffix in GGUF_QUANT:  # SmolLM2-135M-Instruct.Q4_1 → SmolLM2-135M-Instruct
            stem = stem.split(f".{suffix}")[0].split(f"-{suffix}")[0]
        names = [f"{org}/{stem}" if org else stem, stem]
        if read("general.basename") and read("general.size_label"):
            names.append(f"{read('general.basename')}-{read('general.size_label')}")
        count = int(read("general.base_model.count") or 0)
        for i in range(count):
            base = read(f"general.base_model.{i}.repo_url") or read(f"general.base_model.{i}.name")
            if base:
                facts["base_models"].append(base)
                note("base_model", base, f"{path.name}: general.base_model.{i}")
        facts["names"] = names
        return facts
    if not path.is_dir():
        raise KaiyuanError(f"{path}: not a Hugging Face model folder or a .gguf file")
    card = path / "README.md"
    meta = _front_matter(card.read_text(encoding="utf-8", errors="replace")) if card.is_file() else {}
    if meta.get("license"):
        license = meta.get("license_name") if meta.get("license") == "other" and meta.get("license_name") else \
            meta["license"]
        facts["license"] = normalize_license(str(license))
        note("license", license, "README.md (card YAML): license")
    licence_file = next((path / n for n in ("LICENSE", "LICENSE.txt", "LICENSE.md") if (path / n).is_file()), None)
    if licence_file is not None:
        first = licence_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:3]
        reading = normalize_license(" ".join(first))
        note("license", reading, f"{licence_file.name}: its first lines")
        facts["license"] = facts["license"] or reading
    bases = meta.get("base_model")
    for base in [bases] if isinstance(bases, str) else bases or []:
        facts["base_models"].append(str(base))
        note("base_model", base, "README.md (card YAML): base_model")
    config = path / "config.json"
    if config.is_file():
        import json

        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
        except ValueError:
            name = None
        if name:
            facts["names"].append(str(name))
    facts["names"] += [str(meta["model_name"])] if meta.get("model_name") else []
    facts["names"].append(path.name)
    return facts


def local_match(facts: dict[str, Any], known: Catalog) -> tuple[CatalogModel | None, str | None]:
    """The catalog model a local file is (by its names), else the one it is built on (by its base models)."""
    for name in facts["names"]:
        found = known.find(name)
        if found is not None:
            return found, f"is {found.key} (by its name {name!r})"
    for base in facts["base_models"]:
        found = known.find(hub_id_of(base) or base)
        if found is not None:
            return found, f"is built on {found.key} (its base_model {base!r})"
    return None, None


# ------------------------------------------------------------------------------------------- what MODEL names


@dataclass
class Subject:
    """What ``kaiyuan license|openness MODEL`` was asked about."""

    kind: str  # artifact (registered) | catalog | local (a file built on a catalog model, or of unknown origin)
    ref: str  # the id to ask license_report / openness_report about
    lineage: KnownLineage
    model: CatalogModel | None = None  # the catalog model it is (catalog) or is built on (local)
    local: dict[str, Any] | None = None  # what a local file says about itself
    matched: str | None = None  # how the local file was matched to the catalog


def resolve_subject(ref: str, registry: Registry | None = None, known: Catalog | None = None) -> Subject:
    """A registered artifact (id, prefix or name), a local Hugging Face folder or GGUF file, or a catalog model
    (key, alias, Hugging Face id, a catalog's name) — in that order."""
    registry = registry if registry is not None else Registry()
    lineage = KnownLineage(registry, known)
    artifact = registry.find(ref)
    if artifact is not None:
        return Subject("artifact", artifact.id, lineage)
    path = Path(ref).expanduser()
    if (path.is_dir() or path.suffix == ".gguf") and path.exists():
        facts = local_facts(path)
        model, how = local_match(facts, lineage.known)
        if model is not None and how and not how.startswith("is built on"):
            return Subject("catalog", catalog_id(model.key), lineage, model, facts, how)
        made = add_local(lineage, path.name, facts["license"], model, facts["evidence"])
        return Subject("local", made.id, lineage, model, facts, how)
    model = lineage.known.find(ref)
    if model is not None:
        return Subject("catalog", catalog_id(model.key), lineage, model)
    names = did_you_mean(ref, [a.name for a in registry.list()] + lineage.known.close_names(ref))
    raise NotFoundError(f"{ref!r} is not a registered artifact, a local model folder or .gguf file, or a model of "
                        f"kaiyuan's catalog{names}")


def mot_file_subject(path: str | Path, known: Catalog | None = None) -> Subject:
    """``kaiyuan license --mot FILE``: a Model Openness Tool model file as a model licensed as its release says
    (``release.license.distribution``), matched to the catalog by its Hugging Face link or name when it can be."""
    lineage = KnownLineage(None, known)
    record = mot.load_mot_model(path, lineage.known.rules)
    distribution = record.license.get("distribution")
    weights = next((c for c in record.components if c.name == "Model parameters (Final)" and c.license), None)
    named, where = ((distribution.name, "release.license.distribution") if distribution and distribution.name else
                    (weights.license, f"components: Model parameters (Final), line {weights.line}") if weights else
                    (None, "release.license.distribution"))
    license = normalize_license(named) if named and named != mot.UNLICENSED else None
    evidence = [{"field": "license", "value": named, "source": f"{Path(path).name}: {where}"}]
    facts = {"path": str(path), "license": license, "evidence": evidence, "names": [record.name], "base_models": []}
    hub = hub_id_of(record.huggingface)
    model = next((m for m in (lineage.known.find(hub) if hub else None, lineage.known.find(record.name)) if m), None)
    if model is not None:  # a model the catalog knows: its lineage, with the file's own claim beside it
        return Subject("catalog", catalog_id(model.key), lineage, model, facts,
                       f"is {model.key} in the catalog (by its name or Hugging Face link)")
    made = add_local(lineage, record.name, license, None, evidence)
    return Subject("local", made.id, lineage, None, facts, None)


def subject_license(subject: Subject) -> dict[str, Any]:
    """``kaiyuan license --json``: the report, and for what is not registered, what it was matched to."""
    report = license_report(subject.ref, subject.lineage).to_dict()
    if subject.kind != "artifact":
        report["subject"] = {"kind": subject.kind, "catalog": subject.model.key if subject.model else None,
                             "matched": subject.matched, "local": subject.local,
                             "claims": _claims(subject.model) if subject.model else [],
                             "disagreements": disagreements(subject.model) if subject.model else []}
        report["disclaimer"] = DISCLAIMER
    return report


def subject_openness(subject: Subject) -> dict[str, Any]:
    """``kaiyuan openness --json`` for what is not registered: the catalog's answer (of the model, or of the model
    a local file is built on, with the file's own license verdict)."""
    if subject.kind == "catalog" and subject.model is not None:
        answer = catalog_openness(subject.model, subject.lineage.known)
        if subject.local is not None:
            answer["local"] = {**subject.local, "matched": subject.matched}
        return answer
    terms = license_report(subject.ref, subject.lineage)
    return {"model": subject.ref, "name": terms.name, "local": subject.local, "matched": subject.matched,
            "license": {"verdict": terms.verdict, "summary": terms.summary, "weights": terms.license},
            "built_on": catalog_openness(subject.model, subject.lineage.known) if subject.model else None,
            "mof": None, "mof_class": None, "disclaimer": DISCLAIMER,
            "notes": ["A local file is not graded itself: what is known is its own license and, where it names one, "
                      "the catalog model it is built on."]}


# --------------------------------------------------------------------------------- what the catalog changes


def why_not(evidence: str) -> str:
    """The reason part of a component's evidence (what is not open), else the evidence itself."""
    marker = "; not under an open"
    return evidence[evidence.index(marker) + 2:] if marker in evidence else evidence


def _name_of(known: Catalog, key: str | None) -> str | None:
    return known.models[key].name if key and key in known.models else key


def what_the_catalog_changes(model_id: str, registry: Registry) -> dict[str, Any]:
    """A registered model's license verdict and openness read from the registry alone and with kaiyuan's catalog
    grafted on (``[before, after]`` pairs), and which catalog models its lineage reaches (with the data they were
    trained on). JSON-shaped: the demo's summary.json holds it."""
    alone = KnownLineage(registry, Catalog({}, None, {}))
    grafted = KnownLineage(registry)
    known = [grafted.known.models[node["id"].removeprefix("catalog:")] for node in grafted.lineage(model_id)
             if node["id"].startswith("catalog:") and "#" not in node["id"]]
    before, after = license_report(model_id, alone), license_report(model_id, grafted)
    open_before, open_after = openness_report(model_id, alone), openness_report(model_id, grafted)
    new_risks = [r for r in after.risks if r["level"] != "flag" and any(i.startswith("catalog:") for i in r["path"])]
    new_flags = [r for r in after.risks if r["kind"] == "naming" and any(i.startswith("catalog:") for i in r["path"])]
    lost = [c for c in open_after.mof_components if c["required"] and not c["counts"] and any(
        b["name"] == c["name"] and b["class"] == c["class"] and b["counts"] for b in open_before.mof_components)]
    return {
        "known": [{"key": m.key, "name": m.name, "weights": m.weights_license,
                   "pretraining_data": [[d.get("name"), d.get("license")] for d in m.pretraining_data],
                   "tuning_data": [[d.get("name"), d.get("license"), _name_of(grafted.known, d.get("generated_by"))]
                                   for d in m.tuning_data]}
                  for m in known],
        "verdict": [before.verdict, after.verdict], "new_risks": [r["message"] for r in new_risks + new_flags],
        "mof_class": [open_before.mof_class, open_after.mof_class],
        "mof_lost": [f"{c['class']} {c['name']} no longer counts: {why_not(c['evidence'])}" for c in lost],
        "index": [open_before.index_score, open_after.index_score],
    }
