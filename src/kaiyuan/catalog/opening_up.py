"""Read the "Opening up ChatGPT" catalog (Liesenfeld, Lopez & Dingemanse 2023) as it is published.

The catalog (https://opening-up-chatgpt.github.io, CC BY 4.0) rates instruction-tuned text generators open, partial
or closed on 14 dimensions. One YAML file per project in ``projects/``: ``project`` {name, link, notes, llmbase,
rlbase, license}, ``org`` {name, link, notes}, then one {class, link, notes} block per dimension (``projects/readme.md``
documents the criteria; an empty class means "not assessed"). ``A_sample.yaml`` is the contributors' template and
:func:`load_dir` skips it.

Scoring is the catalog's own (``scripts/consolidate_csv.py``, which writes ``docs/df.csv``): every dimension weighs 1;
open counts 1, partial 0.5, closed 0 and an empty or unknown class 0 — a total out of 14. Its table leaves out
projects without a name and sorts by openness (highest first), then by name: :func:`ranked`.

Malformed input raises :class:`~kaiyuan.errors.KaiyuanError` as ``FILE line N: FIELD: message``. What is read
leniently (a missing link or notes field, a class in another case, an empty class, a number where text belongs) is
recorded, one line each, in the record's ``warnings``.

The file-reading parts here (:class:`Rating`, :func:`compose_file`, :class:`FieldReader`) are shared with
:mod:`kaiyuan.catalog.osai_index`: its successor catalog uses the same {class, link, notes} triples.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from kaiyuan.errors import KaiyuanError

ATTRIBUTION = (
    "Openness data from Opening up ChatGPT (https://opening-up-chatgpt.github.io), CC BY 4.0. "
    "Andreas Liesenfeld, Alianda Lopez, and Mark Dingemanse. 2023. Opening up ChatGPT: Tracking openness, "
    "transparency, and accountability in instruction-tuned text generators. In Proceedings of the 5th Conference on "
    "Conversational User Interfaces (CUI '23), July 19-21, 2023, Eindhoven, The Netherlands. "
    "doi:10.1145/3571884.3604316"
)
SOURCE = "https://github.com/opening-up-chatgpt/opening-up-chatgpt.github.io"
TEMPLATE = "A_sample.yaml"

RatingValue = Literal["open", "partial", "closed"]
RATING_VALUES: tuple[RatingValue, ...] = ("open", "partial", "closed")
POINTS: dict[str | None, float] = {"open": 1.0, "partial": 0.5, "closed": 0.0, None: 0.0}

CATEGORIES: dict[str, tuple[str, ...]] = {
    "availability": ("opencode", "llmdata", "llmweights", "rldata", "rlweights", "license"),
    "documentation": ("code", "architecture", "preprint", "paper", "modelcard", "datasheet"),
    "access": ("package", "api"),
}
DIMENSIONS: tuple[str, ...] = tuple(d for dims in CATEGORIES.values() for d in dims)
DIMENSION_NAMES: dict[str, str] = {
    "opencode": "Open code", "llmdata": "LLM data", "llmweights": "LLM weights", "rldata": "RL data",
    "rlweights": "RL weights", "license": "License", "code": "Code", "architecture": "Architecture",
    "preprint": "Preprint", "paper": "Paper", "modelcard": "Modelcard", "datasheet": "Datasheet",
    "package": "Package", "api": "API",
}
WEIGHTS: dict[str, float] = dict.fromkeys(DIMENSIONS, 1.0)
RATING_FIELDS = ("class", "link", "notes")
PROJECT_FIELDS = ("name", "link", "notes", "llmbase", "rlbase", "license")
ORG_FIELDS = ("name", "link", "notes")


@dataclass(frozen=True)
class Rating:
    """One dimension's judgement: ``value`` open / partial / closed, or None where the class was left empty (not
    assessed); ``links`` the evidence, ``notes`` the reasoning; ``line`` where its ``class`` is in ``source_file``."""

    dimension: str
    value: RatingValue | None
    links: tuple[str, ...]
    notes: str | None
    source_file: str
    line: int

    @property
    def link(self) -> str | None:
        """The first evidence link (None when there is none)."""
        return self.links[0] if self.links else None

    @property
    def points(self) -> float:
        """What the catalogs count for it: open 1, partial 0.5, closed or not assessed 0."""
        return POINTS[self.value]


@dataclass(frozen=True)
class OpeningUpProject:
    """One project file, in the catalog's own terms: ``llm_base`` / ``rl_base`` are its ``llmbase`` (the base
    language model) and ``rlbase`` (the instruction / RLHF data or model it was tuned with); ``license_text`` its
    ``project.license`` as written. ``extra`` holds fields the format does not define, keyed by dotted path."""

    file: str
    key: str
    name: str | None
    links: tuple[str, ...]
    notes: str | None
    llm_base: str | None
    rl_base: str | None
    license_text: str | None
    org_name: str | None
    org_links: tuple[str, ...]
    org_notes: str | None
    dimensions: dict[str, Rating]
    extra: dict[str, Any]
    warnings: tuple[str, ...]

    @property
    def link(self) -> str | None:
        """The project's first link."""
        return self.links[0] if self.links else None

    @property
    def org_link(self) -> str | None:
        """The organisation's first link."""
        return self.org_links[0] if self.org_links else None

    @property
    def source_url(self) -> str:
        """Where the file is published."""
        return f"{SOURCE}/blob/main/projects/{Path(self.file).name}"

    @property
    def score(self) -> float:
        """:func:`score` of this project."""
        return score(self)


