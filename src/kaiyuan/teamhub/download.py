"""The Hugging Face Hub's download protocol, as ``huggingface_hub`` (``hf_hub_download``, ``snapshot_download``,
``HfApi.model_info`` / ``list_repo_tree``) and ``transformers``' ``from_pretrained`` speak it.

Routes (models; datasets the same under ``/api/datasets/…`` and ``/datasets/…``):

- ``GET /api/models/{ns}/{name}[/revision/{revision}]``: the repo's info (``sha``, ``siblings``, …).
- ``GET /api/models/{ns}/{name}/tree/{revision}[/{path}]?recursive=&limit=&cursor=``: a folder's entries, paginated
  by a ``Link: <…>; rel="next"`` header whose URL names the commit (so every page lists the same revision).
- ``HEAD|GET /{ns}/{name}/resolve/{revision}/{path}``: a file, streamed from the blob store, one byte range at most.

Revisions and paths arrive percent-encoded (``refs%2Fpr%2F1``); the raw request path is split where the client put
its ``/``. The ETag of every file is the sha256 of its bytes (an LFS file also gets ``X-Linked-Etag`` and
``X-Linked-Size``, as on the Hub); the tree's ``oid`` is git's blob id (for an LFS file, of its pointer). No Xet
header is ever sent, so clients download over plain HTTP.

A damaged blob is never served as valid: the first whole read of a blob is hashed as it streams and its last chunk
is sent only if the hash matches (else the connection drops, so the client holds a short, incomplete download); the
outcome is remembered per file, inode, mtime and size, so later reads of the same unchanged file skip the hashing
(a byte range is served only from a blob so checked; a corrupt one gets 500). Rot that changes none of those is
left to `kaiyuan hub verify`, which re-hashes every blob.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from bisect import bisect_right
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from kaiyuan.teamhub.blobs import BlobBackend
from kaiyuan.teamhub.context import Hub, HubError, hub_state, repo_not_found
from kaiyuan.teamhub.meta import Commit, Entry, Repo, entries
from kaiyuan.teamhub.names import NameError_, check_path, repo_id

router = APIRouter()
log = logging.getLogger(__name__)

KINDS = {"models": "model", "datasets": "dataset"}
PAGE = 1000
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MAX_REF_DEPTH = 16  # a ref name sent with unencoded slashes is looked for up to this many segments


# -- names, revisions, entries ---------------------------------------------------------------------------------


def ascii_safe(text: str) -> str:
    """``text`` fit for an HTTP header (``X-Error-Message`` is latin-1): anything else percent-encoded."""
    return quote(text, safe=" /:@!$&'()*+,;=-._~")


def find_repo(request: Request, repo_type: str, namespace: str, name: str) -> tuple[Hub, Repo]:
    """The hub and the repo, if this request may read it (a name that is not allowed names no repo: 404)."""
    hub = hub_state(request)
    try:
        rid = repo_id(f"{namespace}/{name}", repo_type)
    except NameError_:
        raise repo_not_found(ascii_safe(f"{namespace}/{name}")) from None
    return hub, hub.readable(request, rid)


def revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {ascii_safe(revision)}", "RevisionNotFound")


def find_commit(hub: Hub, repo: Repo, revision: str) -> Commit:
    commit = hub.db.resolve(repo, revision) if revision else None
    if commit is None:
        raise revision_not_found(revision)
    return commit


def split_revision(hub: Hub, repo: Repo, rest: str) -> tuple[Commit, str]:
    """``rest`` (raw, ``<revision>/<path>``) as a commit and a decoded path. Clients encode a revision's ``/`` as
    ``%2F``; one that did not (``refs/pr/1/config.json``) is found by trying longer prefixes as a ref name."""
    segments = rest.split("/")
    for cut in range(1, min(max(len(segments), 2), MAX_REF_DEPTH)):
        revision = unquote("/".join(segments[:cut]))
        commit = hub.db.resolve(repo, revision) if revision else None
        if commit is not None:
            return commit, unquote("/".join(segments[cut:]))
    raise revision_not_found(unquote(segments[0]))


def raw_rest(request: Request, marker: str, decoded: str) -> str:
    """What follows ``marker`` in the raw (still percent-encoded) request path; ``decoded`` re-encoded without it."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        text = raw.decode("latin-1")
        at = text.find(marker)
        if at >= 0:
            return text[at + len(marker):]
    return quote(decoded, safe="/")


