"""Content-addressed blobs: every file the hub holds, once, under its sha256.

``<root>/<sha[:2]>/<sha[2:]>``. A blob is written to a temporary file in the same folder, hashed while it arrives,
checked against the sha256 the client announced (a mismatch is refused and nothing is kept), fsynced and moved into
place atomically, so a reader never sees a partial blob and a killed upload leaves only a temporary file (swept by
:meth:`BlobStore.sweep`, or by ``kaiyuan hub gc`` once it is older than the grace period).

:class:`BlobBackend` is the interface the routes, ``hub verify`` and ``hub gc`` use: what an S3-compatible store
would implement for the scale-out path (:class:`BlobStore`, on a local disk, is the one implementation). A blob's
modification time is when it was last stored *or re-uploaded* (:meth:`BlobBackend.put` of a blob already stored
freshens it, as does :meth:`BlobBackend.touch`): the garbage collector keeps any unreferenced blob younger than its
grace period, so an upload whose commit has not landed yet is never collected.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from kaiyuan.errors import KaiyuanError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20
PARTIAL_PREFIX = "upload-"  # temporary files of uploads in progress (or killed), under <root>/tmp/


class BlobError(KaiyuanError):
    """A blob that does not match its announced sha256 or size, or exceeds the size limit."""


def check_sha256(oid: str) -> str:
    if not SHA256.fullmatch(oid):
        raise BlobError(f"oid {oid[:80]!r}: expected a sha256 (64 lowercase hex digits)")
    return oid


@dataclass(frozen=True)
class Stored:
    """One object in the store: a blob (``name`` is its sha256) or a partial upload (``name`` is its file name)."""

    name: str
    size: int
    mtime: float  # seconds since the epoch: when it was last written (or, for a blob, re-uploaded)


class BlobBackend(Protocol):
    """What the hub needs of a blob store. Blobs are immutable and named by the sha256 of their bytes.

    An S3-compatible store would answer: ``has``/``size``/``stamp`` with a HEAD of the object (``stamp``: its ETag
    or version id), ``put`` with a multipart upload to a temporary key hashed on the way and copied into place once
    it matches (``touch``: a copy onto itself), ``read`` with a ranged GET, ``verify`` with a streamed GET,
    ``delete`` with a DELETE, ``iter_blobs``/``iter_partial`` with a listing (LastModified as ``mtime``).

    Nothing outside this module touches a blob's file: downloads stream through ``read`` (the local store reads
    1 MiB chunks from an open file, which is as fast as serving the path), so there is no local-disk fast path for
    another store to emulate; :meth:`BlobStore.path` is the local store's own (tests use it to damage a blob).
    """

    def has(self, oid: str) -> bool:
        """Whether the blob is stored."""
        ...

    def size(self, oid: str) -> int:
        """The stored blob's size in bytes."""
        ...

    def stamp(self, oid: str) -> Hashable:
        """What changes whenever the stored bytes of ``oid`` might have (rewritten, replaced): a check of the blob is
        remembered under it."""
        ...

    def put(self, chunks: Iterable[bytes], oid: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Store a stream of bytes atomically; returns (sha256, size). With ``oid`` / ``size`` the bytes must match
        (else :class:`BlobError` and nothing is stored); a blob already stored is not read again but freshened."""
        ...

    def put_bytes(self, data: bytes, oid: str | None = None) -> tuple[str, int]:
        """:meth:`put` of bytes in memory."""
        ...

    def touch(self, oid: str) -> bool:
        """Mark the blob as just used (its ``mtime`` now): the garbage collector's grace period starts again.
        Whether it is stored (False: it is not, or was collected just now)."""
        ...

    def read(self, oid: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end]`` (inclusive, as HTTP ranges count) of a blob, in chunks."""
        ...

    def verify(self, oid: str) -> bool:
        """Whether the stored bytes still hash to ``oid``."""
        ...

    def delete(self, oid: str, older_than: float | None = None) -> bool:
        """Remove the blob (only if its ``mtime`` is at most ``older_than``, when given); returns whether it did."""
        ...

    def iter_blobs(self) -> Iterator[Stored]:
        """Every stored blob, with its size and ``mtime``."""
        ...

    def all(self) -> Iterator[str]:
        """The sha256 of every stored blob."""
        ...

    def iter_partial(self) -> Iterator[Stored]:
        """Temporary files of uploads in progress or never finished."""
        ...

    def delete_partial(self, name: str, older_than: float | None = None) -> bool:
        """Remove one temporary file (only if its ``mtime`` is at most ``older_than``, when given)."""
        ...

    def sweep(self, older_than: float | None = None) -> int:
        """Remove the temporary files (those at most ``older_than``, when given); returns how many."""
        ...


class BlobStore:
    """The blobs on a local disk (:class:`BlobBackend`)."""

    def __init__(self, root: Path, max_bytes: int = 50 << 30) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, oid: str) -> Path:
        """The blob's file (local to this store: not part of :class:`BlobBackend`)."""
        check_sha256(oid)
        return self.root / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.path(oid).is_file()

    def size(self, oid: str) -> int:
        return self.path(oid).stat().st_size

    def stamp(self, oid: str) -> tuple[str, int, int, int]:
        """The blob's file, inode, mtime and size: a blob rewritten, in place or replaced, has another stamp."""
        path = self.path(oid)
        found = os.stat(path)
        return str(path), found.st_ino, found.st_mtime_ns, found.st_size

    def open(self, oid: str) -> BinaryIO:
        return self.path(oid).open("rb")

    def touch(self, oid: str) -> bool:
        try:
            os.utime(self.path(oid))
        except FileNotFoundError:
            return False
        return True

    def put(self, chunks: Iterable[bytes], oid: str | None = None, size: int | None = None) -> tuple[str, int]:
        """Store the bytes of ``chunks``; returns (sha256, size). With ``oid`` / ``size`` the bytes must match
        them, or :class:`BlobError` is raised and nothing is stored."""
        if oid is not None:
            check_sha256(oid)
            if self.touch(oid):  # deduplicated: drain nothing more, the content is known (and young again)
                return oid, self.size(oid)
        digest, total = hashlib.sha256(), 0
        folder = self.root / "tmp"
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=PARTIAL_PREFIX)
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

    def delete(self, oid: str, older_than: float | None = None) -> bool:
        return _remove(self.path(oid), older_than)

    def iter_blobs(self) -> Iterator[Stored]:
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for blob in sorted(folder.iterdir()):
                    found = _stored(folder.name + blob.name, blob)
                    if found is not None:
                        yield found

    def all(self) -> Iterator[str]:
        for blob in self.iter_blobs():
            yield blob.name

    def iter_partial(self) -> Iterator[Stored]:
        folder = self.root / "tmp"
        for leftover in sorted(folder.glob(PARTIAL_PREFIX + "*")) if folder.is_dir() else []:
            found = _stored(leftover.name, leftover)
            if found is not None:
                yield found

    def delete_partial(self, name: str, older_than: float | None = None) -> bool:
        if not name.startswith(PARTIAL_PREFIX) or "/" in name or name in (".", ".."):
            raise BlobError(f"{name!r} is not a temporary upload file")
        return _remove(self.root / "tmp" / name, older_than)

    def sweep(self, older_than: float | None = None) -> int:
        """Remove temporary files of uploads that never finished (with ``older_than``: only those last written
        before that time); returns how many."""
        return sum(self.delete_partial(p.name, older_than) for p in list(self.iter_partial()))


def _stored(name: str, path: Path) -> Stored | None:
    """``path`` as a :class:`Stored`, or None if it is gone (removed meanwhile) or not a file."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return Stored(name, found.st_size, found.st_mtime) if stat.S_ISREG(found.st_mode) else None


def _remove(path: Path, older_than: float | None) -> bool:
    """Unlink ``path`` unless it was written after ``older_than`` (checked just before: an upload that freshened
    it meanwhile keeps it); whether it was removed."""
    try:
        if older_than is not None and path.stat().st_mtime > older_than:
            return False
        path.unlink()
    except FileNotFoundError:
        return False
    return True
