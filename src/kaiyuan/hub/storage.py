"""Disk use of KAIYUAN_HOME and taking things out of it: ``kaiyuan models du``, ``rm`` and ``gc``.

* :func:`disk_usage` — bytes per artifact kind, plus training runs (``runs/``: checkpoints, the recipe cache),
  caches (``cache/``), quarantine and staging folders.
* :func:`remove_artifacts` — un-register artifacts and delete their folders; refuses an artifact that other
  registered artifacts were made from (naming them) unless forced. The folder is first renamed to a staging name
  of this process, so a crash part-way leaves only a staging leftover that ``kaiyuan verify --repair`` removes.
* :func:`garbage` / :func:`collect_garbage` — what can go: the run folders of finished runs whose artifact is
  registered, staging leftovers of writers that died, and stale caches.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.home import cache_dir, recorded_run_dir, runs_dir
from kaiyuan.hub.registry import (
    HOST_TAG,
    STAGING_PREFIX,
    STAGING_STALE_SECONDS,
    Artifact,
    Registry,
    stale_staging,
)

RECIPE_CACHE = "recipe-cache"


def tree_size(path: Path) -> int:
    """Bytes of the files under ``path`` (symlinks are not followed; a file is counted once per hard link)."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _last_change(path: Path) -> float:
    newest = path.lstat().st_mtime
    for child in path.rglob("*") if path.is_dir() else ():
        try:
            newest = max(newest, child.lstat().st_mtime)
        except OSError:
            continue
    return newest


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ du


@dataclass
class DiskUsage:
    home: Path
    kinds: dict[str, dict[str, int]]  # kind → {"count": n, "bytes": b}
    other: dict[str, int]  # "runs", "cache", "quarantine", "staging", "registry" → bytes

    @property
    def total(self) -> int:
        return sum(k["bytes"] for k in self.kinds.values()) + sum(self.other.values())

    def to_dict(self) -> dict[str, Any]:
        return {"home": str(self.home), "kinds": self.kinds, **self.other, "total": self.total}


def disk_usage(registry: Registry | None = None) -> DiskUsage:
    """What KAIYUAN_HOME holds, in bytes: each kind of registered artifact, the runs/ folder (training checkpoints
    and the recipe cache), cache/, quarantine/, staging folders and the registry file."""
    registry = registry or Registry()
    home = registry.home
    kinds: dict[str, dict[str, int]] = {}
    for artifact in registry.list():
        entry = kinds.setdefault(artifact.kind, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += tree_size(artifact.path)
    staging = sum(tree_size(p) for p in registry.artifacts_dir().glob(f"{STAGING_PREFIX}*"))
    registry_bytes = sum(tree_size(p) for p in home.glob(registry.path.name + "*") if p.is_file())
    other = {"runs": tree_size(runs_dir(home)) if runs_dir(home).is_dir() else 0,
             "cache": tree_size(home / "cache") if (home / "cache").is_dir() else 0,
             "quarantine": tree_size(home / "quarantine") if (home / "quarantine").is_dir() else 0,
             "staging": staging, "registry": registry_bytes}
    return DiskUsage(home=home, kinds=dict(sorted(kinds.items())), other=other)


# ------------------------------------------------------------------------------------------------ rm


@dataclass
class Removal:
    id: str
    kind: str
    name: str
    path: Path
    bytes: int
    deleted_folder: bool  # False: the folder lies outside artifacts/ (registered in place) and was left alone
    orphaned: list[str] = field(default_factory=list)  # registered children left without this parent (--force)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "path": str(self.path), "bytes": self.bytes,
                "deleted_folder": self.deleted_folder, "orphaned": self.orphaned}


def dependents(registry: Registry, artifacts: list[Artifact]) -> dict[str, list[Artifact]]:
    """For each artifact, the registered artifacts made from it that are not themselves being removed."""
    removing = {a.id for a in artifacts}
    return {a.id: [c for c in registry.children(a.id) if c.id not in removing] for a in artifacts}