def find_entry(hub: Hub, repo: Repo, sha: str, path: str) -> Entry | None:
    """One file of a revision, looked up by its exact (normalized) path; None if it is not there."""
    try:
        path = check_path(path)
    except NameError_:
        return None
    with hub.db.engine.connect() as conn:
        row = conn.execute(sa.select(entries).where(entries.c.repo_id == repo.id, entries.c.commit_sha == sha,
                                                    entries.c.path == path)).first()
    return Entry(row.path, row.blob, row.size, bool(row.lfs)) if row else None


def entry_not_found(path: str, commit: Commit) -> JSONResponse:
    """404 EntryNotFound, with ``X-Repo-Commit`` so the client caches the file's absence for that commit."""
    message = f"Entry not found: {ascii_safe(path)}"
    return JSONResponse({"error": message}, status_code=404,
                        headers={"X-Error-Code": "EntryNotFound", "X-Error-Message": message,
                                 "X-Repo-Commit": commit.sha})


# -- what clients are told about a file ------------------------------------------------------------------------


def lfs_pointer(entry: Entry) -> bytes:
    return LFS_POINTER.format(oid=entry.blob, size=entry.size).encode()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


@lru_cache(maxsize=65536)
def content_git_sha1(blobs: BlobBackend, oid: str) -> str:
    """git's blob id of a stored blob (read in chunks; remembered, as a blob never changes)."""
    digest = hashlib.sha1(b"blob %d\x00" % blobs.size(oid), usedforsecurity=False)
    for chunk in blobs.read(oid):
        digest.update(chunk)
    return digest.hexdigest()


def git_oid(hub: Hub, entry: Entry) -> str:
    """The file's git blob id as the Hub reports it: of the content, or of the LFS pointer for an LFS file."""
    return git_blob_sha1(lfs_pointer(entry)) if entry.lfs else content_git_sha1(hub.blobs, entry.blob)


