"""Read the European Open Source AI Index (osai-index.eu) database as it is published.

The index (CC BY 4.0; successor of "Opening up ChatGPT", see :mod:`kaiyuan.catalog.opening_up`) holds one YAML file
per system: ``system`` {name, link, type, performanceclass, basemodelname, endmodelname, endmodellicense,
releasedate, notes}, ``org`` {name, link, notes}, then one {class, link, notes} triple per parameter. The current
database has the 12 parameters its ``_parameters.yml`` lists (``package`` and ``api`` were removed in March 2026);
``a_submission_template.yaml`` and ``_parameters*.yml`` are not systems and :func:`load_dir` skips them, as the site
does.

Scoring is the site's own (Language-Technology-Assessment/website ``composables/models.ts``): a parameter applies
when its types (``_parameters.yml``) include one of the system's comma-separated ``type`` values; open counts 1,
partial 0.5, closed or anything else 0; a category's score is the mean of its applicable parameters and the total
score the mean of all applicable parameters — a fraction of 1 (the site shows it as a percentage). The site lists
systems by score (highest first), then by file name (last first): :func:`ranked`.

Malformed input raises :class:`~kaiyuan.errors.KaiyuanError` as ``FILE line N: FIELD: message``; lenient readings
(``endmodel license`` for ``endmodellicense``, a field the format does not define, a missing link, a release date in
another format) are recorded, one line each, in the record's ``warnings``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kaiyuan.catalog.opening_up import FieldReader, Node, Rating, compose_file, display_name
from kaiyuan.errors import KaiyuanError

ATTRIBUTION = (
    "Openness data from the European Open Source AI Index (https://osai-index.eu), CC BY 4.0. "
    "Liesenfeld, A., Blankvoort, D., Kalra, N. and Dingemanse, M. European Open Source AI Index database. "
    "doi:10.5281/zenodo.15386042. "
    "Liesenfeld, A. and Dingemanse, M., 2024. Rethinking open source generative AI: open-washing and the EU AI Act. "
    "In Proceedings of the 2024 ACM Conference on Fairness, Accountability, and Transparency (FAccT '24), "
    "pp. 1774-1787. doi:10.1145/3630106.3659005"
)
SOURCE = "https://github.com/Language-Technology-Assessment/main-database"
SITE = "https://osai-index.eu"
TEMPLATE = "a_submission_template.yaml"

TYPES: tuple[str, ...] = ("text", "image", "code", "video", "audio")
CATEGORIES: dict[str, tuple[str, ...]] = {
    "availability": ("datasources_basemodel", "datasources_endmodel", "weights_basemodel", "weights_endmodel",
                     "trainingcode"),
    "documentation": ("code", "hardware_architecture", "preprint", "paper", "modelcard", "datasheet"),
    "access": ("licenses",),
}
DIMENSIONS: tuple[str, ...] = tuple(d for dims in CATEGORIES.values() for d in dims)
DIMENSION_NAMES: dict[str, str] = {
    "datasources_basemodel": "Base Model Data", "datasources_endmodel": "End User Model Data",
    "weights_basemodel": "Base Model Weights", "weights_endmodel": "End User Model Weights",
    "trainingcode": "Training Code", "code": "Code Documentation", "hardware_architecture": "Hardware Architecture",
    "preprint": "Preprint", "paper": "Paper", "modelcard": "Modelcard", "datasheet": "Datasheet",
    "licenses": "Licenses",
}
PARAMETER_TYPES: dict[str, tuple[str, ...]] = dict.fromkeys(DIMENSIONS, TYPES)
SYSTEM_FIELDS = ("name", "link", "type", "performanceclass", "basemodelname", "endmodelname", "endmodellicense",
                 "releasedate", "notes")
SYSTEM_ALIASES = {"endmodel license": "endmodellicense"}
ORG_FIELDS = ("name", "link", "notes")
_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december")
MONTHS: dict[str, int] = {name: i for i, m in enumerate(_MONTH_NAMES, 1) for name in (m[:3], m)}


@dataclass(frozen=True)
class OSAISystem:
    """One system file, in the index's own terms. ``type`` is the field as written (e.g. ``"video,audio"``),
    ``types`` its parts; ``release_date`` is ``YYYY-MM``; ``extra`` holds fields the format does not define, keyed by
    dotted path (e.g. ``system.datasources_endmodel``)."""

    file: str
    key: str
    name: str | None
    links: tuple[str, ...]
    type: str | None
    types: tuple[str, ...]
    performance_class: str | None
    base_model_name: str | None
    end_model_name: str | None
    end_model_license: str | None
    release_date: str | None
    notes: str | None
    org_name: str | None
    org_links: tuple[str, ...]
    org_notes: str | None
    dimensions: dict[str, Rating]
    extra: dict[str, Any]
    warnings: tuple[str, ...]

    @property
    def link(self) -> str | None:
        """The system's first link."""
        return self.links[0] if self.links else None

    @property
    def org_link(self) -> str | None:
        """The organisation's first link."""
        return self.org_links[0] if self.org_links else None

    @property
    def index_url(self) -> str:
        """The system's page on osai-index.eu."""
        return f"{SITE}/model/{quote(self.key)}"

    @property
    def score(self) -> float:
        """:func:`score` of this system."""
        return score(self)


