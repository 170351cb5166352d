"""The catalog kaiyuan answers from: its own records of well-known models (``catalog/data/models.yaml``: lineage,
tuning data, licenses, each claim with its source) joined with the three published catalogs
(:mod:`kaiyuan.catalog.imported`: the Model Openness Tool, Opening up ChatGPT, the European Open Source AI Index).

A curated entry names the file that describes it in each catalog (``catalogs:``); every catalog record no curated
entry names is an entry of its own (``mot/<file>``, ``opening-up/<file>``, ``osai-index/<file>``), so that every
model any of the three catalogs covers can be looked up. :meth:`Catalog.find` takes a key, an alias, a Hugging Face
id (any case) or a catalog record's name.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kaiyuan.catalog import imported
from kaiyuan.catalog.mot import MOTModel, MOTRules
from kaiyuan.catalog.opening_up import OpeningUpProject
from kaiyuan.catalog.osai_index import OSAISystem
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home

CURATED_FILE = Path(__file__).parent / "data" / "models.yaml"
CURATED_SCHEMA = 1
KAIYUAN = "kaiyuan"  # the catalog name of claims kaiyuan's own records make


@dataclass(frozen=True)
class Source:
    """Where a claim comes from: which catalog, which file (and line), and the link it gives."""

    catalog: str  # kaiyuan | mot | opening-up | osai-index
    url: str | None = None
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"catalog": self.catalog, "url": self.url, "file": self.file}


@dataclass(frozen=True)
class Claim:
    value: Any
    source: Source

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source.to_dict()}


@dataclass
class CatalogModel:
    """One model release, with what each catalog says about it."""

    key: str
    name: str
    family: str | None = None
    producer: str | None = None
    released: str | None = None
    parameters: float | None = None
    kind: str | None = None  # base | instruct | chat | closed
    hub_ids: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)  # keys
    tuning_data: list[dict[str, Any]] = field(default_factory=list)
    pretraining_data: list[dict[str, Any]] = field(default_factory=list)
    licenses: dict[str, Claim] = field(default_factory=dict)  # weights | code | data
    sources: list[str] = field(default_factory=list)
    notes: str | None = None
    curated: bool = False  # from kaiyuan's own records (else only from a catalog)
    mot: MOTModel | None = None
    opening_up: OpeningUpProject | None = None
    osai: OSAISystem | None = None

    @property
    def weights_license(self) -> str | None:
        claim = self.licenses.get("weights")
        return str(claim.value) if claim else None

    def catalogs(self) -> list[str]:
        return [name for name, record in (("mot", self.mot), ("opening-up", self.opening_up),
                                           ("osai-index", self.osai)) if record is not None]


def normalized(text: str) -> str:
    """A name as looked up: lowercase, separators and spaces folded."""
    return re.sub(r"[\s_]+", "-", text.strip().lower()).strip("-")


def hub_id_of(url: str | None) -> str | None:
    """``https://huggingface.co/org/name`` → ``org/name``."""
    if not url:
        return None
    found = re.match(r"^(?:https?://)?(?:www\.)?huggingface\.co/([^/\s]+/[^/\s?#]+)", url.strip())
    return found.group(1) if found else None


@dataclass
class Catalog:
    models: dict[str, CatalogModel]
    rules: MOTRules | None
    imported: dict[str, imported.ImportedCatalog]
    index: dict[str, str] = field(default_factory=dict)  # normalized name → key

    def find(self, name: str) -> CatalogModel | None:
        key = self.index.get(normalized(name))
        return self.models.get(key) if key else None

    def get(self, name: str) -> CatalogModel:
        found = self.find(name)
        if found is None:
            raise KaiyuanError(f"{name!r} is not in kaiyuan's catalog of models (`kaiyuan catalog search {name}` "
                               "lists close names)")
        return found

    def close_names(self, name: str, limit: int = 5) -> list[str]:
        import difflib

        return [self.index[n] for n in difflib.get_close_matches(normalized(name), list(self.index), n=limit)]


def _claim(entry: dict[str, Any], where: str, part: str) -> Claim:
    value = entry.get(part)
    if not isinstance(value, dict) or "id" not in value:
        raise KaiyuanError(f"{where}: licenses.{part}: expected {{id: SPDX or LicenseRef-…, source: URL}}")
    return Claim(str(value["id"]), Source(KAIYUAN, value.get("source")))


