"""What a team hub repo's page shows of one revision, read from the revision's own files: its files, its card
(``README.md``), the lineage ``kaiyuan push`` recorded (``.kaiyuan/lineage.json``) and the license verdict,
openness report and lineage graph the pushing registry computed (``.kaiyuan/reports.json``).

Everything in a revision was written by whoever pushed it, so it is untrusted input: each JSON file is read into
small view objects of plain strings and numbers (a field of the wrong type is left out or makes its section
"unreadable", never an error page), and the templates escape all of it. Nothing here executes or unpickles a file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup

from kaiyuan.hub.registry import human_size
from kaiyuan.teamhub.context import Hub
from kaiyuan.teamhub.meta import Entry
from kaiyuan.teamhub.names import NameError_, RepoId, repo_id
from kaiyuan.teamhub.share import LINEAGE_FILE, PICKLE_SUFFIXES, REPORTS_FILE
from kaiyuan.web.lineage_svg import Node, graph_from_dict, graph_svg
from kaiyuan.web.model_pages import split_front_matter

MAX_JSON = 4 << 20  # bytes: a larger reports.json / lineage.json is not read
MAX_README = 1 << 20  # bytes: a larger README.md is not rendered
SHA1 = re.compile(r"^[0-9a-f]{40}$")
FRONT_KEY = re.compile(r"^([A-Za-z0-9_.-]{1,64}):(.*)$")


class Unreadable(ValueError):
    """A file, or a section of one, that is not what kaiyuan writes there."""


# ------------------------------------------------------------------------------------------------ links


def repo_path(rid: RepoId) -> str:
    """The page of a repo: ``/ns/name`` (a model) or ``/datasets/ns/name``."""
    return f"/{rid}"


def revision_link(rid: RepoId, revision: str | None = None) -> str:
    return repo_path(rid) + (f"?{urlencode({'revision': revision})}" if revision and revision != "main" else "")


def pushed_repo_link(repo: Any, revision: Any) -> str | None:
    """The page of a repo a lineage names (``ns/name``, pushed as a model repo) at the revision it names; None
    when the name is not a valid repo name."""
    if not isinstance(repo, str):
        return None
    try:
        rid = repo_id(repo)
    except NameError_:
        return None
    return revision_link(rid, revision if isinstance(revision, str) and SHA1.fullmatch(revision) else None)


# ------------------------------------------------------------------------------------------------ files


@dataclass
class FileRow:
    path: str
    size: str
    lfs: bool
    sha256: str | None  # LFS files: the sha256 of their content
    url: str
    pickle: bool


def is_pickle(path: str) -> bool:
    return path.lower().endswith(PICKLE_SUFFIXES)


def file_rows(rid: RepoId, sha: str, files: list[Entry]) -> list[FileRow]:
    """The revision's files, each with its download link (``/{repo}/resolve/{sha}/{path}``, the HF route)."""
    return [FileRow(e.path, human_size(e.size), e.lfs, e.blob if e.lfs else None,
                    f"/{rid}/resolve/{sha}/{quote(e.path, safe='/')}", is_pickle(e.path)) for e in files]


def read_bytes(hub: Hub, entry: Entry, limit: int) -> bytes:
    if entry.size > limit:
        raise Unreadable(f"{entry.path} is {human_size(entry.size)}: larger than the {human_size(limit)} shown")
    try:
        return b"".join(hub.blobs.read(entry.blob))
    except OSError as exc:
        raise Unreadable(f"{entry.path} cannot be read from the blob store ({type(exc).__name__})") from None