def _release_date(reader: FieldReader, items: dict[str, Node], line: int) -> str | None:
    """``YYYY-MM`` as the files write it; ``YYYY MMM`` (the readme's format), ``YYYY/MM`` and full dates are read as
    their month (warned); anything else is an error."""
    field = "system.releasedate"
    node = items.get("releasedate")
    if node is None:
        reader.warn(line, field, "missing; read as empty")
        return None
    value = node.value
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date):
        month = f"{value.year:04d}-{value.month:02d}"
    elif isinstance(value, str):
        text = value.strip()
        if (m := re.fullmatch(r"(\d{4})-(\d{2})", text)) and 1 <= int(m[2]) <= 12:
            if text == value:
                return text
            month = text
        elif (m := re.fullmatch(r"(\d{4})[ /-](\d{1,2})(?:[-/]\d{1,2})?", text)) and 1 <= int(m[2]) <= 12:
            month = f"{m[1]}-{int(m[2]):02d}"
        elif (m := re.fullmatch(r"(\d{4})[ -]([A-Za-z]+)\.?", text)) and m[2].lower() in MONTHS:
            month = f"{m[1]}-{MONTHS[m[2].lower()]:02d}"
        else:
            raise reader.error(node.line, field, f"{value!r} is not a month (YYYY-MM or YYYY MMM)")
    else:
        raise reader.error(node.line, field, f"{node.raw!r} is not a month (YYYY-MM or YYYY MMM)")
    reader.warn(node.line, field, f"{node.raw!r} read as {month!r}")
    return month


def _types(reader: FieldReader, type_text: str | None, items: dict[str, Node], line: int) -> tuple[str, ...]:
    if type_text is None:
        reader.warn(items["type"].line if "type" in items else line, "system.type",
                    "empty: no openness parameter applies, so the system has no score")
        return ()
    types = tuple(t.strip() for t in type_text.split(",") if t.strip())
    for t in types:
        if t not in TYPES:
            reader.warn(items["type"].line, "system.type", f"{t!r} is not one of {', '.join(TYPES)}: "
                                                           "no openness parameter applies to it")
    return types