def iso(timestamp: float) -> str:
    """The Hub's date format, ``2024-05-01T12:00:00.000Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def tree_file(hub: Hub, entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "file", "oid": git_oid(hub, entry), "size": entry.size, "path": entry.path}
    if entry.lfs:
        item["lfs"] = {"oid": entry.blob, "size": entry.size, "pointerSize": len(lfs_pointer(entry))}
    return item


def tree_folder(path: str, inside: list[Entry]) -> dict[str, Any]:
    """A folder; its ``oid`` is a content hash of what it holds (the same files, the same oid)."""
    prefix = len(path) + 1
    listing = json.dumps([[e.path[prefix:], e.blob] for e in inside], separators=(",", ":")).encode()
    return {"type": "directory", "oid": hashlib.sha1(listing, usedforsecurity=False).hexdigest(), "size": 0,
            "path": path}


def tree_items(hub: Hub, files: list[Entry], folder: str, recursive: bool) -> list[dict[str, Any]] | None:
    """The entries under ``folder`` ('' for the root), sorted by path; None if there is no such folder."""
    prefix = f"{folder}/" if folder else ""
    items: list[dict[str, Any]] = []
    folders: dict[str, list[Entry]] = {}
    for entry in files:
        if not entry.path.startswith(prefix):
            continue
        parts = entry.path[len(prefix):].split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            folders.setdefault(prefix + "/".join(parts[:depth]), []).append(entry)
        if recursive or len(parts) == 1:
            items.append(tree_file(hub, entry))
    if folder and not items and not folders:
        return None
    items += [tree_folder(path, inside) for path, inside in folders.items()]
    return sorted(items, key=lambda item: item["path"])


def sibling(hub: Hub, entry: Entry, blobs: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"rfilename": entry.path, "size": entry.size}
    if blobs:
        item["blobId"] = git_oid(hub, entry)
    if entry.lfs:
        item["lfs"] = {"sha256": entry.blob, "size": entry.size, "pointerSize": len(lfs_pointer(entry))}
    return item


def repo_info(hub: Hub, repo: Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
    """The fields ``ModelInfo`` / ``DatasetInfo`` read (those the hub has; counters are 0)."""
    rid = repo.repo_id
    info: dict[str, Any] = {"_id": f"{rid.repo_type}-{repo.id}", "id": rid.id, "author": rid.namespace,
                            "sha": commit.sha, "lastModified": iso(commit.created_at),
                            "createdAt": iso(repo.created_at), "private": repo.private, "gated": False,
                            "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                            "siblings": [sibling(hub, e, blobs) for e in hub.db.files(repo, commit.sha)]}
    if rid.repo_type == "model":
        info["modelId"] = rid.id
    return info


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


# -- repo info -------------------------------------------------------------------------------------------------


def info_route(kind: str, request: Request, namespace: str, name: str, revision: str) -> dict[str, Any]:
    hub, repo = find_repo(request, KINDS[kind], namespace, name)
    return repo_info(hub, repo, find_commit(hub, repo, revision), truthy(request.query_params.get("blobs")))


def add_info_routes(kind: str) -> None:
    def info(request: Request, namespace: str, name: str) -> dict[str, Any]:
        """The repo at its ``main`` branch."""
        return info_route(kind, request, namespace, name, "main")

    def info_at(request: Request, namespace: str, name: str, revision: str) -> dict[str, Any]:
        """The repo at a branch, tag or commit (``refs%2Fpr%2F1`` arrives decoded: the whole rest is the revision)."""
        return info_route(kind, request, namespace, name, revision)

    router.add_api_route(f"/api/{kind}/{{namespace}}/{{name}}", info, methods=["GET"])
    router.add_api_route(f"/api/{kind}/{{namespace}}/{{name}}/revision/{{revision:path}}", info_at, methods=["GET"])


# -- tree ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    after: str | None  # the cursor of the next page, None on the last


def page_of(items: list[dict[str, Any]], cursor: str | None, limit: int) -> Page:
    """``limit`` items after the one ``cursor`` names (the urlsafe base64 of the last path of the page before)."""
    start = 0
    if cursor:
        try:
            last = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise HubError(400, "Invalid cursor") from None
        start = bisect_right([item["path"] for item in items], last)
    chunk = items[start:start + limit]
    more = start + limit < len(items)
    return Page(chunk, base64.urlsafe_b64encode(chunk[-1]["path"].encode()).decode() if more and chunk else None)


def page_limit(value: str | None) -> int:
    try:
        limit = int(value) if value else PAGE
    except ValueError:
        raise HubError(400, f"Invalid limit: {ascii_safe(value or '')}") from None
    return max(1, min(limit, PAGE))


def next_link(request: Request, kind: str, repo: Repo, commit: Commit, folder: str, after: str) -> str:
    """The absolute URL of the next page, naming the commit (not the branch, which may move meanwhile)."""
    rid = repo.repo_id
    path = f"/api/{kind}/{rid.id}/tree/{commit.sha}" + (f"/{quote(folder, safe='')}" if folder else "")
    query = {key: value for key, value in request.query_params.items() if key != "cursor"}
    query["cursor"] = after
    return f"<{str(request.base_url).rstrip('/')}{path}?{urlencode(query)}>; rel=\"next\""


def add_tree_route(kind: str) -> None:
    def tree(request: Request, namespace: str, name: str, rest: str) -> Response:
        """A folder's files and subfolders (all of them with ``recursive=true``), ``limit`` (≤ 1000) a page."""
        hub, repo = find_repo(request, KINDS[kind], namespace, name)
        commit, folder = split_revision(hub, repo, raw_rest(request, f"/{namespace}/{name}/tree/", rest))
        folder = folder.strip("/")
        items = tree_items(hub, hub.db.files(repo, commit.sha), folder, truthy(request.query_params.get("recursive")))
        if items is None:
            return entry_not_found(folder, commit)
        page = page_of(items, request.query_params.get("cursor"), page_limit(request.query_params.get("limit")))
        headers = {"X-Repo-Commit": commit.sha}
        if page.after is not None:
            headers["Link"] = next_link(request, kind, repo, commit, folder, page.after)
        return JSONResponse(page.items, headers=headers)

    router.add_api_route(f"/api/{kind}/{{namespace}}/{{name}}/tree/{{rest:path}}", tree, methods=["GET"])


