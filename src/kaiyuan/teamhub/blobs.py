"""Content-addressed blobs: every file the hub holds, once, under its sha256.

``<root>/<sha[:2]>/<sha[2:]>``. A blob is written to a temporary file in the same folder, hashed while it arrives,
checked against the sha256 the client announced (a mismatch is refused and nothing is kept), fsynced and moved into
place atomically, so a reader never sees a partial blob and a killed upload leaves only a temporary file (swept by
:meth:`BlobStore.sweep`). The interface (``has``, ``put``, ``open``, ``size``, ``verify``) is what an
S3-compatible store would implement for the scale-out path.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from kaiyuan.errors import KaiyuanError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


class BlobError(KaiyuanError):
    """A blob that does not match its announced sha256 or size, or exceeds the size limit."""


def check_sha256(oid: str) -> str:
    if not SHA256.fullmatch(oid):
        raise BlobError(f"oid {oid[:80]!r}: expected a sha256 (64 lowercase hex digits)")
    return oid


class BlobStore:
    def __init__(self, root: Path, max_bytes: int = 50 << 30) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, oid: str) -> Path:
        check_sha256(oid)
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def size(self, oid: str) -> int:
        return self.path(oid).stat().st_size

    def open(self, oid: str) -> BinaryIO:
        return self.path(oid).open("rb")

    def put(self, chunks: Iterable[bytes], oid: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Store the bytes of ``chunks``; returns (sha256, size). With ``oid`` / ``size`` the bytes must match
        them, or :class:`BlobError` is raised and nothing is stored."""
        if oid is not None:
            check_sha256(oid)
            if self.has(oid):  # deduplicated: drain nothing more, the content is known
                return oid, self.size(oid)
        digest, total = hashlib.sha256(), 0
        folder = self.root / "tmp"
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    total += len(chunk)
                    if size is not None and total > size:
                        raise BlobError(f"the upload is larger than its announced {size} bytes: refused")
                    if total > self.max_bytes:
                        raise BlobError(f"the upload is larger than the hub's limit of {self.max_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            found = digest.hexdigest()
            if oid is not None and found != oid:
                raise BlobError(f"the upload's sha256 is {found}, not the announced {oid}: refused")
            if size is not None and total != size:
                raise BlobError(f"the upload has {total} bytes, not the announced {size}: refused")
            target = self.path(found)
            target.parent.mkdir(exist_ok=True)
            os.replace(tmp, target)
            return found, total
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def put_bytes(self, data: bytes, oid: str | None = None) -> tuple[str, int]:
        return self.put([data], oid, len(data))

    def read(self, oid: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end]`` (inclusive, as HTTP ranges count) of a blob, in chunks."""
        with self.open(oid) as handle:
            handle.seek(start)
            left = (self.size(oid) if end is None else end + 1) - start
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    def verify(self, oid: str) -> bool:
        """Whether the stored bytes still hash to ``oid`` (a flipped byte is found here)."""
        digest = hashlib.sha256()
        with self.open(oid) as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == oid

    def all(self) -> Iterator[str]:
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for blob in sorted(folder.iterdir()):
                    yield folder.name + blob.name

    def sweep(self) -> int:
        """Remove temporary files of uploads that never finished; returns how many."""
        folder = self.root / "tmp"
        removed = 0
        for leftover in folder.glob("upload-*") if folder.is_dir() else []:
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed
