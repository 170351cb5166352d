"""The SQLite registry of a kaiyuan home: an index over the artifacts' manifests.

A :class:`Registry` owns its home (``Registry(home)``; by default KAIYUAN_HOME): ``<home>/registry.sqlite``,
``<home>/artifacts`` and ``<home>/quarantine``. Artifacts are directories under ``<home>/artifacts/<id>``,
written with ``registry.writer(...)`` (an :class:`ArtifactWriter` bound to that registry). They are written
into a staging directory first, hashed, given their manifest, and renamed into place in one step, so a crash never
leaves a half-written artifact behind a registered id.

The manifests on disk are the truth; the registry is an index that can always be rebuilt from them
(``kaiyuan verify --repair``; an empty or missing registry next to artifacts on disk is rebuilt on open).
Before an artifact is used (loaded, or made the parent of a new one) its files are checked against its
manifest; a check is cached in the registry by each file's (size, mtime, ctime, inode), so an unchanged
500 MB model is hashed once, not at every load.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.home import artifacts_dir, kaiyuan_home, quarantine_dir, registry_path
from kaiyuan.hub.manifest import (
    MANIFEST_NAME,
    Manifest,
    Parent,
    atomic_write_json,
    file_sha256,
    fsync_dir,
    kaiyuan_git_commit,
    library_versions,
    load_checked_manifest,
    text_sha256,
    tree_files,
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
CREATE TABLE IF NOT EXISTS file_checks (
    artifact TEXT NOT NULL,
    file TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (artifact, file)
);
"""

STAGING_PREFIX = ".staging-"
# .staging-<host tag>-<pid>-<token>: the writer's host and pid tell whether a staging folder is still being written
STAGING_PATTERN = re.compile(r"^\.staging-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-(?P<token>[0-9a-f]{32})$")
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# a staging folder of another host (or of an older kaiyuan, without a pid) is stale once untouched this long
STAGING_STALE_SECONDS = 24 * 3600
# fault injection for the crash tests: SIGKILL this process at the named points of a publish
KILL_POINT_ENV = "KAIYUAN_KILL_AT"
KILL_POINTS = ("staging-filled", "manifest-written", "renamed", "registered")
REBUILD_HINT = "`kaiyuan verify --repair`"


class RegistryCorruptError(KaiyuanError):
    """registry.sqlite cannot be read: it is not a SQLite database, or a damaged one (``detail``: SQLite's words)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"the registry {path} is damaged or not a SQLite database ({detail}); rebuild it from the "
                         f"manifests of the artifacts on disk with {REBUILD_HINT} (the damaged file is kept as "
                         f"{path.name}.corrupt-<time>)")
        self.path, self.detail = path, detail


class ArtifactCorruptError(KaiyuanError):
    """An artifact's files no longer match its manifest."""