def read_json(hub: Hub, entry: Entry) -> dict[str, Any]:
    data = read_bytes(hub, entry, MAX_JSON)
    try:
        loaded = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Unreadable(f"{entry.path} is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(loaded, dict):
        raise Unreadable(f"{entry.path} is not a JSON object")
    return loaded


# ------------------------------------------------------------------------------------------------ coercion


def text(value: Any, limit: int = 2000) -> str:
    """A JSON value as text for the page: strings as they are, numbers and booleans as JSON writes them, anything
    else as compact JSON (so a wrong type shows rather than fails)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value[:limit]
    return json.dumps(value, separators=(",", ":"), default=str)[:limit]


def texts(value: Any) -> list[str]:
    return [text(v) for v in value] if isinstance(value, list) else []


def dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def section(reports: dict[str, Any], key: str) -> dict[str, Any]:
    value = reports.get(key)
    if not isinstance(value, dict):
        raise Unreadable(f"its {key!r} is {'missing' if value is None else 'not an object'}")
    return value


def number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


# ------------------------------------------------------------------------------------------------ the card


@dataclass
class CardView:
    body: str  # markdown, rendered with |markdown (raw HTML escaped)
    metadata: list[tuple[str, str]] = field(default_factory=list)  # the front matter's top-level keys
    problem: str = ""


def front_matter_rows(metadata: str) -> list[tuple[str, str]]:
    """The top-level ``key: value`` lines of a card's YAML front matter, nested lines joined to their key (read as
    text: no YAML parser runs on it)."""
    rows: list[tuple[str, str]] = []
    for line in metadata.splitlines():
        found = FRONT_KEY.match(line)
        if found:
            rows.append((found.group(1), found.group(2).strip()))
        elif rows and line.strip():
            key, value = rows[-1]
            rows[-1] = (key, f"{value} {line.strip()}".strip())
    return [(key, value[:500]) for key, value in rows[:100]]


def card_view(hub: Hub, files: dict[str, Entry]) -> CardView | None:
    entry = files.get("README.md")
    if entry is None:
        return None
    try:
        content = read_bytes(hub, entry, MAX_README).decode("utf-8", errors="replace")
    except Unreadable as exc:
        return CardView("", problem=str(exc))
    metadata, body = split_front_matter(content.replace("\r\n", "\n"))
    return CardView(body, front_matter_rows(metadata))


# ------------------------------------------------------------------------------------------------ lineage.json


@dataclass
class Ancestor:
    id: str
    kind: str
    name: str
    repo: str
    revision: str
    href: str | None


def ancestors(hub: Hub, files: dict[str, Entry]) -> tuple[list[Ancestor] | None, str]:
    """The ancestors ``.kaiyuan/lineage.json`` names (None without the file), or why they cannot be read."""
    entry = files.get(LINEAGE_FILE)
    if entry is None:
        return None, ""
    try:
        listed = read_json(hub, entry).get("ancestors")
        if not isinstance(listed, list):
            raise Unreadable(f"{LINEAGE_FILE} has no list of ancestors")
    except Unreadable as exc:
        return [], f"lineage unreadable: {exc}"
    return [Ancestor(text(a.get("id"), 255), text(a.get("kind"), 32), text(a.get("name"), 255),
                     text(a.get("repo"), 200), text(a.get("revision"), 64),
                     pushed_repo_link(a.get("repo"), a.get("revision"))) for a in dicts(listed)], ""


# ------------------------------------------------------------------------------------------------ reports.json


@dataclass
class LicenseView:
    verdict: str
    license: str
    summary: str
    obligations: list[str]
    use_policies: list[str]
    user_cap: str
    risks: list[tuple[str, str]]  # (level, message)
    evidence: list[tuple[str, str, str, str]]  # (path, role, license, license recorded)


@dataclass
class ProgressRow:
    name: str
    met: str
    required: str
    missing: list[tuple[str, str]]  # (component, why) of this class's own components
    inherited: int  # missing components of the classes below (III before II before I)


@dataclass
class ComponentRow:
    name: str
    mof_class: str
    required: bool
    counts: bool
    evidence: str
    license: str


@dataclass
class OpennessView:
    mof_class: str | None  # exactly as the report says ("Class II"); None: not even Class III
    progress: list[ProgressRow]
    components: list[ComponentRow]
    osaid_passes: bool | None
    osaid_reasons: list[str]
    index: list[tuple[str, str, str, str]]  # (name, group, score, evidence)
    index_score: str
    index_max: str
    notes: list[str]


@dataclass
class ReportsView:
    artifact_id: str = ""
    computed_at: str = ""
    kaiyuan: str = ""
    problem: str = ""  # the whole file is unreadable
    license: LicenseView | None = None
    license_problem: str = ""
    openness: OpennessView | None = None
    openness_problem: str = ""
    lineage: Markup | None = None
    lineage_nodes: int = 0
    lineage_problem: str = ""


def license_view(reports: dict[str, Any]) -> LicenseView:
    data = section(reports, "license")
    if not isinstance(data.get("verdict"), str):
        raise Unreadable("its license verdict is missing")
    return LicenseView(
        data["verdict"][:32], text(data.get("license"), 255), text(data.get("summary")), texts(data.get("obligations")),
        texts(data.get("use_policies")), text(data.get("user_cap"), 32),
        [(text(r.get("level"), 32), text(r.get("message"))) for r in dicts(data.get("risks"))],
        [(text(e.get("path_text")), text(e.get("role"), 64), text(e.get("license"), 255) or "unknown",
          text(e.get("license_recorded"), 255)) for e in dicts(data.get("evidence"))])


def progress_rows(progress: Any) -> list[ProgressRow]:
    rows = []
    for name, step in (progress.items() if isinstance(progress, dict) else []):
        if not isinstance(step, dict):
            continue
        missing = dicts(step.get("missing"))
        own = [(text(m.get("name"), 255), text(m.get("reason"))) for m in missing if m.get("class") == name]
        rows.append(ProgressRow(text(name, 64), text(step.get("met"), 16), text(step.get("required"), 16), own,
                                len(missing) - len(own)))
    return rows


def openness_view(reports: dict[str, Any]) -> OpennessView:
    data = section(reports, "openness")
    if "mof_class" not in data or not isinstance(data["mof_class"], str | None):
        raise Unreadable("its MOF class is missing or not text")
    osaid = data.get("osaid") if isinstance(data.get("osaid"), dict) else {}
    passes = osaid.get("passes") if isinstance(osaid.get("passes"), bool) else None
    components = [ComponentRow(text(c.get("name"), 255), text(c.get("class"), 32), c.get("required") is True,
                               c.get("counts") is True, text(c.get("evidence")), text(c.get("license"), 255))
                  for c in dicts(data.get("mof_components"))]
    index = [(text(d.get("name"), 255), text(d.get("group"), 64), text(d.get("score"), 16), text(d.get("evidence")))
             for d in dicts(data.get("index"))]
    return OpennessView(data["mof_class"][:64] if data["mof_class"] else None, progress_rows(data.get("progress")),
                        components, passes, texts(osaid.get("reasons")), index, text(number(data.get("index_score"))),
                        text(number(data.get("index_max"))), texts(data.get("notes")))


def lineage_view(reports: dict[str, Any], current: str, link_current: str) -> tuple[Markup, int]:
    """The SVG of the recorded lineage, each node linking to the repo it was pushed to (the artifact itself: this
    page), and how many nodes it has."""
    data = section(reports, "lineage")
    try:
        graph = graph_from_dict(data, current)
    except ValueError as exc:
        raise Unreadable(str(exc)) from None
    links = {text(n.get("id"), 255): pushed_repo_link(n.get("repo"), n.get("revision")) for n in dicts(data["nodes"])}
    links[current] = link_current

    def link(node: Node) -> str | None:
        return links.get(node.id)

    name = graph.nodes[current].name if current in graph.nodes else current
    return graph_svg(graph, name, link), len(graph.nodes)


def guarded(build: Callable[[], Any]) -> tuple[Any, str]:
    """``build()``, or None and why the section is unreadable (any surprise in the data, never a 500)."""
    try:
        return build(), ""
    except Unreadable as exc:
        return None, f"report unreadable: {exc}"
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
        return None, f"report unreadable: {type(exc).__name__}"


def reports_view(hub: Hub, files: dict[str, Entry], page: str) -> ReportsView | None:
    """The reports of the revision (None without ``.kaiyuan/reports.json``); ``page`` is this revision's page (the
    artifact's own node of the lineage links there)."""
    entry = files.get(REPORTS_FILE)
    if entry is None:
        return None
    try:
        reports = read_json(hub, entry)
    except Unreadable as exc:
        return ReportsView(problem=f"report unreadable: {exc}")
    current = text(reports.get("id"), 255)
    view = ReportsView(current, text(reports.get("computed_at"), 64), text(reports.get("kaiyuan"), 64))
    view.license, view.license_problem = guarded(lambda: license_view(reports))
    view.openness, view.openness_problem = guarded(lambda: openness_view(reports))
    drawn, view.lineage_problem = guarded(lambda: lineage_view(reports, current, page))
    if drawn is not None:
        view.lineage, view.lineage_nodes = drawn
    return view