def load_curated(path: Path = CURATED_FILE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The curated entries (as written) and the file's header."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KaiyuanError(f"{path}: cannot read kaiyuan's catalog ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != CURATED_SCHEMA or not isinstance(data.get("models"), list):
        raise KaiyuanError(f"{path}: expected schema: {CURATED_SCHEMA} and a list of models")
    return data["models"], {k: v for k, v in data.items() if k != "models"}


def _curated_model(entry: dict[str, Any], where: str) -> CatalogModel:
    try:
        key = str(entry["key"])
        licenses = {part: _claim(entry["licenses"], f"{where} ({key})", part) for part in (entry.get("licenses") or {})}
        return CatalogModel(
            key=key, name=str(entry.get("name") or key), family=entry.get("family"), producer=entry.get("producer"),
            released=str(entry["released"]) if entry.get("released") else None,
            parameters=float(entry["parameters"]) if entry.get("parameters") is not None else None,
            kind=entry.get("kind"), hub_ids=list(entry.get("hub_ids") or []), aliases=list(entry.get("aliases") or []),
            base_models=list(entry.get("base_models") or []), tuning_data=list(entry.get("tuning_data") or []),
            pretraining_data=list(entry.get("pretraining_data") or []), licenses=licenses,
            sources=list(entry.get("sources") or []), notes=entry.get("notes"), curated=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise KaiyuanError(f"{where}: {type(exc).__name__}: {exc}") from None


def _from_mot(record: MOTModel) -> CatalogModel:
    url = f"{imported.mot.MOT_REPOSITORY}/blob/main/{record.path}"
    licenses = {}
    distribution = record.license.get("distribution")
    if distribution is not None and distribution.name:
        licenses["weights"] = Claim(distribution.name, Source("mot", url, record.path))
    for part in ("code", "data"):
        given = record.license.get(part)
        if given is not None and given.name:
            licenses[part] = Claim(given.name, Source("mot", url, record.path))
    hub = hub_id_of(record.huggingface)
    return CatalogModel(key=f"mot/{Path(record.path).stem}", name=record.name, producer=record.producer,
                        released=record.date, hub_ids=[hub] if hub else [], licenses=licenses, sources=[url],
                        mot=record)


def _from_opening_up(record: OpeningUpProject) -> CatalogModel:
    return CatalogModel(key=f"opening-up/{record.key}", name=record.name or record.key, producer=record.org_name,
                        sources=[record.source_url], opening_up=record)


def _from_osai(record: OSAISystem) -> CatalogModel:
    return CatalogModel(key=f"osai-index/{record.key}", name=record.name or record.key, producer=record.org_name,
                        released=record.release_date, sources=[record.index_url], osai=record)


def build_catalog(home: Path | None = None, curated_path: Path = CURATED_FILE) -> Catalog:
    """Join kaiyuan's records with the catalogs in use (see :func:`kaiyuan.catalog.imported.load_catalog`)."""
    catalogs = {fmt: found for fmt in imported.FORMATS if (found := imported.load_catalog(fmt, home)) is not None}
    by_file = {fmt: {Path(c.key_of(r)).name: r for r in c.records} for fmt, c in catalogs.items()}
    entries, _header = load_curated(curated_path)
    models: dict[str, CatalogModel] = {}
    claimed: dict[str, set[str]] = {fmt: set() for fmt in imported.FORMATS}
    for number, entry in enumerate(entries):
        model = _curated_model(entry, f"{curated_path.name}: models[{number}]")
        if model.key in models:
            raise KaiyuanError(f"{curated_path.name}: models[{number}]: key {model.key!r} is used twice")
        for fmt, attribute in (("mot", "mot"), ("opening-up", "opening_up"), ("osai-index", "osai")):
            named = ((entry.get("catalogs") or {}).get(fmt.replace("-", "_")))
            if not named:
                continue
            stem = Path(str(named)).stem
            record = by_file.get(fmt, {}).get(stem)
            if record is not None:
                setattr(model, attribute, record)
                claimed[fmt].add(stem)
        models[model.key] = model
    for fmt, make in (("mot", _from_mot), ("opening-up", _from_opening_up), ("osai-index", _from_osai)):
        for stem, record in sorted(by_file.get(fmt, {}).items()):
            if stem not in claimed[fmt]:
                extra = make(record)
                models[extra.key] = extra
    catalog = Catalog(models, catalogs["mot"].rules if "mot" in catalogs else None, catalogs)
    catalog.index = _index(models)
    return catalog


def _index(models: dict[str, CatalogModel]) -> dict[str, str]:
    """Names → keys; a curated entry's names win over a catalog record's, the first writer of a name wins."""
    index: dict[str, str] = {}
    ordered = sorted(models.values(), key=lambda m: (not m.curated, m.key))
    for model in ordered:  # keys and hub ids first: they are exact
        for name in (model.key, *model.hub_ids):
            index.setdefault(normalized(name), model.key)
    for model in ordered:
        names = [*model.aliases, model.name]
        if model.mot is not None:
            names += [model.mot.name, Path(model.mot.path).stem]
            if hub_id_of(model.mot.huggingface):
                names.append(hub_id_of(model.mot.huggingface))  # type: ignore[arg-type]
        for record in (model.opening_up, model.osai):
            if record is not None:
                names += [record.key, *([record.name] if record.name else [])]
        for name in names:
            index.setdefault(normalized(name), model.key)
    return index


@functools.lru_cache(maxsize=4)
def _cached(home: str | None) -> Catalog:
    return build_catalog(Path(home) if home else None)


def catalog(home: Path | None = None) -> Catalog:
    """The catalog (built once per process and home)."""
    return _cached(str(home or kaiyuan_home()))


def forget_cached_catalog() -> None:
    """After a re-import (``kaiyuan catalog import``)."""
    _cached.cache_clear()
