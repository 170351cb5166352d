"""Search over the hub's repos by what their artifacts are: each commit to a repo's ``main`` whose tree holds a
``manifest.json`` (what ``kaiyuan push`` puts there: kaiyuan's :class:`~kaiyuan.hub.manifest.Manifest`) indexes
its kind, name and license, whether it may be used commercially, the task (``config.task``, e.g. the synthetic
``dates``) and the MOF class.

Commercial use and the MOF class depend on the artifact's whole lineage, which only a registry holds: ``kaiyuan
push`` records them in ``.kaiyuan/reports.json`` (the license verdict and openness report the pushing registry
computed). With that file the card takes the verdict (``yes`` → allowed, ``no`` → not, ``risk`` → unknown) and the
MOF class from it; without it, commercial use is read from the artifact's own license alone (:func:`kaiyuan.hub.
licenses.license_properties`) and the MOF class from the manifest when it records one (``metrics.mof_class`` or
``config.mof_class``), else left unknown — and an unknown class never passes a ``min_mof_class`` filter. The hub
takes the pusher's word for these (a push needs a write token).

``GET /api/kaiyuan/search?q=…&license_allows=commercial&min_mof_class=II&task=…`` answers the matching repos as
JSON (private ones only with a token that may read their namespace); ``kaiyuan hub search`` asks the database
directly.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.licenses import license_properties
from kaiyuan.hub.manifest import MANIFEST_NAME
from kaiyuan.teamhub.context import Hub, HubError, hub_state
from kaiyuan.teamhub.meta import Card, Repo
from kaiyuan.teamhub.share import REPORTS_FILE

router = APIRouter()
log = logging.getLogger(__name__)

BRANCH = "main"  # the branch search reflects
MAX_MANIFEST = 4 << 20  # bytes: a larger manifest.json is not indexed
ROMAN = {"I": 1, "II": 2, "III": 3}
CLASS_NAMES = {1: "Class I", 2: "Class II", 3: "Class III"}  # as kaiyuan.hub.openness names them


def parse_mof_class(value: Any) -> int | None:
    """A MOF class as 1–3 (1 = Class I, the most open): from ``1``/``"1"``, ``"II"`` or ``"Class III"`` (any case);
    None for None; a KaiyuanError for anything else."""
    if value is None:
        return None
    text = "" if isinstance(value, bool) else str(value).strip().upper().removeprefix("CLASS").strip()
    number = ROMAN.get(text) or (int(text) if text in ("1", "2", "3") else None)
    if number is None:
        raise KaiyuanError(f"MOF class {value!r}: expected I, II or III (or 1, 2, 3)")
    return number


def recorded_mof_class(manifest: dict[str, Any]) -> int | None:
    """The MOF class the manifest itself records (metrics, then config), or None."""
    for section in ("metrics", "config"):
        values = manifest.get(section)
        if isinstance(values, dict) and values.get("mof_class") is not None:
            try:
                return parse_mof_class(values["mof_class"])
            except KaiyuanError:
                return None
    return None


VERDICT_COMMERCIAL = {"yes": True, "no": False}  # a license report's verdict → commercial use ("risk": unknown)


def card_fields(manifest: dict[str, Any], reports: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a card holds, read from a manifest and, when the revision has one, its ``.kaiyuan/reports.json`` (both
    as dicts; a report naming another artifact is ignored)."""
    license = str(manifest.get("license") or "NOASSERTION")
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    task = config.get("task")
    commercial, mof_class = license_properties(license).commercial_use, recorded_mof_class(manifest)
    if reports is not None and reports.get("id") == manifest.get("id"):
        verdict = reports.get("license") if isinstance(reports.get("license"), dict) else {}
        if isinstance(verdict.get("verdict"), str):
            commercial = VERDICT_COMMERCIAL.get(verdict["verdict"])
        openness = reports.get("openness") if isinstance(reports.get("openness"), dict) else {}
        if "mof_class" in openness:
            try:
                mof_class = parse_mof_class(openness["mof_class"])
            except KaiyuanError:
                mof_class = None
    return {"kind": str(manifest.get("kind") or "unknown"), "name": str(manifest.get("name") or ""),
            "license": license, "commercial": commercial, "mof_class": mof_class,
            "task": task if isinstance(task, str) and task else None}


def read_json_file(hub: Hub, repo: Repo, sha: str, path: str) -> dict[str, Any] | None:
    """The revision's file ``path`` as a JSON object; None without one (or one that is too large, unreadable or
    not a JSON object)."""
    entry = next((e for e in hub.db.files(repo, sha) if e.path == path), None)
    if entry is None:
        return None
    if entry.size > MAX_MANIFEST:
        log.warning("%s@%s: %s is %d bytes: not indexed", repo.repo_id, sha, path, entry.size)
        return None
    try:
        data = json.loads(b"".join(hub.blobs.read(entry.blob)))
    except (OSError, ValueError) as exc:
        log.warning("%s@%s: %s cannot be read (%s): not indexed", repo.repo_id, sha, path, exc)
        return None
    return data if isinstance(data, dict) else None


def read_manifest(hub: Hub, repo: Repo, sha: str) -> dict[str, Any] | None:
    """The revision's ``manifest.json`` as a dict; None without one (or one that is not a JSON object)."""
    return read_json_file(hub, repo, sha, MANIFEST_NAME)


def index_revision(hub: Hub, repo: Repo, sha: str) -> Card | None:
    """Index revision ``sha`` (the new head of ``main``): its manifest's card, or no card when it has no (readable)
    manifest. Never raises: the commit has landed whatever happens here."""
    try:
        manifest = read_manifest(hub, repo, sha)
        if manifest is None:
            head = hub.db.resolve(repo, BRANCH)
            if head is not None and head.sha == sha:  # main no longer holds an artifact
                hub.db.drop_card(repo)
            return None
        reports = read_json_file(hub, repo, sha, REPORTS_FILE)
        if hub.db.set_card(repo, sha, branch=BRANCH, **card_fields(manifest, reports)):
            return hub.db.card(repo)
    except Exception:  # noqa: BLE001 — a search index failure must not fail a landed commit
        log.exception("%s@%s: indexing for search failed", repo.repo_id, sha)
    return None


def card_dict(card: Card) -> dict[str, Any]:
    return {"repo": str(card.repo_id), "repo_type": card.repo_id.repo_type, "private": card.private,
            "revision": card.sha, "kind": card.kind, "name": card.name, "license": card.license,
            "commercial": card.commercial, "mof_class": CLASS_NAMES.get(card.mof_class) if card.mof_class else None,
            "task": card.task, "updated_at": card.updated_at}


@router.get("/api/kaiyuan/search")
async def search(request: Request, q: str = "", license_allows: str | None = None, min_mof_class: str | None = None,
                 task: str | None = None) -> list[dict[str, Any]]:
    """The repos matching (public ones, and private ones the request's token may read)."""
    if license_allows not in (None, "", "commercial"):
        raise HubError(400, f"license_allows={license_allows!r}: expected commercial", "BadRequest")
    try:
        wanted = parse_mof_class(min_mof_class or None)
    except KaiyuanError as exc:
        raise HubError(400, f"min_mof_class: {exc}", "BadRequest") from exc
    hub = hub_state(request)
    grant = await run_in_threadpool(hub.grant, request)
    cards = await run_in_threadpool(hub.db.search, q, license_allows or None, wanted, task or None,
                                    lambda namespace: grant is not None and grant.can_read(namespace))
    return [card_dict(c) for c in cards]