def load_file(path: str | Path) -> OSAISystem:
    """One system file (the template too, if asked for by name)."""
    path = Path(path)
    file = display_name(path)
    reader = FieldReader(file)
    top = compose_file(path, file)
    root = reader.root(top, "system, org and the 12 openness parameters")
    extra: dict[str, Any] = {}
    system, sline = reader.section(root, "system", top.line, SYSTEM_FIELDS, extra, SYSTEM_ALIASES)
    org, oline = reader.section(root, "org", top.line, ORG_FIELDS, extra)
    name = reader.text(system, "name", "system.name", sline)
    links = reader.links(system, "link", "system.link", sline)
    type_text = reader.text(system, "type", "system.type", sline)
    types = _types(reader, type_text, system, sline)
    performance_class = reader.text(system, "performanceclass", "system.performanceclass", sline)
    base_model_name = reader.text(system, "basemodelname", "system.basemodelname", sline)
    end_model_name = reader.text(system, "endmodelname", "system.endmodelname", sline)
    end_model_license = reader.text(system, "endmodellicense", "system.endmodellicense", sline)
    release_date = _release_date(reader, system, sline)
    notes = reader.text(system, "notes", "system.notes", sline)
    org_name = reader.text(org, "name", "org.name", oline)
    org_links = reader.links(org, "link", "org.link", oline)
    org_notes = reader.text(org, "notes", "org.notes", oline)
    dimensions = {d: reader.rating(root, d, top.line) for d in DIMENSIONS}
    reader.extras(root, ("system", "org", *DIMENSIONS), extra)
    return OSAISystem(
        file=file, key=path.stem, name=name, links=links, type=type_text, types=types,
        performance_class=performance_class, base_model_name=base_model_name, end_model_name=end_model_name,
        end_model_license=end_model_license, release_date=release_date, notes=notes, org_name=org_name,
        org_links=org_links, org_notes=org_notes, dimensions=dimensions, extra=extra,
        warnings=tuple(reader.warnings),
    )


def load_dir(path: str | Path) -> list[OSAISystem]:
    """Every ``*.yaml`` system file in ``path`` (the ``systems/`` folder, or the catalog folder holding it), by file
    name, except the submission template and ``_parameters*``. All or nothing: the first malformed file raises
    KaiyuanError."""
    folder = Path(path)
    if (folder / "systems").is_dir():
        folder = folder / "systems"
    if not folder.is_dir():
        raise KaiyuanError(f"{folder}: not a folder of Open Source AI Index system files")
    files = sorted((p for p in folder.glob("*.yaml") if p.name != TEMPLATE and not p.name.startswith("_parameters")),
                   key=lambda p: p.name)
    if not files:
        raise KaiyuanError(f"{folder}: no system files (*.yaml)")
    return [load_file(p) for p in files]


def all_warnings(systems: Iterable[OSAISystem]) -> list[str]:
    """Every lenient reading in these systems, in file order."""
    return [w for s in systems for w in s.warnings]


def applicable(system: OSAISystem) -> tuple[str, ...]:
    """The parameters that count for this system's types, in the index's order."""
    return tuple(d for d in DIMENSIONS if any(t in system.types for t in PARAMETER_TYPES[d]))


def _mean(system: OSAISystem, dimensions: Iterable[str], what: str) -> float:
    points = [system.dimensions[d].points for d in dimensions]
    if not points:
        raise KaiyuanError(f"{system.file}: system.type: no openness parameter applies to type "
                           f"{system.type!r}, so it has no {what}")
    return sum(points) / len(points)


def score(system: OSAISystem) -> float:
    """The index's openness score, 0 to 1: the mean over the applicable parameters of open 1, partial 0.5, closed
    or not assessed 0."""
    return _mean(system, applicable(system), "score")


def category_scores(system: OSAISystem) -> dict[str, float]:
    """The mean per category (availability, documentation, access) over its applicable parameters."""
    usable = set(applicable(system))
    return {cat: _mean(system, [d for d in dims if d in usable], f"{cat} score") for cat, dims in CATEGORIES.items()}


def ranked(systems: Iterable[OSAISystem]) -> list[OSAISystem]:
    """The systems in the site's order: highest score first, ties by file name, last first."""
    return sorted(systems, key=lambda s: (score(s), Path(s.file).name), reverse=True)
