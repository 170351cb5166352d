"""The three published catalogs as kaiyuan ships them: each read in its own format (:mod:`~kaiyuan.catalog.mot`,
:mod:`~kaiyuan.catalog.opening_up`, :mod:`~kaiyuan.catalog.osai_index`) and kept as one JSON file of the records
its reader made — nothing re-interpreted, every record naming the file (and line) it came from.

The package holds one copy of each (``catalog/data/imported/<format>.json``, built from ``../shared/data/openness``
by ``kaiyuan catalog import DIR --format F --into-package``); ``kaiyuan catalog import DIR --format F`` reads a newer
copy of a catalog into ``$KAIYUAN_HOME/catalog/<format>.json``, which then takes the shipped one's place, and
reports what changed (:func:`changes`). Written atomically: a failed import leaves the previous copy in place.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.catalog import mot, opening_up, osai_index
from kaiyuan.errors import KaiyuanError
from kaiyuan.home import kaiyuan_home

Format = Literal["mot", "opening-up", "osai-index"]
FORMATS: tuple[Format, ...] = ("mot", "opening-up", "osai-index")
SCHEMA = 1  # of the JSON files below; bump when a record's shape changes
PACKAGE_DIR = Path(__file__).parent / "data" / "imported"

CATALOG_NAMES = {"mot": "Model Openness Tool (LF AI & Data)", "opening-up": "Opening up ChatGPT",
                 "osai-index": "European Open Source AI Index"}
LICENSES = {"mot": "MIT", "opening-up": "CC-BY-4.0", "osai-index": "CC-BY-4.0"}
ATTRIBUTIONS = {"mot": f"Model Openness Tool, LF AI & Data, {mot.MOT_REPOSITORY} (MIT License)",
                "opening-up": opening_up.ATTRIBUTION, "osai-index": osai_index.ATTRIBUTION}


@dataclass
class ImportedCatalog:
    """One catalog's records, with where they came from."""

    format: Format
    source: str  # the folder they were read from, as given
    records: list[Any]  # MOTModel | OpeningUpProject | OSAISystem
    rules: mot.MOTRules | None = None  # the Model Openness Tool's components and licenses (mot only)
    warnings: list[str] = field(default_factory=list)  # what the reader normalized (never dropped silently)

    @property
    def name(self) -> str:
        return CATALOG_NAMES[self.format]

    @property
    def attribution(self) -> str:
        return ATTRIBUTIONS[self.format]

    def key_of(self, record: Any) -> str:
        return record_key(self.format, record)


def record_key(format: Format, record: Any) -> str:
    """A record's identity within its catalog: its file name without the suffix."""
    return Path(record.path if format == "mot" else record.file).stem


def check_format(format: str) -> Format:
    if format not in FORMATS:
        raise KaiyuanError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    return format  # type: ignore[return-value]


def read_catalog(directory: str | Path, format: str) -> ImportedCatalog:
    """Read a published catalog from its folder (the repository's checkout, or the folder holding ``models/``,
    ``projects/`` or ``systems/``); a malformed file is a KaiyuanError naming file, line and field."""
    fmt = check_format(format)
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise KaiyuanError(f"{root}: not a folder (expected a copy of the {CATALOG_NAMES[fmt]})")
    if fmt == "mot":
        rules_dir = next((d for d in (root / "rules", root / "web" / "modules" / "mof") if d.is_dir()), None)
        models_dir = root / "models"
        if rules_dir is None or not models_dir.is_dir():
            raise KaiyuanError(f"{root}: expected the Model Openness Tool's models/ and rules/ folders")
        rules = _mot_rules(rules_dir)
        # each record named as it is in the tool's repository (models/X.yml), wherever this copy was read from
        models = [dataclasses.replace(m, path=f"models/{Path(m.path).name}")
                  for m in mot.load_mot_models(models_dir, rules)]
        return ImportedCatalog(fmt, str(directory), models, rules=rules)
    reader = opening_up if fmt == "opening-up" else osai_index
    records = reader.load_dir(root)
    return ImportedCatalog(fmt, str(directory), records, warnings=reader.all_warnings(records))


def _mot_rules(directory: Path) -> mot.MOTRules:
    """The tool's rules: ``rules/`` as shared (mof.settings.yml beside the license lists), or the tool's own
    checkout (web/modules/mof/config/install/mof.settings.yml, web/modules/mof/*.json)."""
    if (directory / mot.SETTINGS_FILE).is_file():
        return mot.load_mot_rules(directory)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (mot.SETTINGS_FILE, *mot.LICENSE_FILES):
            found = next(iter(sorted(directory.rglob(name))), None)
            if found is None:
                raise KaiyuanError(f"{directory}: no {name} in the Model Openness Tool's module")
            (Path(tmp) / name).write_bytes(found.read_bytes())
        return mot.load_mot_rules(tmp)


# ------------------------------------------------------------------------------------------ JSON, both ways