@dataclass(frozen=True)
class Node:
    """One composed YAML value: ``value`` a dict of Nodes, a list of Nodes or a plain scalar; ``line`` (1-based) the
    line of its key (or of the value itself in a list); ``raw`` a scalar's text exactly as written."""

    value: Any
    line: int
    raw: str | None = None


def display_name(path: Path) -> str:
    """How errors name a catalog file: its folder and name, e.g. ``projects/alpaca.yaml``."""
    return f"{path.parent.name}/{path.name}" if path.parent.name else path.name


def compose_file(path: Path, file: str) -> Node:
    """Parse one YAML file into :class:`Node` values that remember their lines; ``file`` names it in errors.

    Repeated keys, a second document, undecodable bytes and YAML syntax errors raise KaiyuanError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KaiyuanError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise KaiyuanError(f"{file} line {line}: not UTF-8 text") from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise KaiyuanError(f"{file} line 1: the file is empty")
        return _convert(loader, root, file, "", root.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context
        if exc.context and exc.problem and exc.problem.startswith("but "):
            problem = f"{exc.context}, {exc.problem}"
        raise KaiyuanError(f"{file} line {line}: not valid YAML: {problem}") from exc
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
        position = getattr(exc, "position", 0)
        reason = getattr(exc, "reason", str(exc))
        raise KaiyuanError(f"{file} line {text.count(chr(10), 0, position) + 1}: not valid YAML: {reason}") from exc
    finally:
        loader.dispose()


def _convert(loader: yaml.SafeLoader, node: yaml.Node, file: str, path: str, line: int) -> Node:
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise KaiyuanError(f"{file} line {key_line}: {path or 'top level'}: a key must be plain text")
            key = key_node.value
            field = f"{path}.{key}" if path else key
            if key in items:
                raise KaiyuanError(f"{file} line {key_line}: {field}: given twice (first on line {items[key].line})")
            items[key] = _convert(loader, value_node, file, field, key_line)
        return Node(items, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_convert(loader, item, file, f"{path}[{i}]", item.start_mark.line + 1)
                     for i, item in enumerate(node.value)], line)
    try:
        value = loader.construct_object(node, deep=True)
    except (ValueError, yaml.YAMLError) as exc:
        raise KaiyuanError(f"{file} line {line}: {path}: cannot read {node.value!r}: {exc}") from exc
    return Node(value, line, node.value)


def plain(node: Node) -> Any:
    """The value without line numbers."""
    if isinstance(node.value, dict):
        return {k: plain(v) for k, v in node.value.items()}
    if isinstance(node.value, list):
        return [plain(v) for v in node.value]
    return node.value


def kind(value: Any) -> str:
    """A value's kind, for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (dt.date, dt.datetime)):
        return "a date"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "text"


