"""``manifest.json``: what an artifact is and exactly what it was made from.

Every artifact directory holds one. It lists the sha256 of every file, the artifact's kind, its parents
with their relation, its license, source, resolved config, seed, the kaiyuan version and git commit,
library versions and the chat template's hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess  # nosec B404: argv lists, never a shell
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kaiyuan import __version__

MANIFEST_NAME = "manifest.json"
KINDS = ("model", "adapter", "dataset", "eval", "export", "card")
RELATIONS = ("base_model", "finetune", "adapter", "merge", "dataset", "quantized", "reference_model",
             "reward_model", "evaluated_model", "generator", "judge", "documented")
TRACKED_LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "safetensors",
                     "tokenizers", "gguf")


DATA_FILE = "data.jsonl"  # a dataset artifact's records, one JSON object a line

@dataclass(frozen=True)
class Parent:
    id: str
    relation: str

    def __post_init__(self) -> None:
        if self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {', '.join(RELATIONS)}")


@dataclass
class Manifest:
    kind: str
    name: str
    license: str
    source: str
    files: dict[str, str]
    parents: list[Parent] = field(default_factory=list)
    # the stage that made it (a name in kaiyuan.pipeline.stages.STAGES, or "merge" / "create_tiny"); None for
    # imports and for manifests written before the field existed. Not part of the content hash (nor the id).
    stage: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    chat_template_sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    kaiyuan_version: str = __version__
    kaiyuan_git_commit: str | None = None
    library_versions: dict[str, str] = field(default_factory=dict)
    python_version: str = field(default_factory=platform.python_version)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    id: str = ""

    def content_sha256(self) -> str:
        """Hash of what the artifact *is*: its kind, files and parents (not when or by which stage it was made)."""
        payload = {"kind": self.kind, "files": dict(sorted(self.files.items())),
                   "parents": sorted([p.id, p.relation] for p in self.parents)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sha256"] = self.content_sha256()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        data = dict(data)
        data.pop("sha256", None)
        data["parents"] = [Parent(**p) for p in data.get("parents", [])]
        return cls(**data)


def file_sha256(path: Path, chunk: int = 1 << 20, progress: Callable[[int], None] | None = None) -> str:
    """sha256 of a file, read in chunks; ``progress`` is called with the size of each chunk read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            if progress is not None:
                progress(len(block))
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tree_files(root: Path) -> dict[str, Path]:
    """Every file under ``root`` that a manifest lists (all but files named manifest.json), keyed by POSIX
    relative path, sorted."""
    return {path.relative_to(root).as_posix(): path for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != MANIFEST_NAME}


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (except the manifest), keyed by POSIX relative path."""
    return {name: file_sha256(path) for name, path in tree_files(root).items()}


def library_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def kaiyuan_git_commit() -> str | None:
    """The commit of the kaiyuan checkout this code runs from (``+dirty`` when it has local changes)."""
    source_dir = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True,  # nosec B603 B607: git on PATH with a fixed argv
                                text=True, timeout=10, check=True).stdout.strip()
        # --no-optional-locks: a status that is timed out (killed) must not leave .git/index.lock behind in the
        # user's checkout, nor collide with their own git commands
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--", "."],  # nosec B603 B607: git on PATH with a fixed argv
                               cwd=source_dir.parent.parent, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if dirty else commit


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_manifest(directory: Path) -> Manifest:
    return Manifest.from_dict(json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8")))


def load_checked_manifest(directory: Path) -> tuple[Manifest | None, str | None]:
    """The manifest of the artifact folder ``directory`` (and None), or None and what is wrong with it: missing,
    unreadable, edited (its id is no longer the hash of its content), or another artifact's."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None, f"it has no {MANIFEST_NAME}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest.from_dict(data)
        content = manifest.content_sha256()
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return None, f"its {MANIFEST_NAME} cannot be read ({type(exc).__name__}: {exc})"
    expected = f"{manifest.kind}-{content[:12]}"
    if manifest.id != expected or data.get("sha256", content) != content:
        return None, (f"its {MANIFEST_NAME} was edited: it says id {manifest.id!r}, but its content hashes to "
                      f"{expected!r}")
    if manifest.id != directory.name:
        return None, f"its {MANIFEST_NAME} is that of {manifest.id}, not of {directory.name}"
    return manifest, None