def remove_artifacts(refs: list[str], force: bool = False, registry: Registry | None = None) -> list[Removal]:
    """Un-register the artifacts ``refs`` name and delete their folders (a folder registered from outside
    artifacts/ is only un-registered). Without ``force``, nothing is removed if another registered artifact was
    made from one of them: the error names every such artifact."""
    registry = registry or Registry()
    artifacts: list[Artifact] = []
    for ref in refs:
        artifact = registry.get(ref)
        if artifact.id not in {a.id for a in artifacts}:
            artifacts.append(artifact)
    blocked = {i: kids for i, kids in dependents(registry, artifacts).items() if kids}
    if blocked and not force:
        lines = [f"{i} is a parent of " + ", ".join(f"{c.id} ({c.kind} {c.name!r})" for c in kids)
                 for i, kids in blocked.items()]
        raise KaiyuanError("refusing to remove an artifact that other registered artifacts were made from: "
                           + "; ".join(lines) + "; remove those too, or pass --force")
    removed = []
    for artifact in artifacts:
        size = tree_size(artifact.path) if artifact.path.exists() else 0
        inside = _inside(artifact.path, registry.artifacts_dir()) and artifact.path.name == artifact.id
        doomed = None
        if inside and artifact.path.exists():
            # a staging name of this process: should we die before the rmtree, verify removes it as a leftover
            doomed = registry.artifacts_dir() / f"{STAGING_PREFIX}{HOST_TAG}-{os.getpid()}-{uuid.uuid4().hex}"
            os.rename(artifact.path, doomed)
        registry.remove(artifact.id)
        if doomed is not None:
            shutil.rmtree(doomed, ignore_errors=True)
        removed.append(Removal(artifact.id, artifact.kind, artifact.name, artifact.path, size, inside,
                               [c.id for c in blocked.get(artifact.id, [])]))
    return removed


# ------------------------------------------------------------------------------------------------ gc


@dataclass
class Garbage:
    path: Path
    what: str  # "run" | "staging" | "cache"
    why: str
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "what": self.what, "why": self.why, "bytes": self.bytes}


def _recipe_cache_stale(path: Path, registry: Registry) -> str | None:
    try:
        outputs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unreadable recipe-cache entry"
    if not isinstance(outputs, dict):
        return "unreadable recipe-cache entry"
    ids = [v for k, v in outputs.items() if k != "metrics" and isinstance(v, str) and v]
    gone = [i for i in ids if registry.find_id(i) is None]
    return f"recipe-cache entry for artifacts no longer registered: {', '.join(gone)}" if gone else None


def garbage(registry: Registry | None = None, now: float | None = None) -> list[Garbage]:
    """What ``kaiyuan models gc`` removes: run folders (``runs/<stage>-<hash>``) of finished runs whose artifact
    is registered, staging folders of writers that are gone, recipe-cache entries whose artifacts are no longer
    registered, and temporary folders in cache/ untouched for a day."""
    registry = registry or Registry()
    now = time.time() if now is None else now
    found: list[Garbage] = []
    runs = runs_dir(registry.home)
    if runs.is_dir():
        finished: dict[Path, Artifact] = {}
        for artifact in registry.list():
            folder = recorded_run_dir(artifact.manifest, registry.home)
            if folder is not None and folder.is_dir():
                finished.setdefault(folder, artifact)
        for folder, artifact in sorted(finished.items()):
            found.append(Garbage(folder, "run", f"finished run of {artifact.id} ({artifact.kind} {artifact.name!r})",
                                 tree_size(folder)))
        for entry in sorted((runs / RECIPE_CACHE).glob("*.json")) if (runs / RECIPE_CACHE).is_dir() else []:
            why = _recipe_cache_stale(entry, registry)
            if why:
                found.append(Garbage(entry, "cache", why, tree_size(entry)))
    for path, why in stale_staging():
        found.append(Garbage(path, "staging", f"staging folder of a writer that did not finish ({why})",
                             tree_size(path)))
    cache = cache_dir(registry.home)
    temporary = [p for p in cache.glob("tmp*") if p.is_dir()]
    temporary += [p for p in (cache / "llama.cpp").glob(".*") if p.is_dir()] if (cache / "llama.cpp").is_dir() else []
    for path in sorted(temporary):
        try:
            age = now - _last_change(path)
        except OSError:
            continue
        if age > STAGING_STALE_SECONDS:
            found.append(Garbage(path, "cache", f"temporary folder untouched for {age / 3600:.0f} h", tree_size(path)))
    return found


def collect_garbage(dry_run: bool = False, registry: Registry | None = None) -> list[Garbage]:
    """Remove (or, with ``dry_run``, only list) :func:`garbage`; returns what was (or would be) removed."""
    found = garbage(registry)
    if dry_run:
        return found
    removed = []
    for item in found:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)
        if not item.path.exists():
            removed.append(item)
    return removed