class FieldReader:
    """Reads the fields of one composed file: errors are KaiyuanError ``FILE line N: FIELD: message``, and every
    lenient reading is appended to ``warnings`` in the same form."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.warnings: list[str] = []

    def error(self, line: int, field: str, message: str) -> KaiyuanError:
        return KaiyuanError(f"{self.file} line {line}: {field}: {message}")

    def warn(self, line: int, field: str, message: str) -> None:
        self.warnings.append(f"{self.file} line {line}: {field}: {message}")

    def root(self, node: Node, what: str) -> dict[str, Node]:
        """The top-level mapping of a catalog file."""
        if not isinstance(node.value, dict):
            raise KaiyuanError(f"{self.file} line {node.line}: expected a mapping of fields ({what}), "
                               f"found {kind(node.value)}")
        return node.value

    def section(self, root: dict[str, Node], key: str, line: int, fields: Iterable[str],
                extra: dict[str, Any], aliases: dict[str, str] | None = None) -> tuple[dict[str, Node], int]:
        """A metadata block such as ``org``: its fields (aliases renamed, with a warning) and its line; a missing
        block reads as empty (warned); fields the format does not define go to ``extra`` (warned)."""
        node = root.get(key)
        if node is None:
            self.warn(line, key, "missing; its fields read as empty")
            return {}, line
        if not isinstance(node.value, dict):
            raise self.error(node.line, key, f"expected a mapping, found {kind(node.value)}")
        known = set(fields)
        items: dict[str, Node] = {}
        for name, child in node.value.items():
            target = (aliases or {}).get(name, name)
            if target != name:
                if target in node.value:
                    raise self.error(child.line, f"{key}.{name}", f"given twice, also as {key}.{target}")
                self.warn(child.line, f"{key}.{name}", f"read as {key}.{target}")
            if target in known:
                items[target] = child
            else:
                self.warn(child.line, f"{key}.{name}", "not a field of this catalog's format; kept in extra")
                extra[f"{key}.{name}"] = plain(child)
        return items, node.line

    def text(self, items: dict[str, Node], key: str, field: str, line: int) -> str | None:
        """A text field: None when empty; a missing field reads as empty (warned); a number, date or true/false
        is kept as written (warned); a list or mapping is an error."""
        node = items.get(key)
        if node is None:
            self.warn(line, field, "missing; read as empty")
            return None
        value = node.value
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list)):
            raise self.error(node.line, field, f"expected text, found {kind(value)}")
        self.warn(node.line, field, f"{kind(value)} read as the text {node.raw!r}")
        return node.raw

    def links(self, items: dict[str, Node], key: str, field: str, line: int) -> tuple[str, ...]:
        """A link field: one URL or a list of URLs; empty → (); a missing field reads as empty (warned)."""
        node = items.get(key)
        if node is None:
            self.warn(line, field, "missing; read as empty")
            return ()
        value = node.value
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,) if value.strip() else ()
        if not isinstance(value, list):
            raise self.error(node.line, field, f"expected a URL or a list of URLs, found {kind(value)}")
        links: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item.value, (str, type(None))):
                raise self.error(item.line, f"{field}[{i}]", f"expected a URL, found {kind(item.value)}")
            if item.value is None or not item.value.strip():
                self.warn(item.line, f"{field}[{i}]", "empty link left out")
            else:
                links.append(item.value)
        return tuple(links)

    def rating(self, root: dict[str, Node], dimension: str, line: int) -> Rating:
        """One {class, link, notes} block. A missing block, a missing class, an unknown field or a class that is
        not open / partial / closed is an error; an empty class is "not assessed" (warned); a class in another case
        or with spaces around it is read as the word (warned: the catalogs' own scoring matches the exact word)."""
        node = root.get(dimension)
        if node is None:
            raise self.error(line, dimension, "missing")
        if not isinstance(node.value, dict):
            raise self.error(node.line, dimension,
                             f"expected a mapping of class, link and notes, found {kind(node.value)}")
        items: dict[str, Node] = node.value
        for name, child in items.items():
            if name not in RATING_FIELDS:
                raise self.error(child.line, f"{dimension}.{name}", "not a field of a rating (class, link, notes)")
        field = f"{dimension}.class"
        cls = items.get("class")
        if cls is None:
            raise self.error(node.line, field, "missing")
        value = self.rating_value(cls, field)
        return Rating(dimension, value, self.links(items, "link", f"{dimension}.link", node.line),
                      self.text(items, "notes", f"{dimension}.notes", node.line), self.file, cls.line)

    def rating_value(self, cls: Node, field: str) -> RatingValue | None:
        raw = cls.value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            self.warn(cls.line, field, "empty: not assessed; it counts 0, as in the catalog's own scoring")
            return None
        word = raw.strip().lower() if isinstance(raw, str) else None
        for value in RATING_VALUES:
            if word == value:
                if raw != value:
                    self.warn(cls.line, field, f"{raw!r} read as {value!r} (the catalog's own scoring would count "
                                               "it 0: it matches the exact word only)")
                return value
        shown = raw if isinstance(raw, str) else cls.raw
        raise self.error(cls.line, field, f"{shown!r} is not open, partial or closed")

    def extras(self, root: dict[str, Node], known: Iterable[str], extra: dict[str, Any]) -> None:
        """Top-level keys the format does not define: kept in ``extra``, one warning each."""
        known_set = set(known)
        for name, child in root.items():
            if name not in known_set:
                self.warn(child.line, name, "not a field of this catalog's format; kept in extra")
                extra[name] = plain(child)


def load_file(path: str | Path) -> OpeningUpProject:
    """One project file (the template too, if asked for by name)."""
    path = Path(path)
    file = display_name(path)
    reader = FieldReader(file)
    top = compose_file(path, file)
    root = reader.root(top, "project, org and the 14 dimensions")
    extra: dict[str, Any] = {}
    project, pline = reader.section(root, "project", top.line, PROJECT_FIELDS, extra)
    org, oline = reader.section(root, "org", top.line, ORG_FIELDS, extra)
    name = reader.text(project, "name", "project.name", pline)
    if name is None and "name" in project:
        reader.warn(project["name"].line, "project.name",
                    "empty: the catalog's own table (df.csv) leaves unnamed projects out")
    links = reader.links(project, "link", "project.link", pline)
    notes = reader.text(project, "notes", "project.notes", pline)
    llm_base = reader.text(project, "llmbase", "project.llmbase", pline)
    rl_base = reader.text(project, "rlbase", "project.rlbase", pline)
    license_text = reader.text(project, "license", "project.license", pline)
    org_name = reader.text(org, "name", "org.name", oline)
    org_links = reader.links(org, "link", "org.link", oline)
    org_notes = reader.text(org, "notes", "org.notes", oline)
    dimensions = {d: reader.rating(root, d, top.line) for d in DIMENSIONS}
    reader.extras(root, ("project", "org", *DIMENSIONS), extra)
    return OpeningUpProject(
        file=file, key=path.stem, name=name, links=links, notes=notes, llm_base=llm_base, rl_base=rl_base,
        license_text=license_text, org_name=org_name, org_links=org_links, org_notes=org_notes,
        dimensions=dimensions, extra=extra, warnings=tuple(reader.warnings),
    )


def load_dir(path: str | Path) -> list[OpeningUpProject]:
    """Every ``*.yaml`` project file in ``path`` (the ``projects/`` folder, or the catalog folder holding it), by file
    name, except the template. All or nothing: the first malformed file raises KaiyuanError."""
    folder = Path(path)
    if (folder / "projects").is_dir():
        folder = folder / "projects"
    if not folder.is_dir():
        raise KaiyuanError(f"{folder}: not a folder of Opening up ChatGPT project files")
    files = sorted((p for p in folder.glob("*.yaml") if p.name != TEMPLATE), key=lambda p: p.name)
    if not files:
        raise KaiyuanError(f"{folder}: no project files (*.yaml)")
    return [load_file(p) for p in files]


def all_warnings(projects: Iterable[OpeningUpProject]) -> list[str]:
    """Every lenient reading in these projects, in file order."""
    return [w for p in projects for w in p.warnings]


def score(project: OpeningUpProject) -> float:
    """The catalog's openness sum (out of 14): open 1, partial 0.5, closed or not assessed 0, each dimension weighing
    1 — ``openness`` in ``docs/df.csv``."""
    return sum(WEIGHTS[d] * project.dimensions[d].points for d in DIMENSIONS)


def ranked(projects: Iterable[OpeningUpProject]) -> list[OpeningUpProject]:
    """The projects the catalog's table shows, in its order: named ones only, highest score first, then by name."""
    named = [p for p in projects if p.name is not None]
    return sorted(named, key=lambda p: (-score(p), p.name or ""))
