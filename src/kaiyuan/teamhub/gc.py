"""``kaiyuan hub gc``: the blobs no revision of any repo holds any more (a deleted repo's, an upload whose commit
never came), the temporary files of uploads that never finished, and the upload markers of both, removed once they
are older than a grace period.

Blobs are shared by every repo, so deleting a repo (or a branch) removes only metadata; this is what frees the
bytes. The grace period is what keeps an upload in flight safe: the LFS ``PUT`` lands an object before the NDJSON
commit that names it, and a blob re-uploaded, or announced again to the LFS batch API, is freshened (its mtime
now), so it counts as young again. The blobs are listed *before* the references are read, and each is re-checked
just before it is removed: a blob committed after the listing was freshened by its upload, so it is kept. (A
grace of 0 gives that up: only for a hub nobody is pushing to.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.teamhub.blobs import SHA256, BlobBackend, Stored
from kaiyuan.teamhub.config import HubLocation
from kaiyuan.teamhub.meta import HubDB
from kaiyuan.teamhub.upload import UPLOADS

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True)
class Marker:
    """An upload marker: ``storage/uploads/<type>/<namespace>/<name>/<oid>`` (this repo uploaded that blob)."""

    path: Path
    repo: tuple[str, str, str]  # (repo_type, namespace, name)
    oid: str
    mtime: float


def collect_garbage(location: HubLocation, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                    dry_run: bool = False) -> dict[str, Any]:
    """Remove (with ``dry_run``: only report) what no revision needs and is older than ``grace_seconds``: the
    report counts what was removed, and its bytes."""
    if grace_seconds < 0:
        raise KaiyuanError(f"--grace-seconds {grace_seconds}: expected 0 or more")
    db, blobs = location.open_db(), location.open_blobs()
    try:
        report = collect(db, blobs, location.storage_dir(), grace_seconds, dry_run)
    finally:
        db.engine.dispose()
    return {**report, "storage": str(location.storage_dir()), "database": location.database_kind()}


def collect(db: HubDB, blobs: BlobBackend, storage: Path, grace_seconds: float, dry_run: bool) -> dict[str, Any]:
    """:func:`collect_garbage` on an open database and blob store."""
    cutoff = time.time() - grace_seconds
    stored = [b for b in blobs.iter_blobs() if SHA256.fullmatch(b.name)]  # listed first, then the references
    in_use = db.blobs_in_use()
    unused = [b for b in stored if b.name not in in_use]
    old = [b for b in unused if b.mtime <= cutoff]
    removed = old if dry_run else [b for b in old if blobs.delete(b.name, older_than=cutoff)]
    partial = [p for p in blobs.iter_partial() if p.mtime <= cutoff]
    if not dry_run:
        partial = [p for p in partial if blobs.delete_partial(p.name, older_than=cutoff)]
    gone = {b.name for b in removed}
    stale = stale_markers(db, blobs, storage, cutoff, gone)
    if not dry_run:
        for marker in stale:
            marker.path.unlink(missing_ok=True)
    freed = sum(b.size for b in removed) + sum(p.size for p in partial)
    return {"dry_run": dry_run, "grace_seconds": grace_seconds, "bytes": freed,
            "blobs": {"stored": len(stored), "in_use": len(stored) - len(unused),
                      "in_grace": len(unused) - len(old), "removed": len(removed),
                      "bytes": sum(b.size for b in removed)},
            "partial": {"removed": len(partial), "bytes": sum(p.size for p in partial)},
            "markers": {"removed": len(stale)},
            "removed": [blob_dict(b) for b in removed], "removed_partial": [blob_dict(p) for p in partial]}


def blob_dict(found: Stored) -> dict[str, Any]:
    return {"name": found.name, "size": found.size, "mtime": found.mtime}


def stale_markers(db: HubDB, blobs: BlobBackend, storage: Path, cutoff: float, gone: set[str]) -> list[Marker]:
    """The markers older than ``cutoff`` whose blob is gone (or about to be: ``gone``) or whose repo was deleted.
    A young marker is kept: its repo may be being created, or its blob uploaded, right now."""
    repos = {(r.repo_id.repo_type, r.repo_id.namespace, r.repo_id.name) for r in db.repos()}
    return [m for m in markers(storage) if m.mtime <= cutoff
            and (m.repo not in repos or m.oid in gone or not blobs.has(m.oid))]


def markers(storage: Path) -> Iterator[Marker]:
    """Every upload marker under ``storage`` (anything else there is left alone)."""
    root = storage / UPLOADS
    for path in sorted(root.glob("*/*/*/*")) if root.is_dir() else []:
        if not SHA256.fullmatch(path.name):
            continue
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        repo_dir = path.parent
        yield Marker(path, (repo_dir.parent.parent.name, repo_dir.parent.name, repo_dir.name), path.name, mtime)
