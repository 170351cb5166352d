"""``/catalog``: the world's well-known models (kaiyuan's catalog), beside the registry's.

* ``GET /catalog`` — the catalog's models as a table, filtered exactly as ``kaiyuan catalog search`` filters them
  (:func:`kaiyuan.hub.catalog_answers.search_catalog`): ``q``, ``commercial``, ``open_data``, ``max_params``
  (``8e9``, ``8B``, ``350M``), ``mof_class`` (I / II / III) and ``all`` (every catalog record; by default only the
  models kaiyuan's own records describe). A filter it cannot read is a 400 page saying why.
* ``GET /catalog/{key}`` — one model's answer (:func:`kaiyuan.hub.catalog_answers.catalog_openness` and
  :func:`~kaiyuan.hub.catalog_answers.catalog_license`): the license verdict with the path behind every risk, the
  Model Openness Tool's class and components, both openness indexes dimension by dimension, OSAID, the base models
  and data with their licenses, every claim with its source, where the catalogs disagree, and whose data it is.
  Keys may contain ``/`` (``mot/Amber``); a catalog record's own key (``mot/Pythia-70M``) or any name the catalog
  knows redirects to the model it belongs to; anything else is a 404 page.

:func:`known_to_catalog` is what a registered model's page (``/models/{id}``) shows of the catalog models its
lineage reaches. Links taken from the catalogs are shown only when they are ``http(s)``, and open with
``rel="noopener noreferrer"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from kaiyuan.catalog.imported import ATTRIBUTIONS, CATALOG_NAMES
from kaiyuan.catalog.store import Catalog, CatalogModel, catalog
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.catalog_answers import catalog_license, catalog_openness, openness_index, search_catalog
from kaiyuan.hub.known_models import PREFIX, KnownLineage
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.web.context import current_user, ui_state
from kaiyuan.web.render import error_page, page

router = APIRouter(include_in_schema=False)

VERDICT_PILL = {"yes": "good", "no": "bad", "risk": "warn"}
RISK_PILL = {"blocker": "bad", "risk": "warn", "flag": ""}
RATING_PILL = {"open": "good", "partial": "warn", "closed": "bad"}
INDEX_SHORT = {"osai-index": "EU Open Source AI Index", "opening-up": "Opening up ChatGPT"}
ROMAN = {1: "I", 2: "II", 3: "III"}
KAIYUAN_RECORDS = ("kaiyuan's own records (src/kaiyuan/catalog/data/models.yaml): lineage, data and licenses, each "
                   "claim with the source it was read from")
FLAG_ON = ("1", "true", "on", "yes")
PARAMS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e([+-]?\d+))?\s*([kmbt])?\s*$", re.IGNORECASE)
SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def known(request: Request) -> Catalog:
    """The catalog the UI's home uses (its re-imported catalogs, else the shipped ones)."""
    return catalog(ui_state(request).home)


def catalog_url(key: str) -> str:
    return "/catalog/" + quote(key, safe="/")


def safe_url(url: Any) -> str | None:
    """``url`` when it is an http(s) link (what a page may link to), else None (shown as text)."""
    return url if isinstance(url, str) and urlsplit(url.strip()).scheme in ("http", "https") else None


def link_text(url: str, limit: int = 48) -> str:
    """A link as people read it: host and path, shortened."""
    parts = urlsplit(url)
    text = (parts.netloc + parts.path).rstrip("/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def params_text(value: float | None) -> str:
    """6.7e9 → ``6.7B``; None → ``—``."""
    if value is None:
        return "—"
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def number(value: Any) -> str:
    """4.5 → ``4.5``, 12 → ``12``, 4.0 → ``4``."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def parse_params(text: str) -> float | None:
    """``8e9`` / ``8B`` / ``350M`` / ``8000000000`` → a parameter count (``""``: no limit); KaiyuanError else."""
    if not text.strip():
        return None
    found = PARAMS.match(text)
    if found is None:
        raise KaiyuanError(f"max params {text!r}: expected a number of parameters, such as 8e9, 8B or 350M")
    mantissa, exponent, suffix = found.groups()
    return float(mantissa) * 10 ** int(exponent or 0) * SCALE[(suffix or "").lower()]


def flag(value: str) -> bool:
    return value.strip().lower() in FLAG_ON


# ------------------------------------------------------------------------------------------------ the list


@dataclass
class CatalogRow:
    row: dict[str, Any]  # search_catalog's row
    url: str
    params: str
    mof: str  # "Class II", "Unclassified", "—"
    openness: str  # "4.5 / 12", "—"
    index: str  # which index it is from
    catalogs: list[str]  # their names


def catalog_rows(rows: list[dict[str, Any]], known_models: dict[str, CatalogModel]) -> list[CatalogRow]:
    out = []
    for row in rows:
        model = known_models[row["key"]]
        indexes = openness_index(model)[0] if row["openness_index"] else {}
        used = indexes.get(row["openness_index"]) if row["openness_index"] else None
        mof = f"Class {ROMAN[row['mof_class']]}" if row["mof_class"] in ROMAN else (
            "Unclassified" if row["mof_label"] else "—")
        out.append(CatalogRow(row, catalog_url(row["key"]), params_text(row["parameters"]), mof,
                              f"{number(used['score'])} / {number(used['max'])}" if used else "—",
                              INDEX_SHORT.get(row["openness_index"] or "", ""),
                              [CATALOG_NAMES.get(name, name) for name in row["catalogs"]]))
    return out


@router.get("/catalog")
def catalog_page(request: Request, q: str = "", commercial: str = "", open_data: str = "", max_params: str = "",
                 mof_class: str = "", all: str = "", user: str = Depends(current_user)) -> Response:  # noqa: A002
    """The catalog as a table, with ``kaiyuan catalog search``'s filters."""
    found = known(request)
    filters = {"q": q, "commercial": flag(commercial), "open_data": flag(open_data), "max_params": max_params,
               "mof_class": mof_class, "all": flag(all)}
    try:
        rows = search_catalog(found, q, commercial=filters["commercial"], open_data_only=filters["open_data"],
                              max_params=parse_params(max_params), mof_class=mof_class.strip() or None,
                              curated_only=not filters["all"])
    except KaiyuanError as exc:
        return error_page(request, 400, "Cannot filter the catalog", str(exc))
    curated = sum(1 for m in found.models.values() if m.curated)
    return page(request, "catalog.html", active="models", rows=catalog_rows(rows, found.models), filters=filters,
                verdict_pill=VERDICT_PILL, total=len(found.models), curated=curated,
                filtered=any(v for k, v in filters.items() if k != "all"),
                attributions=[(CATALOG_NAMES[name], ATTRIBUTIONS[name]) for name in found.imported],
                kaiyuan_records=KAIYUAN_RECORDS)


# ------------------------------------------------------------------------------------------------ one model


def record_keys(model: CatalogModel) -> list[str]:
    """The keys the catalogs' own records of the model have (``mot/Pythia-70M``): where a curated model joined them
    they are no keys of the catalog any more, but links made before still name them."""
    keys = []
    if model.mot is not None:
        keys.append("mot/" + model.mot.path.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0])
    if model.opening_up is not None:
        keys.append(f"opening-up/{model.opening_up.key}")
    if model.osai is not None:
        keys.append(f"osai-index/{model.osai.key}")
    return keys


