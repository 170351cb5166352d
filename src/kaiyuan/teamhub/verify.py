"""``kaiyuan hub verify``: every stored blob re-hashed and every revision's files looked up, so that a flipped byte
or a lost blob is named by repo, revision, ref and path."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from kaiyuan.teamhub.blobs import SHA256
from kaiyuan.teamhub.config import HubLocation
from kaiyuan.teamhub.meta import entries, refs, repos
from kaiyuan.teamhub.names import RepoId


def verify_hub(location: HubLocation) -> dict[str, Any]:
    """Every blob re-hashed, every revision's files looked up: ``problems`` (corrupt or missing, each with its
    repo, revision, the refs naming it, path and blob) and ``corrupt_unreferenced`` (damaged blobs no revision
    uses)."""
    db = location.open_db()
    blobs = location.open_blobs()
    stored, corrupt = set(), set()
    for oid in blobs.all():
        stored.add(oid)
        if not SHA256.fullmatch(oid) or not blobs.verify(oid):
            corrupt.add(oid)
    names: dict[tuple[int, str], list[str]] = {}
    rows = []
    with db.engine.connect() as conn:
        for ref in conn.execute(sa.select(refs.c.repo_id, refs.c.name, refs.c.sha).order_by(refs.c.name)):
            names.setdefault((ref.repo_id, ref.sha), []).append(ref.name)
        query = (sa.select(repos.c.id, repos.c.repo_type, repos.c.namespace, repos.c.name, entries.c.commit_sha,
                           entries.c.path, entries.c.blob)
                 .select_from(entries.join(repos, entries.c.repo_id == repos.c.id))
                 .order_by(repos.c.repo_type, repos.c.namespace, repos.c.name, entries.c.commit_sha, entries.c.path))
        rows = list(conn.execute(query))
    db.engine.dispose()
    problems, used = [], set()
    for row in rows:
        used.add(row.blob)
        kind = "corrupt" if row.blob in corrupt else "missing" if row.blob not in stored else None
        if kind is not None:
            problems.append({"problem": kind, "repo": str(RepoId(row.repo_type, row.namespace, row.name)),
                             "revision": row.commit_sha, "refs": names.get((row.id, row.commit_sha), []),
                             "path": row.path, "blob": row.blob})
    revisions = {(row.id, row.commit_sha) for row in rows}
    return {"ok": not problems and not (corrupt - used), "storage": str(location.storage_dir()),
            "database": location.database_kind(), "blobs": len(stored), "revisions": len(revisions),
            "problems": problems, "corrupt_unreferenced": sorted(corrupt - used)}
