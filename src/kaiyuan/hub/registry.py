"""The SQLite registry in KAIYUAN_HOME: an index over the artifacts' manifests.

Artifacts are directories under ``KAIYUAN_HOME/artifacts/<id>``. They are written into a staging
directory first, hashed, given their manifest, and renamed into place in one step, so a crash never
leaves a half-written artifact behind a registered id.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import NotFoundError
from kaiyuan.home import artifacts_dir, registry_path
from kaiyuan.hub.manifest import (
    MANIFEST_NAME,
    Manifest,
    Parent,
    atomic_write_json,
    hash_tree,
    kaiyuan_git_commit,
    library_versions,
    text_sha256,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS artifacts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    license TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_name ON artifacts(name);
CREATE TABLE IF NOT EXISTS parents (
    child TEXT NOT NULL REFERENCES artifacts(id),
    parent TEXT NOT NULL REFERENCES artifacts(id),
    relation TEXT NOT NULL,
    PRIMARY KEY (child, parent, relation)
);
"""


@dataclass(frozen=True)
class Artifact:
    id: str
    kind: str
    name: str
    path: Path
    license: str
    sha256: str
    created_at: str
    manifest: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "license": self.license,
                "sha256": self.sha256, "created_at": self.created_at, "path": str(self.path)}


class Registry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or registry_path()
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def add(self, manifest: Manifest, path: Path) -> Artifact:
        data = manifest.to_dict()
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (manifest.id, manifest.kind, manifest.name, str(path), manifest.license, data["sha256"],
                 manifest.created_at, json.dumps(data)),
            )
            conn.execute("DELETE FROM parents WHERE child = ?", (manifest.id,))
            conn.executemany("INSERT OR IGNORE INTO parents VALUES (?, ?, ?)",
                             [(manifest.id, p.id, p.relation) for p in manifest.parents])
        return self.get(manifest.id)

    @staticmethod
    def _row(row: sqlite3.Row) -> Artifact:
        return Artifact(id=row["id"], kind=row["kind"], name=row["name"], path=Path(row["path"]),
                        license=row["license"], sha256=row["sha256"], created_at=row["created_at"],
                        manifest=json.loads(row["manifest"]))

    def find(self, ref: str, kind: str | None = None) -> Artifact | None:
        """An artifact by id, by unique id prefix, or by name (the newest with that name)."""
        kind_sql, kind_args = (" AND kind = ?", [kind]) if kind else ("", [])
        with self._connect() as conn:
            row = conn.execute(f"SELECT * FROM artifacts WHERE id = ?{kind_sql}", [ref, *kind_args]).fetchone()
            if row is None:
                row = conn.execute(
                    f"SELECT * FROM artifacts WHERE name = ?{kind_sql} ORDER BY created_at DESC, rowid DESC",
                    [ref, *kind_args]).fetchone()
            if row is None and len(ref) >= 6:
                rows = conn.execute(f"SELECT * FROM artifacts WHERE id LIKE ?{kind_sql}",
                                    [ref.replace("%", "") + "%", *kind_args]).fetchall()
                row = rows[0] if len(rows) == 1 else None
        return self._row(row) if row else None

    def get(self, ref: str, kind: str | None = None) -> Artifact:
        found = self.find(ref, kind)
        if found is None:
            what = kind or "artifact"
            raise NotFoundError(f"no {what} {ref!r} in the registry {self.path} (see `kaiyuan models list`)")
        return found

    def list(self, kind: str | None = None) -> list[Artifact]:
        with self._connect() as conn:
            if kind:
                rows = conn.execute("SELECT * FROM artifacts WHERE kind = ? ORDER BY created_at, rowid",
                                    (kind,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM artifacts ORDER BY created_at, rowid").fetchall()
        return [self._row(r) for r in rows]

    def parents(self, artifact_id: str) -> list[tuple[str, str]]:
        with self._connect() as conn:
            rows = conn.execute("SELECT parent, relation FROM parents WHERE child = ? ORDER BY rowid",
                                (artifact_id,)).fetchall()
        return [(r["parent"], r["relation"]) for r in rows]

    def lineage(self, artifact_id: str) -> list[dict[str, Any]]:
        """Every ancestor of an artifact, nearest first: how each one fed the artifact below it."""
        chain: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        frontier = [(artifact_id, 0)]
        while frontier:
            child, depth = frontier.pop(0)
            for parent_id, relation in self.parents(child):
                if (parent_id, child) in seen:
                    continue
                seen.add((parent_id, child))
                parent = self.find(parent_id)
                node = {"id": parent_id, "child": child, "relation": relation, "depth": depth + 1}
                if parent is None:
                    node.update(kind=None, name=None, license=None, sha256=None, missing=True)
                else:
                    node.update(kind=parent.kind, name=parent.name, license=parent.license,
                                sha256=parent.sha256, source=parent.manifest.get("source"))
                    frontier.append((parent_id, depth + 1))
                chain.append(node)
        return chain


@dataclass
class ArtifactWriter:
    """Write an artifact atomically: fill ``writer.path``, and on leaving the block it is hashed,
    given its manifest, renamed into ``artifacts/<id>`` and registered.

    >>> with ArtifactWriter("dataset", "dates-train", license="Apache-2.0", source="...") as writer:
    ...     (writer.path / "data.jsonl").write_text(...)
    >>> writer.artifact.id
    """

    kind: str
    name: str
    license: str
    source: str
    parents: list[Parent] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    chat_template: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None

    def __post_init__(self) -> None:
        self.path = artifacts_dir() / f".staging-{uuid.uuid4().hex}"

    def __enter__(self) -> ArtifactWriter:
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.artifact = self._publish()
        finally:
            if self.path.exists():
                shutil.rmtree(self.path, ignore_errors=True)

    def _publish(self) -> Artifact:
        manifest = Manifest(
            kind=self.kind, name=self.name, license=self.license, source=self.source,
            files=hash_tree(self.path), parents=list(self.parents), config=self.config, seed=self.seed,
            chat_template_sha256=text_sha256(self.chat_template) if self.chat_template else None,
            metrics=self.metrics, kaiyuan_git_commit=kaiyuan_git_commit(),
            library_versions=library_versions(),
        )
        manifest.id = f"{self.kind}-{manifest.content_sha256()[:12]}"
        final = artifacts_dir() / manifest.id
        registry = Registry()
        if final.exists() and (final / MANIFEST_NAME).exists():
            existing = registry.find(manifest.id)
            if existing is not None:  # identical content already registered: reuse it
                return existing
            shutil.rmtree(final)
        atomic_write_json(self.path / MANIFEST_NAME, manifest.to_dict())
        self.path.rename(final)
        return registry.add(manifest, final)