def resolve(found: Catalog, key: str) -> CatalogModel | None:
    """The model ``key`` names: a key, a catalog record's key (``mot/Pythia-70M``), or a name the catalog knows."""
    if key in found.models:
        return found.models[key]
    for model in found.models.values():
        if key in record_keys(model):
            return model
    folded = key.lower()
    for model in found.models.values():
        if folded in (k.lower() for k in record_keys(model)):
            return model
    return found.find(key)


@dataclass
class ModelLink:
    key: str
    name: str
    url: str | None  # None: not in the catalog


def model_link(found: Catalog, key: str | None) -> ModelLink | None:
    if not key:
        return None
    model = found.models.get(key)
    return ModelLink(key, model.name if model else key, catalog_url(key) if model else None)


def data_rows(found: Catalog, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tuning / pretraining data with their generator linked and their source checked."""
    return [{**item, "generator": model_link(found, item.get("generated_by")), "source_url": safe_url(item.get(
        "source"))} for item in items]


@router.get("/catalog/{key:path}")
def catalog_model_page(request: Request, key: str, user: str = Depends(current_user)) -> Response:
    """One catalog model: its license verdict, openness and sources."""
    found = known(request)
    model = resolve(found, key)
    if model is None:
        close = found.close_names(key)
        hint = f" Close names: {', '.join(close)}." if close else ""
        return error_page(request, 404, "Not in the catalog", f"{key!r} is not in kaiyuan's catalog of models (see "
                                                               f"the Catalog page).{hint}")
    if model.key != key:
        return RedirectResponse(catalog_url(model.key), status_code=303)
    answer = catalog_openness(model, found)
    terms = catalog_license(model, found)
    attributions = [(CATALOG_NAMES[name], ATTRIBUTIONS[name]) for name in answer["catalogs"]]
    if model.curated:
        attributions.insert(0, ("kaiyuan", KAIYUAN_RECORDS))
    return page(request, "catalog_model.html", active="models", model=model, answer=answer, terms=terms,
                verdict_pill=VERDICT_PILL, risk_pill=RISK_PILL, rating_pill=RATING_PILL, params=params_text(
                    model.parameters), bases=[model_link(found, k) for k in answer["base_models"]],
                tuning=data_rows(found, answer["tuning_data"]), pretraining=data_rows(found,
                                                                                      answer["pretraining_data"]),
                catalog_names={**CATALOG_NAMES, "kaiyuan": "kaiyuan"}, attributions=attributions,
                index_names=INDEX_SHORT, safe_url=safe_url, link_text=link_text, number=number)


# ------------------------------------------------------------------------------------------------ /models/{id}


@dataclass
class KnownModel:
    key: str
    name: str
    license: str | None
    relation: str  # how the lineage reaches it: finetune, quantized, generator (of data it was trained on)…
    depth: int
    url: str


def known_to_catalog(artifact: Artifact, registry: Registry) -> list[KnownModel]:
    """The catalog models a registered artifact's lineage reaches (``catalog:<key>`` nodes, a dataset's or a
    generator's ``#…`` suffix dropped), nearest first; [] when it reaches none (or the catalog cannot be read)."""
    try:
        lineage = KnownLineage(registry)
        steps = lineage.lineage(artifact.id)
    except KaiyuanError:
        return []
    out: dict[str, KnownModel] = {}
    for step in sorted(steps, key=lambda s: s["depth"]):
        if not step["id"].startswith(PREFIX):
            continue
        key = step["id"].removeprefix(PREFIX).split("#", 1)[0]
        model = lineage.known.models.get(key)
        if model is None or key in out:
            continue
        out[key] = KnownModel(key, model.name, model.weights_license, step["relation"], step["depth"],
                              catalog_url(key))
    return list(out.values())