class DiskFullError(KaiyuanError):
    """No space left on the device KAIYUAN_HOME is on. ``target`` and ``detail``: what could not be written, and
    the operating system's (or SQLite's) words for it."""

    def __init__(self, message: str, target: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.target, self.detail = target, detail


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the disk or the quota is full."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if any(marker in text for marker in ("no space left on device", "storagefull", "database or disk is full",
                                             "disk quota exceeded")):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _filename(exc: BaseException | None) -> str | None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.filename:
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def human_size(n: int) -> str:
    """1234567 → '1.2 MB' (decimal units)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def report(message: str) -> None:
    """A note about the state of KAIYUAN_HOME, on stderr (stdout is for results)."""
    print(f"kaiyuan: {message}", file=sys.stderr, flush=True)


def kill_point(name: str) -> None:
    """Fault injection: ``KAIYUAN_KILL_AT=renamed`` SIGKILLs the process right after the staging folder is renamed."""
    if name in os.environ.get(KILL_POINT_ENV, "").split(","):
        os.kill(os.getpid(), signal.SIGKILL)


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

    @classmethod
    def from_manifest(cls, manifest: Manifest, path: Path) -> Artifact:
        data = manifest.to_dict()
        return cls(id=manifest.id, kind=manifest.kind, name=manifest.name, path=path, license=manifest.license,
                   sha256=data["sha256"], created_at=manifest.created_at, manifest=data)


@dataclass
class FileCheck:
    """How an artifact's files compare with its manifest."""

    artifact_id: str
    path: Path
    folder_missing: bool = False
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (file, sha256 on disk, sha256 expected)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (file, sha256 expected)
    extra: list[str] = field(default_factory=list)
    files_hashed: int = 0
    bytes_hashed: int = 0

    @property
    def ok(self) -> bool:
        return not (self.folder_missing or self.changed or self.missing or self.extra)

    def problems(self) -> list[str]:
        if self.folder_missing:
            return [f"its folder {self.path} is missing"]
        return ([f"file {name} does not match its manifest (sha256 {actual} expected {expected})"
                 for name, actual, expected in self.changed]
                + [f"file {name} is missing (its manifest lists it with sha256 {expected})"
                   for name, expected in self.missing]
                + [f"file {name} is not in its manifest" for name in self.extra])

    def message(self, limit: int = 3) -> str:
        problems = self.problems()
        shown = problems[:limit] + ([f"and {len(problems) - limit} more"] if len(problems) > limit else [])
        return f"artifact {self.artifact_id}: " + "; ".join(shown) + "; run `kaiyuan verify`"


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


_INTEGRITY_CHECKED: dict[str, tuple[int, int]] = {}  # registry path → (inode, size) that passed quick_check


