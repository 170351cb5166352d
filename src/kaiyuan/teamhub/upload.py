"""The Hugging Face Hub's upload routes, as ``huggingface_hub`` (2.x) speaks them with ``HF_ENDPOINT`` set here.

``create_repo`` → ``POST /api/repos/create``. ``upload_folder`` / ``create_commit`` → ``POST
/api/{models|datasets}/NS/NAME/preupload/REV`` (which files go as LFS), the Git LFS batch API ``POST
[/datasets]/NS/NAME.git/info/lfs/objects/batch`` (basic transfer: a signed ``PUT /lfs/upload/OID`` link per
object not stored yet, and a ``verify`` link), then the NDJSON commit ``POST /api/…/commit/REV`` (a header line,
then one line per added, LFS or deleted file), which lands as one new revision of the branch. Also
``create_branch`` (``push_to_hub(revision=…)`` calls it) and ``/api/validate-yaml`` (asked before a README.md).
Tags, deleting branches and repos, and listing refs: :mod:`kaiyuan.teamhub.admin`.

Writing needs a write token for the repo's namespace (:meth:`kaiyuan.teamhub.context.Hub.writer`). The LFS ``PUT``
carries no token (the client sends none there), so its link is signed with a key kept in the storage folder. The
blob store is shared by every repo, so an LFS object counts as this repo's only once its bytes were uploaded to it
(a marker under ``storage/uploads/``) or one of its branches or tags already holds it: knowing a private file's
sha256 is not enough to commit it into another repo and download it from there. An LFS object this repo already
holds is freshened when the batch API or a commit names it again, so ``kaiyuan hub gc`` counts it as young.

Xet: ``huggingface_hub`` uploads LFS-mode files through Xet whenever the ``hf_xet`` package is installed, without
asking the server; this hub speaks Git LFS only, so uploaders set ``HF_HUB_DISABLE_XET=1`` (the Xet token route
answers 501 saying so).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import sqlalchemy as sa
import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from kaiyuan.teamhub import search
from kaiyuan.teamhub.blobs import BlobError, check_sha256
from kaiyuan.teamhub.context import Hub, HubError, hub_state, repo_not_found
from kaiyuan.teamhub.meta import ConflictError, Entry, Repo, Token
from kaiyuan.teamhub.names import NameError_, RepoId, check_path, repo_id

router = APIRouter()

PLURALS = {"models": "model", "datasets": "dataset"}
# What the Hub's default .gitattributes sends to LFS (models' and datasets'), and GGUF: tools rely on it, e.g.
# `datasets.push_to_hub` preuploads its .parquet shards and deletes them before the commit.
LFS_SUFFIXES = tuple("." + s for s in (
    "safetensors bin gguf pt pth ckpt onnx h5 msgpack npy npz ot pb tflite mlmodel model joblib pickle pkl "
    "parquet arrow lfs ftz wasm 7z bz2 gz rar tar tgz xz zip zst mds "
    "mp3 wav ogg flac jpg jpeg png webp mp4 avi mkv".split()))
LFS_OVER = 1 << 20  # bytes: a larger file goes as LFS whatever its name
MAX_PREUPLOAD_FILES = 1000  # per preupload request (the client sends 256 at most)
MAX_BATCH_OBJECTS = 1000  # per LFS batch request (the client sends 256 at most)
MAX_LINE = 16 << 20  # bytes of one NDJSON commit line: a regular file's base64 content, ~12 MB
MAX_JSON = 8 << 20  # bytes of a JSON request body
UPLOAD_THREADS = 64  # LFS uploads streaming at once (more wait for a thread)
LINK_TTL = 24 * 3600  # seconds an LFS upload link stays valid (checked when the upload starts)
COMMIT_RETRIES = 3  # a commit without parentCommit is replayed on a branch that moved meanwhile
LFS_JSON = "application/vnd.git-lfs+json"
BRANCH = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,253}[A-Za-z0-9_])?$")
HEX = re.compile(r"^[0-9a-f]{7,40}$")
UPLOADS = "uploads"  # storage/uploads/<type>/<namespace>/<name>/<oid>: the LFS objects uploaded to each repo
COMMIT_OID = re.compile(r"^[0-9a-f]{40}$")
MOVED = "A commit has happened since. Please refresh and try again."  # the Hub's 412 message
NO_XET = ("This hub speaks the Git LFS upload protocol, not Xet: set HF_HUB_DISABLE_XET=1 (or uninstall hf_xet) "
          "before uploading.")


# -- shared ----------------------------------------------------------------------------------------------------


def base_url(request: Request) -> str:
    """The server's own URL as the client reached it (links in answers are absolute)."""
    return str(request.base_url).rstrip("/")


