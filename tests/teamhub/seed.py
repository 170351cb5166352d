"""Test helper: put a repo with files straight into a hub's metadata and blob store (no HTTP, no upload route).

``seed(hub, "team/tiny", {"config.json": b"{}", "model.safetensors": b"..."})`` commits those files as the whole tree
of ``main`` (creating the repo if needed) and returns the :class:`~kaiyuan.teamhub.meta.Commit`. ``hub`` is the
:class:`~kaiyuan.teamhub.context.Hub` of an app (``app.state.hub``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from kaiyuan.teamhub.context import Hub
from kaiyuan.teamhub.meta import Commit, Entry
from kaiyuan.teamhub.names import check_path, repo_id

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack", ".parquet", ".arrow")


def seed(hub: Hub, repo: str, files: Mapping[str, bytes], lfs_paths: Iterable[str] | None = None,
         branch: str = "main", private: bool = False, repo_type: str = "model", message: str = "seed") -> Commit:
    """Commit ``files`` (path → content) as the whole tree of ``branch``. LFS files: ``lfs_paths``, or by default
    those with a weights/data suffix (:data:`LFS_SUFFIXES`). ``private`` only counts when the repo is created."""
    lfs = set(lfs_paths) if lfs_paths is not None else {p for p in files if p.endswith(LFS_SUFFIXES)}
    entries = []
    for path, content in sorted(files.items()):
        oid, size = hub.blobs.put_bytes(content)
        entries.append(Entry(check_path(path), oid, size, path in lfs))
    found = hub.db.create_repo(repo_id(repo, repo_type), private=private, exist_ok=True)
    return hub.db.commit(found, branch, entries, message, author="seed")


def seed_folder(hub: Hub, repo: str, folder: Path, **kwargs: object) -> Commit:
    """:func:`seed` with every file under ``folder`` (paths relative to it)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
    return seed(hub, repo, files, **kwargs)  # type: ignore[arg-type]