def to_plain(value: Any) -> Any:
    """Dataclasses, tuples and mappings as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def from_plain(kind: Any, value: Any) -> Any:
    """``value`` (JSON) as ``kind`` (a dataclass or a typing hint), the inverse of :func:`to_plain`."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        hints = typing.get_type_hints(kind)
        names = {f.name for f in dataclasses.fields(kind) if f.init}
        return kind(**{name: from_plain(hints[name], value[name]) for name in names if name in value})
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(kind)
        item = args[0] if args else Any
        return tuple(from_plain(item, v) for v in value)
    if origin is list:
        [item] = typing.get_args(kind) or (Any,)
        return [from_plain(item, v) for v in value]
    if origin in (dict, Mapping) or kind in (dict, Mapping) or getattr(origin, "__name__", "") == "Mapping":
        args = typing.get_args(kind)
        item = args[1] if len(args) == 2 else Any
        return {k: from_plain(item, v) for k, v in value.items()}
    return value


RECORD_TYPES = {"mot": mot.MOTModel, "opening-up": opening_up.OpeningUpProject, "osai-index": osai_index.OSAISystem}


def catalog_json(catalog: ImportedCatalog) -> str:
    """The catalog as kaiyuan keeps it: one record per line (so a re-import diffs readably)."""
    head = {"schema": SCHEMA, "format": catalog.format, "catalog": catalog.name, "license": LICENSES[catalog.format],
            "attribution": catalog.attribution, "source": catalog.source, "warnings": catalog.warnings,
            "rules": to_plain(catalog.rules) if catalog.rules is not None else None}
    lines = [json.dumps(to_plain(r), sort_keys=True, ensure_ascii=False) for r in
             sorted(catalog.records, key=catalog.key_of)]
    body = json.dumps(head, sort_keys=True, ensure_ascii=False)[:-1]
    return body + ', "records": [\n' + ",\n".join(lines) + "\n]}\n"


def parse_catalog_json(text: str, where: str) -> ImportedCatalog:
    try:
        data = json.loads(text)
        fmt = check_format(data["format"])
        if data.get("schema") != SCHEMA:
            raise KaiyuanError(f"{where}: schema {data.get('schema')!r}, this kaiyuan reads schema {SCHEMA}: "
                               "re-import the catalog (`kaiyuan catalog import`)")
        records = [from_plain(RECORD_TYPES[fmt], r) for r in data["records"]]
        rules = None
        if data.get("rules") is not None:
            raw = data["rules"]
            rules = mot.MOTRules(tuple(from_plain(mot.MOTComponent, c) for c in raw["components"]),
                                 {k: from_plain(mot.MOTLicense, v) for k, v in raw["licenses"].items()})
    except (ValueError, KeyError, TypeError) as exc:
        raise KaiyuanError(f"{where}: not a kaiyuan catalog file ({type(exc).__name__}: {exc})") from None
    return ImportedCatalog(fmt, data.get("source", ""), records, rules, list(data.get("warnings") or []))


# ---------------------------------------------------------------------------------------------- where, what


def home_path(format: Format, home: Path | None = None) -> Path:
    return (home or kaiyuan_home()) / "catalog" / f"{format}.json"


def package_path(format: Format) -> Path:
    return PACKAGE_DIR / f"{format}.json"


_PARSED: dict[tuple[str, int, int], ImportedCatalog] = {}  # (path, mtime_ns, size) → parsed: read once a process


def load_catalog(format: Format, home: Path | None = None) -> ImportedCatalog | None:
    """The catalog in use: the home's re-imported copy if there is one, else the shipped one (None: neither)."""
    for path in (home_path(format, home), package_path(format)):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _PARSED:
            _PARSED[key] = parse_catalog_json(path.read_text(encoding="utf-8"), str(path))
        return _PARSED[key]
    return None


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # a catalog is public knowledge (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Changes:
    """What a re-import changes, by record key."""

    format: Format
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # key → the fields that differ
    rules_changed: bool = False

    @property
    def any(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.rules_changed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"unchanged": not self.any}


IGNORED_FIELDS = ("line",)  # where a record sits in its file is not a change of what it says


def _without_lines(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_lines(v) for k, v in value.items() if k not in IGNORED_FIELDS}
    if isinstance(value, list):
        return [_without_lines(v) for v in value]
    return value


def changes(old: ImportedCatalog | None, new: ImportedCatalog) -> Changes:
    """Records added, removed, and changed (naming the top-level fields that differ)."""
    report = Changes(new.format)
    before = {old.key_of(r): _without_lines(to_plain(r)) for r in old.records} if old else {}
    after = {new.key_of(r): _without_lines(to_plain(r)) for r in new.records}
    report.added = sorted(set(after) - set(before))
    report.removed = sorted(set(before) - set(after))
    for key in sorted(set(before) & set(after)):
        fields = sorted(k for k in after[key] if k not in ("file", "path") and before[key].get(k) != after[key][k])
        if fields:
            report.changed[key] = fields
    report.rules_changed = bool(old and to_plain(old.rules) != to_plain(new.rules))
    return report


def import_catalog(directory: str | Path, format: str, home: Path | None = None,
                   into_package: bool = False) -> tuple[ImportedCatalog, Changes, Path]:
    """Read ``directory`` as ``format`` and keep it (in the home, or in the package's data with ``into_package``);
    returns the catalog, what changed against the copy in use before, and where it was written."""
    fmt = check_format(format)
    new = read_catalog(directory, fmt)
    target = package_path(fmt) if into_package else home_path(fmt, home)
    old = (parse_catalog_json(package_path(fmt).read_text(encoding="utf-8"), str(package_path(fmt)))
           if into_package and package_path(fmt).is_file() else None) if into_package else load_catalog(fmt, home)
    write_atomically(target, catalog_json(new))
    return new, changes(old, new), target