def repo_url(base: str, rid: RepoId) -> str:
    """The repo's web URL, as ``RepoUrl`` / ``CommitInfo`` parse it: ``BASE/NS/NAME`` or ``BASE/datasets/NS/NAME``."""
    return f"{base}/{rid}"


def api_repo(plural: str, namespace: str, name: str) -> RepoId:
    """The repo of an ``/api/{models|datasets}/NS/NAME/…`` route."""
    if plural not in PLURALS:
        raise HubError(400, f"repo type {plural!r}: this hub holds models and datasets", "BadRequest")
    return repo_id(f"{namespace}/{name}", PLURALS[plural])


def writable(hub: Hub, request: Request, rid: RepoId) -> tuple[Token, Repo]:
    """The write token and the existing repo, or 401 / 403 / 404."""
    token = hub.writer(request, rid.namespace)
    repo = hub.db.repo(rid)
    if repo is None:
        raise repo_not_found(rid)
    return token, repo


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 saying what is wrong with it."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_JSON:
            raise HubError(413, f"the request body is over {MAX_JSON} bytes", "PayloadTooLarge")
    try:
        body = json.loads(bytes(raw) or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HubError(400, f"the request body is not JSON: {exc}", "BadRequest") from exc
    if not isinstance(body, dict):
        raise HubError(400, "the request body must be a JSON object", "BadRequest")
    return body


def too_large(hub: Hub, path: str, size: int) -> HubError:
    return HubError(413, f"{path} is {size} bytes, over this hub's limit of {hub.max_file_bytes} bytes per file",
                    "PayloadTooLarge")


def announced_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HubError(400, f"{what}: 'size' must be a non-negative integer, not {value!r}", "BadRequest")
    return value


def files_at(hub: Hub, repo: Repo, revision: str) -> list[Entry]:
    """The files a revision holds now (none if it does not exist yet)."""
    found = hub.db.resolve(repo, revision)
    return hub.db.files(repo, found.sha) if found else []


# -- repos -----------------------------------------------------------------------------------------------------


@router.post("/api/repos/create")
async def create_repo(request: Request) -> JSONResponse:
    """``HfApi.create_repo``: ``{name, organization, type, visibility | private}`` → ``{url}``; an existing repo
    is 409 with its ``url`` (what ``exist_ok=True`` reads)."""
    body = await json_body(request)
    return await run_in_threadpool(make_repo, hub_state(request), request, body)


def make_repo(hub: Hub, request: Request, body: dict[str, Any]) -> JSONResponse:
    name, organization = body.get("name"), body.get("organization")
    if not isinstance(name, str) or not (organization is None or isinstance(organization, str)):
        raise HubError(400, "expected {\"name\": str, \"organization\": str | null}", "BadRequest")
    namespace = organization if organization is not None else default_namespace(hub, request)
    rid = repo_id(f"{namespace}/{name}", body.get("type") or "model")
    token = hub.writer(request, rid.namespace)
    url, private = repo_url(base_url(request), rid), wants_private(body)
    try:
        repo = hub.db.create_repo(rid, private=private)
    except (ConflictError, sa.exc.IntegrityError):
        message = f"You already created this {rid.repo_type} repo: {rid.id}"
        return JSONResponse({"error": message, "url": url}, status_code=409, headers={"X-Error-Message": message})
    initial_commit(hub, repo, token)
    return JSONResponse({"url": url, "name": rid.id, "private": private})


def initial_commit(hub: Hub, repo: Repo, token: Token) -> None:
    """A new repo's ``main``, with no files: as on the Hub, a new repo has a main branch (so a missing README.md
    is "entry not found", which ``push_to_hub`` expects, not "revision not found")."""
    try:
        hub.db.commit(repo, "main", [], "initial commit", token.name, parent=None)
    except ConflictError:
        pass  # a first commit landed meanwhile


def default_namespace(hub: Hub, request: Request) -> str:
    """The namespace of a ``create_repo("name")`` without one: the token's own."""
    grant = hub.grant(request)
    if grant is None:
        hub.writer(request, "")  # raises the 401
    if grant is None or grant.namespace is None:
        raise HubError(400, "name the repo as namespace/name (this token may write to every namespace)", "BadRequest")
    return grant.namespace


def wants_private(body: dict[str, Any]) -> bool:
    visibility, private = body.get("visibility"), body.get("private")
    if visibility not in (None, "public", "private") or not isinstance(private, bool | None):
        raise HubError(400, f"visibility {visibility!r}: expected public or private", "BadRequest")
    return visibility == "private" or private is True


@router.post("/api/validate-yaml")
async def validate_yaml(request: Request) -> JSONResponse:
    """What the client asks before committing a ``README.md``: is its YAML front matter a mapping?"""
    body = await json_body(request)
    content = body.get("content")
    error = front_matter_error(content) if isinstance(content, str) else "expected {\"content\": str}"
    if error:
        return JSONResponse({"errors": [{"message": error}], "warnings": []}, status_code=400,
                            headers={"X-Error-Message": error})
    return JSONResponse({"errors": [], "warnings": []})


def front_matter_error(content: str) -> str | None:
    lines = content.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        return "README.md: the YAML front matter opened with '---' is never closed"
    try:
        meta = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        return f"README.md: invalid YAML front matter: {exc}"
    return None if meta is None or isinstance(meta, dict) else "README.md: the YAML front matter must be a mapping"


@router.post("/api/{plural}/{namespace}/{name}/branch/{branch:path}")
async def create_branch(plural: str, namespace: str, name: str, branch: str, request: Request) -> dict[str, Any]:
    """``HfApi.create_branch`` (what ``push_to_hub(revision=…)`` calls first): the branch at ``startingPoint``
    (default: main; an empty tree in a repo without commits); 409 if it exists."""
    rid = api_repo(plural, namespace, name)
    body = await json_body(request)
    await run_in_threadpool(make_branch, hub_state(request), request, rid, branch, body.get("startingPoint"))
    return {"success": True}


def make_branch(hub: Hub, request: Request, rid: RepoId, branch: str, start: Any) -> None:
    token, repo = writable(hub, request, rid)
    if branch in hub.db.refs(repo):
        raise HubError(409, f"Reference already exists: {branch}", "Conflict")
    check_branch(hub, repo, branch)
    if start is not None and not isinstance(start, str):
        raise HubError(400, "'startingPoint' must be a branch, tag or commit", "BadRequest")
    found = hub.db.resolve(repo, start or "main")
    if found is None and start is not None:
        raise HubError(404, f"Invalid rev id: {start}", "RevisionNotFound")
    files = hub.db.files(repo, found.sha) if found else []
    try:  # the same files are the same revision: the branch points at the starting commit itself
        hub.db.commit(repo, branch, files, f"Create branch {branch}", token.name, parent=None)
    except ConflictError as exc:
        raise HubError(409, f"Reference already exists: {branch}", "Conflict") from exc


@router.get("/api/{plural}/{namespace}/{name}/xet-write-token/{revision:path}")
def xet_write_token(plural: str, namespace: str, name: str, revision: str) -> None:
    """Asked by clients with ``hf_xet`` installed: refused with the setting that makes them use LFS instead."""
    raise HubError(501, NO_XET, "XetNotSupported")


# -- preupload -------------------------------------------------------------------------------------------------


@router.post("/api/{plural}/{namespace}/{name}/preupload/{revision:path}")
async def preupload(plural: str, namespace: str, name: str, revision: str, request: Request) -> dict[str, Any]:
    """Which files go as LFS (``uploadMode``), with the ``oid`` of the file already at that path (the client
    skips an unchanged file); never ``shouldIgnore``."""
    rid = api_repo(plural, namespace, name)
    body = await json_body(request)
    return await run_in_threadpool(upload_modes, hub_state(request), request, rid, revision, body)


def upload_modes(hub: Hub, request: Request, rid: RepoId, revision: str, body: dict[str, Any]) -> dict[str, Any]:
    _token, repo = writable(hub, request, rid)
    files = body.get("files")
    if not isinstance(files, list) or len(files) > MAX_PREUPLOAD_FILES:
        raise HubError(400, f"expected {{\"files\": [{{path, sample, size}}, …]}} (at most {MAX_PREUPLOAD_FILES})",
                       "BadRequest")
    current = {e.path: e for e in files_at(hub, repo, revision)}
    return {"files": [upload_mode(hub, item, current) for item in files]}


def upload_mode(hub: Hub, item: Any, current: dict[str, Entry]) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise HubError(400, f"preupload entry {str(item)[:80]!r}: expected {{path, sample, size}}", "BadRequest")
    path = check_path(item["path"])
    size = announced_size(item.get("size"), path)
    if size > hub.max_file_bytes:
        raise too_large(hub, path, size)
    lower = path.lower()
    mode = "lfs" if size > LFS_OVER or lower.endswith(LFS_SUFFIXES) or "tfevents" in lower else "regular"
    answer: dict[str, Any] = {"path": item["path"], "uploadMode": mode, "shouldIgnore": False}
    existing = current.get(path)
    if existing is not None and existing.size == size:
        answer["oid"] = existing.blob if mode == "lfs" else git_blob_sha(hub, existing)
    return answer


def git_blob_sha(hub: Hub, entry: Entry) -> str | None:
    """Git's sha1 of a small file (what the client compares a regular file's content with)."""
    if entry.size > LFS_OVER:
        return None
    digest = hashlib.sha1(f"blob {entry.size}\0".encode(), usedforsecurity=False)
    for chunk in hub.blobs.read(entry.blob):
        digest.update(chunk)
    return digest.hexdigest()


# -- LFS: batch, upload, verify --------------------------------------------------------------------------------


@router.post("/{namespace}/{name}.git/info/lfs/objects/batch")
async def lfs_batch_model(namespace: str, name: str, request: Request) -> JSONResponse:
    """The Git LFS batch API of a model repo."""
    return await lfs_batch(repo_id(f"{namespace}/{name}", "model"), request)


@router.post("/datasets/{namespace}/{name}.git/info/lfs/objects/batch")
async def lfs_batch_dataset(namespace: str, name: str, request: Request) -> JSONResponse:
    """The Git LFS batch API of a dataset repo."""
    return await lfs_batch(repo_id(f"{namespace}/{name}", "dataset"), request)


async def lfs_batch(rid: RepoId, request: Request) -> JSONResponse:
    body = await json_body(request)
    answer = await run_in_threadpool(batch_answer, hub_state(request), request, rid, body)
    return JSONResponse(answer, media_type=LFS_JSON)


def batch_answer(hub: Hub, request: Request, rid: RepoId, body: dict[str, Any]) -> dict[str, Any]:
    """Per object: nothing to do (this repo has it) or ``actions.upload`` / ``actions.verify`` links."""
    _token, repo = writable(hub, request, rid)
    if body.get("operation") != "upload":
        raise HubError(400, f"LFS operation {body.get('operation')!r}: this endpoint takes uploads "
                            "(downloads go through /resolve/)", "BadRequest")
    transfers = body.get("transfers") or ["basic"]
    if not isinstance(transfers, list) or "basic" not in transfers:
        raise HubError(400, f"LFS transfers {transfers!r}: this hub speaks the basic transfer only", "BadRequest")
    objects = body.get("objects")
    if not isinstance(objects, list) or len(objects) > MAX_BATCH_OBJECTS:
        raise HubError(400, f"expected {{\"objects\": [{{oid, size}}, …]}} (at most {MAX_BATCH_OBJECTS})",
                       "BadRequest")
    owner = Ownership(hub, repo)
    base = base_url(request)
    return {"transfer": "basic", "hash_algo": "sha256",
            "objects": [batch_object(hub, owner, base, rid, item) for item in objects]}


def batch_object(hub: Hub, owner: Ownership, base: str, rid: RepoId, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not isinstance(item.get("oid"), str):
        raise HubError(400, f"LFS object {str(item)[:80]!r}: expected {{oid, size}}", "BadRequest")
    oid = lfs_oid(item["oid"])
    size = announced_size(item.get("size"), f"LFS object {oid}")
    if size > hub.max_file_bytes:
        raise too_large(hub, f"LFS object {oid}", size)
    # about to be committed: touched, so young again for the garbage collector (else it is uploaded anew)
    if owner.holds(oid) and hub.blobs.size(oid) == size and hub.blobs.touch(oid):
        return {"oid": oid, "size": size}
    upload, verify = link(hub, base, "upload", rid, oid, size), link(hub, base, "verify", rid, oid, size)
    return {"oid": oid, "size": size, "authenticated": True,
            "actions": {"upload": {"href": upload, "expires_in": LINK_TTL},
                        "verify": {"href": verify, "expires_in": LINK_TTL}}}


def lfs_oid(oid: str) -> str:
    try:
        return check_sha256(oid)
    except BlobError as exc:
        raise HubError(400, str(exc), "BadRequest") from exc


@dataclass
class Ownership:
    """Whether an LFS object is this repo's: uploaded to it, or held by one of its branches or tags."""

    hub: Hub
    repo: Repo
    _held: set[str] | None = field(default=None, init=False)

    def holds(self, oid: str) -> bool:
        if not self.hub.blobs.has(oid):
            return False
        if marker(self.hub, self.repo.repo_id, oid).is_file():
            return True
        if self._held is None:
            shas = {sha for _kind, sha in self.hub.db.refs(self.repo).values()}
            self._held = {e.blob for sha in shas for e in self.hub.db.files(self.repo, sha)}
        return oid in self._held


def markers_dir(storage: Path, rid: RepoId) -> Path:
    """Where the markers of the LFS objects uploaded to ``rid`` are kept."""
    return storage / UPLOADS / rid.repo_type / rid.namespace / rid.name


def marker(hub: Hub, rid: RepoId, oid: str) -> Path:
    return markers_dir(hub.storage, rid) / oid


def mark(hub: Hub, rid: RepoId, oid: str) -> None:
    path = marker(hub, rid, oid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


@lru_cache(maxsize=16)
def signing_key(storage: Path) -> bytes:
    """The key signing LFS links: ``storage/upload.key``, made once (so every worker and restart agrees). Written
    whole to a temporary file, then linked into place: a racing worker reads a complete key or makes none."""
    path = storage / "upload.key"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=storage, prefix=".upload.key-")  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(32))
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker made it first
        finally:
            os.unlink(tmp)
    key = path.read_bytes()
    if len(key) < 32:
        raise HubError(500, f"{path} is damaged (remove it: upload links issued before become invalid)")
    return key


def signature(hub: Hub, action: str, repo: str, oid: str, size: int, expires: int) -> str:
    message = f"{action}\n{repo}\n{oid}\n{size}\n{expires}".encode()
    return hmac.new(signing_key(hub.storage), message, hashlib.sha256).hexdigest()


def link(hub: Hub, base: str, action: str, rid: RepoId, oid: str, size: int) -> str:
    """A signed ``/lfs/{upload|verify}/OID`` link for this repo, object and size."""
    repo, expires = f"{rid.repo_type}/{rid.id}", int(time.time()) + LINK_TTL
    query = urlencode({"repo": repo, "size": size, "expires": expires,
                       "sig": signature(hub, action, repo, oid, size, expires)})
    return f"{base}/lfs/{action}/{oid}?{query}"


def check_link(hub: Hub, request: Request, action: str, oid: str) -> tuple[RepoId, int]:
    """The repo and size a signed link names; 403 if it is forged, altered or expired."""
    query = request.query_params
    repo, size, expires, sig = (query.get(k, "") for k in ("repo", "size", "expires", "sig"))
    if not (size.isdigit() and expires.isdigit()) or not hmac.compare_digest(
            signature(hub, action, repo, oid, int(size), int(expires)), sig):
        raise HubError(403, f"this LFS {action} link is not valid: ask the batch API for a new one", "Forbidden")
    if int(expires) < time.time():
        raise HubError(403, f"this LFS {action} link expired: ask the batch API for a new one", "Forbidden")
    repo_type, _, name = repo.partition("/")
    return repo_id(name, repo_type), int(size)


@router.put("/lfs/upload/{oid}")
async def lfs_upload(oid: str, request: Request) -> Response:
    """The body of one LFS object, streamed into the blob store; its sha256 and size are checked on arrival
    (a mismatch is 400 and nothing is stored)."""
    hub = hub_state(request)
    oid = lfs_oid(oid)
    rid, size = check_link(hub, request, "upload", oid)
    if size > hub.max_file_bytes:
        raise too_large(hub, f"LFS object {oid}", size)
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip() != str(size):
        raise HubError(400, f"the upload has Content-Length {declared}, not the announced {size} bytes", "BadRequest")
    try:
        await anyio.to_thread.run_sync(store, hub, rid, oid, size, body_chunks(request),
                                       limiter=upload_threads(request))
    except ClientDisconnect as exc:
        raise HubError(400, f"LFS object {oid}: the upload was cut off; nothing was stored", "BadRequest") from exc
    return Response(status_code=200)


def upload_threads(request: Request) -> anyio.CapacityLimiter:
    """The threads LFS uploads stream in: a pool of their own, so that long uploads never hold the threads every
    other route runs in (made on the app's event loop, once)."""
    limiter = getattr(request.app.state, "teamhub_upload_threads", None)
    if limiter is None:
        limiter = request.app.state.teamhub_upload_threads = anyio.CapacityLimiter(UPLOAD_THREADS)
    return limiter


def body_chunks(request: Request) -> Iterator[bytes]:
    """The request body, read from a worker thread (each chunk awaited on the event loop)."""
    stream = request.stream().__aiter__()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while (chunk := anyio.from_thread.run(next_chunk)) is not None:
        if chunk:
            yield chunk


class Counted:
    """An iterator of chunks that counts what it handed out."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.count = iter(chunks), 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.count += len(chunk)
            yield chunk


def store(hub: Hub, rid: RepoId, oid: str, size: int, chunks: Iterable[bytes]) -> None:
    stream = Counted(chunks)
    try:
        hub.blobs.put(stream, oid, size)
        if stream.count == 0 and size:  # already stored: the store read nothing, so prove the bytes here
            prove(stream, oid, size)
    except BlobError as exc:
        raise HubError(400, f"LFS object {oid}: {exc}", "BadRequest") from exc
    mark(hub, rid, oid)


def prove(chunks: Iterable[bytes], oid: str, size: int) -> None:
    digest, total = hashlib.sha256(), 0
    for chunk in chunks:
        total += len(chunk)
        if total > size:
            raise BlobError(f"the upload is larger than its announced {size} bytes: refused")
        digest.update(chunk)
    if total != size or digest.hexdigest() != oid:
        raise BlobError(f"the upload ({total} bytes) does not hash to the announced {oid}: refused")


@router.post("/lfs/verify/{oid}")
async def lfs_verify(oid: str, request: Request) -> JSONResponse:
    """After an upload: is the object stored, with its size, for this repo?"""
    hub = hub_state(request)
    oid = lfs_oid(oid)
    rid, size = check_link(hub, request, "verify", oid)
    body = await json_body(request)
    if body.get("oid", oid) != oid or body.get("size", size) != size:
        raise HubError(400, f"verify {body.get('oid')!r} ({body.get('size')!r} bytes): not what this link names",
                       "BadRequest")
    if not (await run_in_threadpool(verified, hub, rid, oid, size)):
        raise HubError(404, f"LFS object {oid} ({size} bytes) was not uploaded to {rid}", "EntryNotFound")
    return JSONResponse({"message": "ok"}, media_type=LFS_JSON)


def verified(hub: Hub, rid: RepoId, oid: str, size: int) -> bool:
    return hub.blobs.has(oid) and hub.blobs.size(oid) == size and marker(hub, rid, oid).is_file()


# -- commit ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    summary: str
    description: str
    parent: str | None

    @property
    def message(self) -> str:
        return f"{self.summary}\n\n{self.description}" if self.description else self.summary


@dataclass(frozen=True)
class Op:
    kind: str  # put | delete-file | delete-folder
    path: str
    entry: Entry | None = None  # what a put puts
    line: int = 0


@dataclass
class Target:
    """The branch a commit lands on: its files now and the sha it must still point at (None: not created yet)."""

    branch: str
    files: list[Entry]
    head: str | None
    base: str | None  # what the commit is based on: the head, or main's head for a new branch


@router.post("/api/{plural}/{namespace}/{name}/commit/{revision:path}")
async def commit(plural: str, namespace: str, name: str, revision: str, request: Request) -> dict[str, Any]:
    """The NDJSON commit: read line by line, regular files stored as they arrive, the new tree landed in one
    transaction on the branch (412 if ``parentCommit`` is not its head)."""
    hub, rid = hub_state(request), api_repo(plural, namespace, name)
    if request.query_params.get("create_pr") not in (None, "", "0", "false"):
        raise HubError(400, "This hub has no pull requests: commit to a branch (revision=...)", "BadRequest")
    token, repo = await run_in_threadpool(writable, hub, request, rid)
    owner = Ownership(hub, repo)
    header: Header | None = None
    ops: list[Op] = []
    async for number, line in ndjson_lines(request):
        key, value = parse_line(number, line)
        if header is None:
            header = parse_header(number, key, value)
        else:
            ops.append(await run_in_threadpool(parse_op, hub, owner, number, key, value))
    if header is None:
        raise HubError(400, "the commit is empty: expected a header line first", "BadRequest")
    sha = await run_in_threadpool(land, hub, repo, revision, header, ops, token)
    if revision == search.BRANCH:  # what search finds: main's manifest.json
        await run_in_threadpool(search.index_revision, hub, repo, sha)
    base = base_url(request)
    return {"success": True, "commitUrl": f"{repo_url(base, rid)}/commit/{sha}", "commitOid": sha,
            "commitMessage": header.message, "pullRequestUrl": None}


async def ndjson_lines(request: Request) -> AsyncIterator[tuple[int, bytes]]:
    """(line number, line) of the body, as it arrives; a line over :data:`MAX_LINE` is 413."""
    buffer, number = bytearray(), 0
    async for chunk in request.stream():
        buffer += chunk
        start = 0
        while (cut := buffer.find(b"\n", start)) >= 0:
            number += 1
            if cut > start:
                yield number, bytes(buffer[start:cut])
            start = cut + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE:
            raise HubError(413, f"commit line {number + 1} is over {MAX_LINE} bytes: upload files over "
                                f"{LFS_OVER} bytes as LFS (preupload says which)", "PayloadTooLarge")
    if buffer.strip():
        yield number + 1, bytes(buffer)


def parse_line(number: int, line: bytes) -> tuple[str, dict[str, Any]]:
    try:
        item = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HubError(400, f"commit line {number}: not JSON ({exc})", "BadRequest") from exc
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), dict):
        raise HubError(400, f"commit line {number}: expected {{\"key\": str, \"value\": {{…}}}}", "BadRequest")
    return item["key"], item["value"]


def parse_header(number: int, key: str, value: dict[str, Any]) -> Header:
    if key != "header":
        raise HubError(400, f"commit line {number}: the first line must be the header, not {key!r}", "BadRequest")
    summary, description, parent = value.get("summary"), value.get("description") or "", value.get("parentCommit")
    if not isinstance(summary, str) or not summary.strip() or not isinstance(description, str):
        raise HubError(400, f"commit line {number}: the header needs a non-empty 'summary'", "BadRequest")
    if parent is not None and not (isinstance(parent, str) and COMMIT_OID.fullmatch(parent)):
        raise HubError(400, f"commit line {number}: 'parentCommit' must be a 40-digit commit sha", "BadRequest")
    return Header(summary, description, parent)


def field_str(number: int, key: str, value: dict[str, Any], name: str) -> str:
    found = value.get(name)
    if not isinstance(found, str):
        raise HubError(400, f"commit line {number} ({key}): missing {name!r}", "BadRequest")
    return found


def line_path(number: int, key: str, value: dict[str, Any]) -> str:
    raw = field_str(number, key, value, "path")
    try:
        return check_path(raw.rstrip("/") if key == "deletedFolder" else raw)
    except NameError_ as exc:
        raise HubError(400, f"commit line {number} ({key}): {exc}", "BadRequest") from exc


def parse_op(hub: Hub, owner: Ownership, number: int, key: str, value: dict[str, Any]) -> Op:
    """One operation line, checked; a regular file's content is stored now."""
    path = line_path(number, key, value)
    if key == "file":
        return Op("put", path, regular_file(hub, number, path, value), number)
    if key == "lfsFile":
        return Op("put", path, lfs_file(hub, owner, number, path, value), number)
    if key in ("deletedFile", "deletedFolder"):
        return Op("delete-file" if key == "deletedFile" else "delete-folder", path, None, number)
    raise HubError(400, f"commit line {number}: unknown key {key!r} (expected header, file, lfsFile, deletedFile "
                        "or deletedFolder)", "BadRequest")


def regular_file(hub: Hub, number: int, path: str, value: dict[str, Any]) -> Entry:
    content, encoding = field_str(number, "file", value, "content"), value.get("encoding", "base64")
    try:
        data = base64.b64decode(content, validate=True) if encoding == "base64" else None
        data = content.encode() if encoding in ("utf-8", "utf8") else data
    except (binascii.Error, ValueError) as exc:
        raise HubError(400, f"commit line {number} (file {path}): content is not base64 ({exc})", "BadRequest") from exc
    if data is None:
        raise HubError(400, f"commit line {number} (file {path}): encoding {encoding!r}: expected base64",
                       "BadRequest")
    if len(data) > hub.max_file_bytes:
        raise too_large(hub, path, len(data))
    sha, size = hub.blobs.put_bytes(data)
    return Entry(path, sha, size, lfs=False)


def lfs_file(hub: Hub, owner: Ownership, number: int, path: str, value: dict[str, Any]) -> Entry:
    if value.get("algo", "sha256") != "sha256":
        raise HubError(400, f"commit line {number} (lfsFile {path}): algo {value.get('algo')!r}: expected sha256",
                       "BadRequest")
    oid = field_str(number, "lfsFile", value, "oid")
    # named by a commit about to land: touched, so young again for the garbage collector
    if not owner.holds(lfs_oid(oid)) or not hub.blobs.touch(oid):
        raise HubError(400, f"commit line {number} (lfsFile {path}): LFS object {oid} is not in this repo: "
                            "upload the LFS object first (the LFS batch API)", "BadRequest")
    size = hub.blobs.size(oid)
    if value.get("size", size) != size:
        raise HubError(400, f"commit line {number} (lfsFile {path}): size {value.get('size')!r}, but the stored "
                            f"object has {size} bytes", "BadRequest")
    return Entry(path, oid, size, lfs=True)


def land(hub: Hub, repo: Repo, revision: str, header: Header, ops: list[Op], token: Token) -> str:
    """The new revision's sha, committed on the branch; without ``parentCommit`` a commit that lost a race is
    replayed on the new head (at most :data:`COMMIT_RETRIES` times)."""
    for attempt in range(COMMIT_RETRIES):
        target = commit_target(hub, repo, revision)
        if header.parent is not None and header.parent != target.base:
            raise HubError(412, f"{MOVED} ({target.branch} is at {target.base}, not parentCommit {header.parent})",
                           "PreconditionFailed")
        files = apply(target.files, ops)
        try:
            return hub.db.commit(repo, target.branch, files, header.message, token.name, parent=target.head).sha
        except ConflictError as exc:
            if header.parent is not None or attempt == COMMIT_RETRIES - 1:
                raise HubError(412, f"{MOVED} ({exc})", "PreconditionFailed") from exc
    raise AssertionError("unreachable")


def commit_target(hub: Hub, repo: Repo, revision: str) -> Target:
    """The branch ``revision`` names; a new branch (other than a first ``main``) starts from main."""
    refs = hub.db.refs(repo)
    if revision in refs:
        kind, sha = refs[revision]
        if kind != "branch":
            raise HubError(400, f"{revision!r} is a tag: commit to a branch", "BadRequest")
        return Target(revision, hub.db.files(repo, sha), sha, sha)
    check_branch(hub, repo, revision)
    kind, main = refs.get("main", ("", None))
    start = main if kind == "branch" else None
    return Target(revision, hub.db.files(repo, start) if start else [], None, start)


def check_branch(hub: Hub, repo: Repo, name: str) -> None:
    if hub.db.resolve(repo, name) is not None:
        raise HubError(400, f"{name!r} is a commit: commit to a branch", "BadRequest")
    check_ref_name(name, "branch")


def check_ref_name(name: str, kind: str) -> None:
    """A new branch's or tag's (``kind``) name: 400 unless it is one git and the Hub allow, and no sha prefix."""
    if name.startswith("refs/"):
        raise HubError(400, f"revision {name!r}: this hub has no pull requests or special refs", "BadRequest")
    if not BRANCH.fullmatch(name) or ".." in name or "//" in name or name.endswith(".lock") or HEX.fullmatch(name):
        raise HubError(400, f"{kind} name {name!r}: use letters, digits, '-', '_', '.' and '/' (not a hex sha)",
                       "BadRequest")


def apply(files: list[Entry], ops: list[Op]) -> list[Entry]:
    """The tree after ``ops``, in order; deleting what is not there is 404, a file inside a file is 400."""
    tree = {e.path: e for e in files}
    for op in ops:
        if op.entry is not None:  # put
            tree[op.path] = op.entry
        elif op.kind == "delete-file":
            if tree.pop(op.path, None) is None:
                raise HubError(404, f"commit line {op.line}: cannot delete {op.path}: A file with this name doesn't "
                                    "exist", "EntryNotFound")
        else:
            inside = [p for p in tree if p.startswith(op.path + "/")]
            if not inside:
                raise HubError(404, f"commit line {op.line}: cannot delete folder {op.path}: no such folder",
                               "EntryNotFound")
            for path in inside:
                del tree[path]
    check_tree(tree)
    return sorted(tree.values(), key=lambda e: e.path)


def check_tree(tree: dict[str, Entry]) -> None:
    for path in tree:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            if "/".join(parts[:depth]) in tree:
                raise HubError(400, f"{path}: {'/'.join(parts[:depth])} is a file, it cannot hold other files",
                               "BadRequest")