# -- files -----------------------------------------------------------------------------------------------------


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` one ``Range`` header asks for; None for the whole file. Several ranges, bad
    syntax, or a range past the end: 416."""
    if header is None:
        return None
    found = RANGE.fullmatch(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        raise HubError(416, f"Unsupported range: {ascii_safe(header[:100])} (one 'bytes=a-b', 'a-' or '-n')")
    first, last = found.groups()
    if first == "":  # the last n bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise HubError(416, f"Range not satisfiable: {ascii_safe(header[:100])} of {size} bytes")
    return start, end


def file_headers(commit: Commit, entry: Entry) -> dict[str, str]:
    name = entry.path.rsplit("/", 1)[-1]
    headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{entry.blob}"', "Accept-Ranges": "bytes",
               "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}; filename=\"{ascii_safe(name)}\";"}
    if entry.lfs:
        headers["X-Linked-Etag"] = f'"{entry.blob}"'
        headers["X-Linked-Size"] = str(entry.size)
    return headers


def serve_file(request: Request, hub: Hub, commit: Commit, entry: Entry) -> Response:
    """The file (or the range asked for), streamed from the blob store; headers only for HEAD."""
    if not hub.blobs.has(entry.blob):
        raise HubError(500, f"The content of {ascii_safe(entry.path)} is missing from the hub's blob store "
                            "(`kaiyuan hub verify`)")
    headers = file_headers(commit, entry)
    span = byte_range(request.headers.get("range"), entry.size)
    status, (start, end) = (200, (0, entry.size - 1)) if span is None else (206, span)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    headers["Content-Length"] = str(end - start + 1)
    if request.method == "HEAD" or entry.size == 0:
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    known = remembered(hub.blobs, entry.blob)
    if span is None and known is None:  # first whole read of this blob as it is now: hashed as it goes
        body = checked_chunks(hub.blobs, entry, commit)  # its last chunk sent only if it matches
    else:  # checked before (remembered per file, inode, mtime, size), or a part: the whole blob checked once first
        if not (known if known is not None else blob_intact(hub.blobs, entry.blob)):
            raise HubError(500, f"The content of {ascii_safe(entry.path)} in the hub's blob store no longer matches "
                                f"its sha256 {entry.blob}: refused (an operator should run `kaiyuan hub verify`)",
                           "CorruptBlob")
        body = hub.blobs.read(entry.blob, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type="application/octet-stream")


# -- a damaged blob is never served as valid -------------------------------------------------------------------


class CorruptBlobError(Exception):
    """Raised inside a file's stream when its bytes do not hash to its sha256: the server drops the connection
    before the last chunk, so the client sees a short body (never a complete file with wrong bytes)."""


VERIFIED_MAX = 65536  # remembered blob checks (a hub holds more blobs: the oldest are forgotten)
BlobKey = Hashable
_verified: dict[BlobKey, bool] = {}
_verified_lock = threading.Lock()
_verifying: dict[BlobKey, threading.Lock] = {}


def blob_key(blobs: BlobBackend, oid: str) -> BlobKey:
    """What a blob check is remembered under: the blob's stamp (on disk: its file, inode, mtime and size), so a
    blob rewritten, in place or replaced, is checked again."""
    return blobs.stamp(oid)


def remember(key: BlobKey, intact: bool) -> None:
    with _verified_lock:
        if len(_verified) >= VERIFIED_MAX:
            _verified.pop(next(iter(_verified)))
        _verified[key] = intact


def remembered(blobs: BlobBackend, oid: str) -> bool | None:
    """What the last check of this blob (as it is now) found; None if it was not checked."""
    key = blob_key(blobs, oid)
    with _verified_lock:
        return _verified.get(key)


def blob_intact(blobs: BlobBackend, oid: str) -> bool:
    """Whether the stored blob still hashes to ``oid``: re-hashed once per (file, mtime, size), then remembered;
    requests for a blob being checked wait for that one check."""
    key = blob_key(blobs, oid)
    with _verified_lock:
        known = _verified.get(key)
        if known is not None:
            return known
        lock = _verifying.setdefault(key, threading.Lock())
    with lock:
        with _verified_lock:
            known = _verified.get(key)
        if known is None:
            known = blobs.verify(oid)
            remember(key, known)
            if not known:
                log.error("blob %s no longer matches its sha256: ranged downloads of it are refused "
                          "(`kaiyuan hub verify` names the files that use it)", oid)
    with _verified_lock:
        _verifying.pop(key, None)
    return known


def checked_chunks(blobs: BlobBackend, entry: Entry, commit: Commit) -> Iterator[bytes]:
    """The whole blob of ``entry`` in chunks, hashed as they are read; the last chunk is held back until the hash
    is known and, if the bytes no longer match ``entry.blob``, never sent: :class:`CorruptBlobError` is raised
    instead and the connection drops. The outcome is remembered for ranged requests."""
    key = blob_key(blobs, entry.blob)
    digest, held, total = hashlib.sha256(), None, 0
    for chunk in blobs.read(entry.blob, 0, entry.size - 1):
        digest.update(chunk)
        total += len(chunk)
        if held is not None:
            yield held
        held = chunk
    intact = total == entry.size and digest.hexdigest() == entry.blob
    remember(key, intact)
    if not intact:
        log.error("corrupt blob %s: %s at revision %s no longer hashes to it (%d byte(s) read); the download was "
                  "cut short before its last chunk (run `kaiyuan hub verify`)", entry.blob, entry.path, commit.sha,
                  total)
        raise CorruptBlobError(f"blob {entry.blob} of {entry.path} no longer matches its sha256")
    if held is not None:
        yield held


def add_resolve_route(kind: str) -> None:
    prefix = "" if kind == "models" else f"/{kind}"

    def resolve(request: Request, namespace: str, name: str, rest: str) -> Response:
        """``HEAD`` (what ``hf_hub_download`` asks first: commit, ETag, size) or ``GET`` of one file."""
        hub, repo = find_repo(request, KINDS[kind], namespace, name)
        commit, path = split_revision(hub, repo, raw_rest(request, f"{prefix}/{namespace}/{name}/resolve/", rest))
        entry = find_entry(hub, repo, commit.sha, path)
        if entry is None:
            return entry_not_found(path, commit)
        return serve_file(request, hub, commit, entry)

    router.add_api_route(f"{prefix}/{{namespace}}/{{name}}/resolve/{{rest:path}}", resolve, methods=["GET", "HEAD"])


for _kind in ("datasets", "models"):  # datasets first: /datasets/… must not be read as a model named datasets/…
    add_info_routes(_kind)
    add_tree_route(_kind)
    add_resolve_route(_kind)