class Registry:
    """The registry of one home: ``home`` (default: KAIYUAN_HOME) holds registry.sqlite, artifacts/ and
    quarantine/. (A path to a ``.sqlite`` file is still taken as the registry file itself, as before: its home is
    the folder it is in, and it is not re-indexed from that folder's artifacts when empty.)"""

    def __init__(self, home: Path | None = None, *, rebuild_if_empty: bool = True) -> None:
        legacy_file = home is not None and Path(home).suffix == ".sqlite"
        if home is None:
            self.home = kaiyuan_home()
        else:
            self.home = Path(home).expanduser().resolve()
            if legacy_file:
                self.home = self.home.parent
            self.home.mkdir(parents=True, exist_ok=True)
        self.path = Path(home).expanduser().resolve() if legacy_file else registry_path(self.home)
        with self._db() as conn:
            self._check_integrity(conn)
            try:
                conn.executescript(SCHEMA)
            except sqlite3.OperationalError as exc:  # a read-only home can still be read (without the check cache)
                if "readonly" not in str(exc):
                    raise
        if rebuild_if_empty and not legacy_file:
            self._rebuild_if_empty()

    def artifacts_dir(self) -> Path:
        """``<home>/artifacts`` of this registry (created)."""
        return artifacts_dir(self.home)

    def quarantine_dir(self) -> Path:
        """``<home>/quarantine`` of this registry (created)."""
        return quarantine_dir(self.home)

    def writer(self, kind: str, name: str, **fields: Any) -> ArtifactWriter:
        """An :class:`ArtifactWriter` that stages, publishes and registers into this registry (and its home).

        >>> with registry.writer("dataset", "dates-train", license="CC0-1.0", source="...") as writer:
        ...     (writer.path / "data.jsonl").write_text(...)
        """
        return ArtifactWriter(kind, name, registry=self, **fields)

    # ------------------------------------------------------------------------------------------ database access

    def _connect(self) -> sqlite3.Connection:
        """A raw connection (kept for callers of the old API; prefer ``_db``, which closes it and explains errors)."""
        conn = sqlite3.connect(self.path, timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection in a transaction; SQLite's errors become errors that say what to do."""
        try:
            conn = sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        conn.row_factory = sqlite3.Row
        try:
            with conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            conn.close()

    def _error(self, exc: sqlite3.Error) -> KaiyuanError:
        text = str(exc)
        if is_disk_full(exc) or ("disk i/o error" in text.lower() and _nearly_full(self.path.parent)):
            return DiskFullError(f"no space left on device writing the registry {self.path} ({text}); free some "
                                 "space and run it again (nothing was changed)", f"the registry {self.path}", text)
        if "locked" in text or "busy" in text:
            return KaiyuanError(f"the registry {self.path} is locked by another kaiyuan process ({text}); try again "
                                "when it is done")
        if "unable to open" in text or "readonly" in text:
            return KaiyuanError(f"cannot open the registry {self.path} ({text})")
        return RegistryCorruptError(self.path, text)

    def _check_integrity(self, conn: sqlite3.Connection) -> None:
        """PRAGMA quick_check, once per process (again if the file was replaced or shrank: truncated)."""
        try:
            st = self.path.stat()
        except OSError:
            return
        seen = _INTEGRITY_CHECKED.get(str(self.path))
        if seen is not None and seen[0] == st.st_ino and st.st_size >= seen[1]:
            return
        rows = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise RegistryCorruptError(self.path, "; ".join(rows[:3]))
        _INTEGRITY_CHECKED[str(self.path)] = (st.st_ino, st.st_size)

    def _rebuild_if_empty(self) -> None:
        """An empty (0-byte, missing, freshly created) registry next to artifacts on disk: index them again."""
        with self._db() as conn:
            if conn.execute("SELECT 1 FROM artifacts LIMIT 1").fetchone() is not None:
                return
        folders = [d for d in artifact_folders(self.artifacts_dir()) if (d / MANIFEST_NAME).is_file()]
        if not folders:
            return
        added, skipped = self.reindex(folders)
        report(f"the registry {self.path} was empty, but {len(folders)} artifact folder(s) with a manifest are in "
               f"{self.artifacts_dir()}: re-indexed {len(added)} from their manifests"
               + (f"; skipped {len(skipped)} whose manifest is not valid" if skipped else "")
               + " (`kaiyuan verify` checks their files)")

    # ------------------------------------------------------------------------------------------ writing

    @staticmethod
    def _insert(conn: sqlite3.Connection, manifest: Manifest, path: Path) -> None:
        data = manifest.to_dict()
        conn.execute(
            "INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (manifest.id, manifest.kind, manifest.name, str(path), manifest.license, data["sha256"],
             manifest.created_at, json.dumps(data)),
        )
        conn.execute("DELETE FROM parents WHERE child = ?", (manifest.id,))
        conn.executemany("INSERT OR IGNORE INTO parents VALUES (?, ?, ?)",
                         [(manifest.id, p.id, p.relation) for p in manifest.parents])

    def add(self, manifest: Manifest, path: Path) -> Artifact:
        with self._db() as conn:
            self._insert(conn, manifest, path)
        return self.get(manifest.id)

    def reindex(self, folders: Iterable[Path]) -> tuple[list[str], list[tuple[Path, str]]]:
        """Index artifact folders from their manifests (one transaction); (ids added, (folder, why) skipped)."""
        valid, skipped = [], []
        for folder in folders:
            manifest, problem = load_checked_manifest(folder)
            if manifest is None:
                skipped.append((folder, problem or "no manifest"))
            else:
                valid.append((manifest, folder))
        with self._db() as conn:
            for manifest, folder in valid:
                self._insert(conn, manifest, folder)
        return [m.id for m, _ in valid], skipped

    def remove(self, artifact_id: str) -> None:
        """Un-index an artifact (its folder is not touched)."""
        with self._db() as conn:
            conn.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,))
            conn.execute("DELETE FROM parents WHERE child = ?", (artifact_id,))
            conn.execute("DELETE FROM file_checks WHERE artifact = ?", (artifact_id,))

    # ------------------------------------------------------------------------------------------ reading

    @staticmethod
    def _row(row: sqlite3.Row) -> Artifact:
        return Artifact(id=row["id"], kind=row["kind"], name=row["name"], path=Path(row["path"]),
                        license=row["license"], sha256=row["sha256"], created_at=row["created_at"],
                        manifest=json.loads(row["manifest"]))

    def find(self, ref: str, kind: str | None = None) -> Artifact | None:
        """An artifact by id, by unique id prefix, or by name (the newest with that name)."""
        kind_sql, kind_args = (" AND kind = ?", [kind]) if kind else ("", [])
        with self._db() as conn:
            row = conn.execute(f"SELECT * FROM artifacts WHERE id = ?{kind_sql}", [ref, *kind_args]).fetchone()  # nosec B608: only a fixed clause is formatted in; values are bound
            if row is None:
                row = conn.execute(
                    f"SELECT * FROM artifacts WHERE name = ?{kind_sql} ORDER BY created_at DESC, rowid DESC",  # nosec B608: only a fixed clause is formatted in; values are bound
                    [ref, *kind_args]).fetchone()
            if row is None and len(ref) >= 6:
                rows = conn.execute(f"SELECT * FROM artifacts WHERE id LIKE ?{kind_sql}",  # nosec B608: only a fixed clause is formatted in; values are bound
                                    [ref.replace("%", "") + "%", *kind_args]).fetchall()
                row = rows[0] if len(rows) == 1 else None
        return self._row(row) if row else None

    def find_id(self, artifact_id: str) -> Artifact | None:
        """The artifact with exactly this id."""
        with self._db() as conn:
            row = conn.execute("SELECT * FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
        return self._row(row) if row else None

    def get(self, ref: str, kind: str | None = None) -> Artifact:
        found = self.find(ref, kind)
        if found is None:
            what = kind or "artifact"
            raise NotFoundError(f"no {what} {ref!r} in the registry {self.path} (see `kaiyuan models list`)")
        return found

    def list(self, kind: str | None = None) -> list[Artifact]:
        with self._db() as conn:
            if kind:
                rows = conn.execute("SELECT * FROM artifacts WHERE kind = ? ORDER BY created_at, rowid",
                                    (kind,)).fetchall()
            else:
                rows = conn.execute("SELECT * FROM artifacts ORDER BY created_at, rowid").fetchall()
        return [self._row(r) for r in rows]

    def children(self, artifact_id: str, relation: str | None = None, kind: str | None = None) -> list[Artifact]:
        """The artifacts made from ``artifact_id`` (only by ``relation``, only of ``kind``), oldest first: a query on
        the parents index, not a scan of manifests."""
        # the query is fixed text and optional fixed clauses; every value is a bound parameter
        sql = ("SELECT DISTINCT a.* FROM parents p JOIN artifacts a ON a.id = p.child WHERE p.parent = ?"  # nosec B608
               + (" AND p.relation = ?" if relation else "") + (" AND a.kind = ?" if kind else "")
               + " ORDER BY a.created_at, a.rowid")
        args = [artifact_id] + ([relation] if relation else []) + ([kind] if kind else [])
        with self._db() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [self._row(r) for r in rows]

    def parents(self, artifact_id: str) -> list[tuple[str, str]]:
        with self._db() as conn:
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

    # ------------------------------------------------------------------------------------------ verification

    def check(self, artifact: Artifact, use_cache: bool = True,
              progress: Callable[[int], None] | None = None) -> FileCheck:
        """Compare an artifact's files with its manifest. With ``use_cache``, a file whose (size, mtime, ctime,
        inode) equal those of its last successful check is not hashed again; successful checks are remembered."""
        cached = self._cached_checks(artifact.id) if use_cache else {}
        result, verified = check_files(artifact, cached, progress)
        if verified:
            self._store_checks(artifact.id, verified)
        return result

    def ensure_intact(self, artifact: Artifact) -> Artifact:
        """``artifact``, once its files are checked against its manifest (cached); else ArtifactCorruptError."""
        result = self.check(artifact)
        if not result.ok:
            raise ArtifactCorruptError(result.message())
        return artifact

    def is_intact(self, artifact: Artifact) -> bool:
        return self.check(artifact).ok

    def _cached_checks(self, artifact_id: str) -> dict[str, tuple[int, int, int, int, str]]:
        try:
            with self._db() as conn:
                rows = conn.execute("SELECT file, size, mtime_ns, ctime_ns, inode, sha256 FROM file_checks "
                                    "WHERE artifact = ?", (artifact_id,)).fetchall()
        except KaiyuanError:  # no cache (a read-only registry from before it existed): hash
            return {}
        return {r["file"]: (r["size"], r["mtime_ns"], r["ctime_ns"], r["inode"], r["sha256"]) for r in rows}

    def _store_checks(self, artifact_id: str, checks: list[tuple[str, tuple[int, int, int, int], str]]) -> None:
        """Remember successful checks; a cache only, so a read-only or full disk just means hashing next time."""
        try:
            with self._db() as conn:
                conn.executemany("INSERT OR REPLACE INTO file_checks VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 [(artifact_id, name, *key, sha) for name, key, sha in checks])
        except KaiyuanError:
            pass


def check_files(artifact: Artifact, cached: dict[str, tuple[int, int, int, int, str]] | None = None,
                progress: Callable[[int], None] | None = None
                ) -> tuple[FileCheck, list[tuple[str, tuple[int, int, int, int], str]]]:
    """Compare an artifact's files with its manifest, skipping files whose stat key is in ``cached`` with the
    expected sha256. Returns the check and the (file, stat key, sha256) of the files hashed and found good."""
    result = FileCheck(artifact.id, artifact.path)
    verified: list[tuple[str, tuple[int, int, int, int], str]] = []
    if not artifact.path.is_dir():
        result.folder_missing = True
        return result, verified
    cached = cached or {}
    expected: dict[str, str] = artifact.manifest.get("files") or {}
    on_disk = tree_files(artifact.path)
    for name, sha in sorted(expected.items()):
        path = on_disk.get(name)
        if path is None:
            result.missing.append((name, sha))
            continue
        before = _stat_key(path)
        if cached.get(name) == (*before, sha):
            continue
        actual = file_sha256(path, progress=progress)
        result.files_hashed += 1
        result.bytes_hashed += before[0]
        if actual != sha:
            result.changed.append((name, actual, sha))
        elif _stat_key(path) == before and time.time_ns() - before[1] > 2_000_000_000:
            verified.append((name, before, sha))  # not racily clean: a later change will show in its stat
    result.extra = sorted(set(on_disk) - set(expected))
    return result, verified


def _nearly_full(directory: Path, margin: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(directory).free < margin
    except OSError:
        return False


def artifact_folders(directory: Path | None = None) -> list[Path]:
    """The committed artifact folders in ``directory`` (default: KAIYUAN_HOME's artifacts; not staging folders or
    other hidden entries)."""
    directory = directory if directory is not None else artifacts_dir()
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


# ------------------------------------------------------------------------------------------------ staging


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) writes nothing more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def _last_change(path: Path) -> float:
    """The newest mtime of a folder and everything in it."""
    newest = path.lstat().st_mtime
    for child in path.rglob("*"):
        try:
            newest = max(newest, child.lstat().st_mtime)
        except OSError:
            continue
    return newest


def staging_state(path: Path, now: float | None = None) -> tuple[bool, str]:
    """(stale, why) for a staging folder: stale when its writer's process is gone (same host), or — for folders
    of another host or without a pid — when nothing in it changed for STAGING_STALE_SECONDS."""
    now = time.time() if now is None else now
    try:
        changed = _last_change(path)
    except OSError:
        return False, "already gone"
    match = STAGING_PATTERN.match(path.name)
    if match and match["host"] == HOST_TAG:
        pid = int(match["pid"])
        if not _pid_alive(pid):
            return True, f"its writer (pid {pid}) is gone"
        started = _process_start(pid)
        if started is not None and started > changed + 2:
            return True, f"its writer (pid {pid}) is gone; that pid now belongs to a newer process"
        return False, f"being written by pid {pid}"
    age = now - changed
    if age > STAGING_STALE_SECONDS:
        return True, f"untouched for {age / 3600:.0f} h"
    return False, f"written by another host or an older kaiyuan, last changed {age:.0f} s ago"


def stale_staging(directory: Path | None = None) -> list[tuple[Path, str]]:
    directory = directory or artifacts_dir()
    found = []
    for path in sorted(directory.glob(f"{STAGING_PREFIX}*")):
        stale, why = staging_state(path)
        if stale:
            found.append((path, why))
    return found


def clean_stale_staging(directory: Path | None = None, quiet: bool = False) -> list[tuple[Path, str]]:
    """Remove staging folders whose writer died (SIGKILL, power loss); never those of a live writer."""
    removed = []
    for path, why in stale_staging(directory):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append((path, why))
    if removed and not quiet:
        report(f"removed {len(removed)} stale staging folder(s) of writers that did not finish: "
               + ", ".join(f"{p.name} ({why})" for p, why in removed))
    return removed


# ------------------------------------------------------------------------------------------------ quarantine


def quarantine(path: Path, reason: str, registry: Registry | None = None, quiet: bool = False) -> Path:
    """Move an artifact folder out of artifacts/ into the quarantine folder (never deleted) and un-index it: that of
    ``registry``'s home, else KAIYUAN_HOME's."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory = registry.quarantine_dir() if registry is not None else quarantine_dir()
    target = directory / f"{path.name}-{stamp}-{uuid.uuid4().hex[:6]}"
    try:
        os.rename(path, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(str(path), target)
    try:
        atomic_write_json(target.with_name(target.name + ".reason.json"),
                          {"artifact": path.name, "from": str(path), "reason": reason, "at": stamp})
    except OSError:
        pass  # the reason is a courtesy; the folder is safe either way
    if registry is not None:
        registry.remove(path.name)
    if not quiet:
        report(f"quarantined {path} as {target}: {reason}")
    return target


def quarantined(artifact_id: str, registry: Registry | None = None) -> list[Path]:
    directory = (registry.home if registry is not None else kaiyuan_home()) / "quarantine"
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"{artifact_id}-*") if p.is_dir())


# ------------------------------------------------------------------------------------------------ writing


@dataclass
class ArtifactWriter:
    """Write an artifact atomically: fill ``writer.path``, and on leaving the block it is hashed,
    given its manifest, renamed into ``artifacts/<id>`` and registered.

    >>> with registry.writer("dataset", "dates-train", license="Apache-2.0", source="...") as writer:
    ...     (writer.path / "data.jsonl").write_text(...)
    >>> writer.artifact.id

    The staging folder, the final folder and the registration are all those of ``registry`` (its home); without
    one (``ArtifactWriter(...)``), the registry of KAIYUAN_HOME, opened when the artifact is published.

    A failure inside the block (or while publishing) leaves nothing behind; a full disk is reported as a
    :class:`DiskFullError` naming the artifact and the file being written.
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
    stage: str | None = None  # recorded in the manifest (not part of its id)
    registry: Registry | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        root = self.registry.artifacts_dir() if self.registry is not None else artifacts_dir()
        self.path = root / f"{STAGING_PREFIX}{HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex}"

    def __enter__(self) -> ArtifactWriter:
        clean_stale_staging(self.path.parent)
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFullError(self._disk_full_message(exc)) from exc
            raise
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        failure = exc
        if failure is None:
            kill_point("staging-filled")
            try:
                self.artifact = self._publish()
            except BaseException as caught:  # re-raised below, after the cleanup
                failure = caught
        full = None
        if failure is not None and is_disk_full(failure) and not getattr(failure, "artifact_writer", False):
            full = DiskFullError(self._disk_full_message(failure))  # before the cleanup: it names the last file
            full.artifact_writer = True  # type: ignore[attr-defined]
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        if full is not None:
            raise full from failure
        if failure is not None and failure is not exc:
            raise failure

    def _disk_full_message(self, exc: BaseException) -> str:
        if isinstance(exc, DiskFullError) and exc.target:  # the registry could not take its row
            where, detail = f" ({exc.target})", exc.detail or str(exc)
        else:
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            named = _filename(exc)
            if named is not None:
                written = Path(named)
                inside = written.is_relative_to(self.path)
                where = f" (file {written.relative_to(self.path).as_posix() if inside else written})"
            else:  # a failed write() names no file: say how far it got
                files = [p for p in self.path.rglob("*") if p.is_file()] if self.path.is_dir() else []
                size = sum(p.stat().st_size for p in files)
                where = f" ({len(files)} file(s), {human_size(size)} written so far)"
        return (f"no space left on device while writing {self.kind} artifact {self.name!r}{where} in "
                f"{self.path.parent}: {detail}; nothing was registered and its partial files were removed — free "
                "some space and run it again")

    def _manifest(self) -> tuple[Manifest, dict[str, tuple[int, int, int, int]]]:
        files, stats = {}, {}
        for name, path in tree_files(self.path).items():
            stats[name] = _stat_key(path)
            files[name] = file_sha256(path)
        manifest = Manifest(
            kind=self.kind, name=self.name, license=self.license, source=self.source,
            files=files, parents=list(self.parents), stage=self.stage, config=self.config, seed=self.seed,
            chat_template_sha256=text_sha256(self.chat_template) if self.chat_template else None,
            metrics=self.metrics, kaiyuan_git_commit=kaiyuan_git_commit(),
            library_versions=library_versions(),
        )
        manifest.id = f"{self.kind}-{manifest.content_sha256()[:12]}"
        return manifest, stats

    def _publish(self) -> Artifact:
        manifest, stats = self._manifest()
        if self.registry is None:  # KAIYUAN_HOME's: the one whose artifacts folder holds the staging folder
            self.registry = Registry()
        registry = self.registry
        for parent in manifest.parents:
            found = registry.find_id(parent.id)
            if found is not None:
                try:
                    registry.ensure_intact(found)
                except ArtifactCorruptError as exc:
                    raise ArtifactCorruptError(f"cannot register {self.kind} {self.name!r}: its parent {exc}") from None
        final = self.path.parent / manifest.id  # the staging folder's sibling: registry.artifacts_dir()
        existing = self._existing(final, manifest, registry)
        if existing is not None:  # identical content already there: reuse it
            return existing
        atomic_write_json(self.path / MANIFEST_NAME, manifest.to_dict())
        kill_point("manifest-written")
        try:
            os.rename(self.path, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.exists():
                raise
            existing = self._existing(final, manifest, registry)  # the same content, published concurrently
            if existing is not None:
                return existing
            os.rename(self.path, final)
        kill_point("renamed")
        fsync_dir(final.parent)
        try:
            artifact = registry.add(manifest, final)
        except BaseException:
            try:  # not indexed: take it back, so that no folder without a registry row is left behind
                os.rename(final, self.path)
            except OSError:
                pass
            raise
        kill_point("registered")
        # just hashed, in a folder nobody else writes: remember, so the first load does not hash it again
        registry._store_checks(manifest.id, [(name, key, manifest.files[name]) for name, key in stats.items()
                                             if (final / name).is_file() and _stat_key(final / name) == key])
        return artifact

    def _existing(self, final: Path, manifest: Manifest, registry: Registry) -> Artifact | None:
        """The intact artifact already at ``final`` (indexing it if a crash left it unregistered); None when
        there is none. Anything else there — damaged, or not this artifact — is quarantined, never deleted."""
        if not final.exists():
            return None
        on_disk, problem = load_checked_manifest(final)
        if on_disk is not None and on_disk.content_sha256() == manifest.content_sha256():
            row = registry.find_id(manifest.id)
            artifact = row if row is not None and row.path == final else Artifact.from_manifest(on_disk, final)
            result = registry.check(artifact)
            if result.ok:
                return row if row is not None and row.path == final else registry.add(on_disk, final)
            problem = "; ".join(result.problems())
        quarantine(final, f"found in the way of a new copy of {manifest.id}: {problem}", registry)
        return None
