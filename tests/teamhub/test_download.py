"""The hub's download routes, driven by the stock clients against a running server: ``huggingface_hub``
(``snapshot_download``, ``hf_hub_download``, ``HfApi``) and ``transformers``' ``from_pretrained``, plus the raw HTTP
details those clients rely on (headers, byte ranges, pagination links, errors)."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils.sha import git_hash

from kaiyuan.serve.server import BackgroundServer
from kaiyuan.teamhub import download
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.context import Hub
from kaiyuan.teamhub.names import repo_id
from tests.teamhub.seed import seed, seed_folder

WEIGHTS = random.Random(0).randbytes(3 * (1 << 20) + 123)  # > 2 blob-store chunks
FILES = {
    "config.json": b'{"model_type": "tiny"}\n',
    "model.safetensors": WEIGHTS,
    "docs/read me.txt": "caf\u00e9 notes\n".encode(),
    "docs/deep/a.txt": b"a",
    "docs/deep/b.txt": b"b",
    "empty.txt": b"",
}


@pytest.fixture
def online(monkeypatch):
    """Undo tests/conftest.py's offline mode for this test (env and huggingface_hub's import-time constants)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.fixture
def served(tmp_path, online):
    """(hub, url) of a hub server running on a free port."""
    app = create_hub_app(tmp_path / "hub")
    with BackgroundServer(app) as server:
        yield app.state.hub, server.url


def fetch(url: str, cache: Path, **kwargs) -> dict[str, bytes]:
    folder = Path(snapshot_download("team/tiny", endpoint=url, cache_dir=cache, token=False, **kwargs))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- snapshot_download / hf_hub_download -------------------------------------------------------------------------


def test_snapshot_download_by_branch_sha_and_tag(served, tmp_path):
    hub, url = served
    first = seed(hub, "team/tiny", FILES)
    repo = hub.db.repo(repo_id("team/tiny"))
    hub.db.tag(repo, "v1", first.sha)
    second = seed(hub, "team/tiny", {**FILES, "config.json": b'{"model_type": "tinier"}\n'})
    assert second.sha != first.sha

    assert fetch(url, tmp_path / "c1") == {**FILES, "config.json": b'{"model_type": "tinier"}\n'}
    assert fetch(url, tmp_path / "c2", revision=first.sha) == FILES
    assert fetch(url, tmp_path / "c3", revision="v1") == FILES
    cached = tmp_path / "c3" / "models--team--tiny"
    assert (cached / "refs" / "v1").read_text() == first.sha
    # the cache names blobs by ETag: the sha256 of the content, for LFS and regular files alike
    assert (cached / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).is_file()
    assert (cached / "blobs" / hashlib.sha256(FILES["config.json"]).hexdigest()).is_file()


def test_a_branch_named_with_slashes_and_a_dataset(served, tmp_path):
    hub, url = served
    pr = seed(hub, "team/tiny", {"config.json": b"{}"}, branch="refs/pr/1")
    path = hf_hub_download("team/tiny", "config.json", revision="refs/pr/1", endpoint=url, cache_dir=tmp_path,
                           token=False)
    assert Path(path).read_bytes() == b"{}" and pr.sha in path
    seed(hub, "team/rows", {"data/train.jsonl": b'{"x": 1}\n'}, repo_type="dataset")
    folder = snapshot_download("team/rows", repo_type="dataset", endpoint=url, cache_dir=tmp_path, token=False)
    assert (Path(folder) / "data" / "train.jsonl").read_bytes() == b'{"x": 1}\n'
    with pytest.raises(RepositoryNotFoundError):  # a dataset is not a model
        hf_hub_download("team/rows", "data/train.jsonl", endpoint=url, cache_dir=tmp_path / "x", token=False)


def test_a_private_repo_needs_a_token_for_its_namespace(served, tmp_path):
    hub, url = served
    seed(hub, "team/tiny", FILES, private=True)
    with pytest.raises(RepositoryNotFoundError):
        fetch(url, tmp_path / "anonymous")
    other = hub.db.create_token("other", "read", namespace="elsewhere")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("team/tiny", endpoint=url, cache_dir=tmp_path / "other", token=other)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("team/tiny", "config.json", endpoint=url, cache_dir=tmp_path / "other", token=False)
    reader = hub.db.create_token("reader", "read", namespace="team")
    folder = Path(snapshot_download("team/tiny", endpoint=url, cache_dir=tmp_path / "reader", token=reader))
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS


def test_unknown_repo_revision_and_file_are_the_hubs_errors(served, tmp_path):
    hub, url = served
    seed(hub, "team/tiny", FILES)
    kwargs = {"endpoint": url, "cache_dir": tmp_path, "token": False}
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("team/absent", "config.json", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("team/tiny", "config.json", revision="no-such-branch", **kwargs)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("team/tiny", revision="no-such-branch", **kwargs)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("team/tiny", "absent.json", **kwargs)
    # the client cached the file's absence for the commit the 404 named
    assert any((tmp_path / "models--team--tiny" / ".no_exist").rglob("absent.json"))
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=url, token=False).model_info("team/tiny", revision="deadbeef00")


def test_one_file_and_the_headers_the_client_reads(served, tmp_path):
    hub, url = served
    commit = seed(hub, "team/tiny", FILES)
    path = hf_hub_download("team/tiny", "model.safetensors", endpoint=url, cache_dir=tmp_path, token=False)
    assert Path(path).read_bytes() == WEIGHTS
    assert Path(hf_hub_download("team/tiny", "empty.txt", endpoint=url, cache_dir=tmp_path, token=False)
                ).read_bytes() == b""
    meta = get_hf_file_metadata(hf_hub_url("team/tiny", "model.safetensors", endpoint=url), token=False)
    assert (meta.commit_hash, meta.etag, meta.size, meta.xet_file_data) == (
        commit.sha, hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS), None)

    head = httpx.head(f"{url}/team/tiny/resolve/main/model.safetensors", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-repo-commit"] == commit.sha
    assert head.headers["etag"] == head.headers["x-linked-etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert head.headers["content-length"] == head.headers["x-linked-size"] == str(len(WEIGHTS))
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-type"] == "application/octet-stream"
    assert not [name for name in head.headers if name.lower().startswith("x-xet")]

    plain = httpx.head(f"{url}/team/tiny/resolve/{commit.sha}/docs/read%20me.txt")
    assert plain.status_code == 200 and "x-linked-etag" not in plain.headers
    assert plain.headers["etag"] == f'"{hashlib.sha256(FILES["docs/read me.txt"]).hexdigest()}"'
    assert httpx.get(f"{url}/team/tiny/resolve/main/docs/read%20me.txt").content == FILES["docs/read me.txt"]


def test_byte_ranges(served):
    hub, url = served
    seed(hub, "team/tiny", FILES)
    file = f"{url}/team/tiny/resolve/main/model.safetensors"
    size = len(WEIGHTS)

    def get(spec: str) -> httpx.Response:
        return httpx.get(file, headers={"Range": spec})

    part = get("bytes=10-19")
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, WEIGHTS[10:20],
                                                                                f"bytes 10-19/{size}")
    assert part.headers["content-length"] == "10"
    tail = get(f"bytes={size - 5}-")
    assert (tail.status_code, tail.content) == (206, WEIGHTS[-5:])
    assert get("bytes=-7").content == WEIGHTS[-7:]
    assert get(f"bytes={size - 2}-{size + 100}").content == WEIGHTS[-2:]  # an end past the file is clamped
    for bad in (f"bytes={size}-", "bytes=5-2", "bytes=0-1,4-5", "items=0-1", "bytes=-"):
        refused = get(bad)
        assert refused.status_code == 416, bad
    assert httpx.get(f"{url}/team/tiny/resolve/main/empty.txt", headers={"Range": "bytes=0-"}).status_code == 416


class ConnectionCut(Exception):
    """Raised by :class:`CutFirstDownload` to drop the connection mid-body."""


class CutFirstDownload:
    """ASGI wrapper: the first ``GET …/resolve/…`` is cut after ``after`` body bytes (the connection drops, as a
    network failure would); every ``Range`` header a file GET carried is recorded."""

    def __init__(self, app, after: int) -> None:
        self.app, self.after, self.cut, self.ranges = app, after, False, []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or "/resolve/" not in scope["path"]:
            return await self.app(scope, receive, send)
        self.ranges.append(dict(scope["headers"]).get(b"range"))
        if self.cut:
            return await self.app(scope, receive, send)
        self.cut, sent = True, 0

        async def cutting(message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if sent + len(body) >= self.after:
                    await send({"type": "http.response.body", "body": body[:self.after - sent], "more_body": True})
                    raise ConnectionCut
                sent += len(body)
            await send(message)

        await self.app(scope, receive, cutting)


def test_an_interrupted_download_resumes_with_a_range(tmp_path, online, monkeypatch):
    """huggingface_hub 2.4 resumes only within one call (its ``.incomplete`` file is per-process and removed on
    failure), from the bytes it had written: whole ``DOWNLOAD_CHUNK_SIZE`` chunks (10 MiB; 64 KiB here)."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 16)
    app = create_hub_app(tmp_path / "hub")
    seed(app.state.hub, "team/tiny", FILES)
    cut = CutFirstDownload(app, after=(1 << 20) + 7)
    with BackgroundServer(cut) as server:  # type: ignore[arg-type]
        path = hf_hub_download("team/tiny", "model.safetensors", endpoint=server.url, cache_dir=tmp_path / "c",
                               token=False)
    assert Path(path).read_bytes() == WEIGHTS
    assert len(cut.ranges) == 2 and cut.ranges[0] is None
    resumed = re.fullmatch(rb"bytes=(\d+)-", cut.ranges[1] or b"")
    assert resumed and 0 < int(resumed.group(1)) <= (1 << 20) + 7, cut.ranges


# -- repo info and tree ------------------------------------------------------------------------------------------


def test_model_info_and_dataset_info(served):
    hub, url = served
    commit = seed(hub, "team/tiny", FILES)
    api = HfApi(endpoint=url, token=False)
    for revision in (None, "main", commit.sha, commit.sha[:7]):
        info = api.model_info("team/tiny", revision=revision)
        assert (info.id, info.sha, info.private, info.downloads, info.likes) == ("team/tiny", commit.sha, False, 0, 0)
    assert info.last_modified is not None and info.created_at is not None
    assert sorted(s.rfilename for s in info.siblings) == sorted(FILES)
    detailed = {s.rfilename: s for s in api.model_info("team/tiny", files_metadata=True).siblings}
    weights = detailed["model.safetensors"]
    assert (weights.size, weights.lfs.sha256, weights.lfs.size) == (len(WEIGHTS), hashlib.sha256(WEIGHTS).hexdigest(),
                                                                    len(WEIGHTS))
    assert detailed["config.json"].lfs is None
    assert detailed["config.json"].blob_id == git_hash(FILES["config.json"])  # git's blob id, as on the Hub
    raw = httpx.get(f"{url}/api/models/team/tiny/revision/main").json()
    assert raw["modelId"] == "team/tiny" and raw["tags"] == []

    seed(hub, "team/rows", {"train.jsonl": b"{}\n"}, repo_type="dataset")
    rows = api.dataset_info("team/rows", revision="main")
    assert rows.id == "team/rows" and [s.rfilename for s in rows.siblings] == ["train.jsonl"]
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("team/rows")


def test_list_repo_tree_folders_and_files(served):
    hub, url = served
    commit = seed(hub, "team/tiny", FILES)
    api = HfApi(endpoint=url, token=False)
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("team/tiny")}
    assert top == {"config.json": "RepoFile", "model.safetensors": "RepoFile", "empty.txt": "RepoFile",
                   "docs": "RepoFolder"}
    deep = {e.path for e in api.list_repo_tree("team/tiny", path_in_repo="docs/deep", revision=commit.sha)}
    assert deep == {"docs/deep/a.txt", "docs/deep/b.txt"}
    files = {e.path: e for e in api.list_repo_tree("team/tiny", recursive=True) if type(e).__name__ == "RepoFile"}
    assert set(files) == set(FILES)
    assert files["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert files["docs/read me.txt"].blob_id == git_hash(FILES["docs/read me.txt"])
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("team/tiny", path_in_repo="nowhere"))
    with pytest.raises(EntryNotFoundError):  # a file is not a folder
        list(api.list_repo_tree("team/tiny", path_in_repo="config.json"))


def test_the_tree_is_paginated_by_absolute_next_links(served, monkeypatch):
    hub, url = served
    many = {f"shard/{i:03d}.txt": str(i).encode() for i in range(23)} | FILES
    commit = seed(hub, "team/tiny", many)
    expected = set(many) | {"docs", "docs/deep", "shard"}

    seen, link, pages = [], f"{url}/api/models/team/tiny/tree/main?recursive=true&limit=4", 0
    while link:
        page = httpx.get(link)
        assert page.status_code == 200
        seen += [item["path"] for item in page.json()]
        link = page.links.get("next", {}).get("url")
        assert link is None or (link.startswith(f"{url}/api/models/team/tiny/tree/{commit.sha}?") and "limit=4" in link)
        pages += 1
    assert sorted(seen) == sorted(expected) and len(seen) == len(expected) and pages == 8

    monkeypatch.setattr(download, "PAGE", 5)  # the client sends no limit: follow the server's own pages
    listed = [e.path for e in HfApi(endpoint=url, token=False).list_repo_tree("team/tiny", recursive=True)]
    assert sorted(listed) == sorted(expected) and len(listed) == len(expected)
    assert httpx.get(f"{url}/api/models/team/tiny/tree/main?cursor=%%%").status_code == 400


def test_verify_repo_checksums_agrees_with_the_tree(served, tmp_path):
    hub, url = served
    seed(hub, "team/tiny", FILES)
    folder = snapshot_download("team/tiny", endpoint=url, local_dir=tmp_path / "local", token=False)
    result = HfApi(endpoint=url, token=False).verify_repo_checksums("team/tiny", local_dir=folder)
    assert result.mismatches == [] and result.missing_paths == [] and result.checked_count == len(FILES)


def test_paths_outside_the_repo_are_not_found(served):
    hub, url = served
    seed(hub, "team/tiny", FILES)
    (Path(hub.storage) / "secret.txt").write_text("no")
    for path in ("..%2F..%2Fhub.sqlite", "..%2Fsecret.txt", "docs/..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd",
                 ".%2Fconfig.json%00", "docs%5C..%5Cconfig.json"):
        answer = httpx.get(f"{url}/team/tiny/resolve/main/{path}")
        assert answer.status_code == 404 and answer.headers["x-error-code"] == "EntryNotFound", path
    assert httpx.get(f"{url}/team/bad..name/resolve/main/config.json").headers["x-error-code"] == "RepoNotFound"
    weird = httpx.get(f"{url}/team/tiny/resolve/main/caf%C3%A9.txt")  # a non-ASCII path in the error headers
    assert weird.status_code == 404 and "caf%C3%A9.txt" in weird.headers["x-error-message"]


# -- transformers --------------------------------------------------------------------------------------------------


def test_transformers_loads_a_model_and_tokenizer_from_the_hub(served, home, tmp_path, monkeypatch):
    import torch
    import transformers.utils.hub as transformers_hub
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kaiyuan.models import create_tiny_llama

    hub, url = served
    artifact = create_tiny_llama()
    seed_folder(hub, "team/tiny", Path(artifact.path))
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(transformers_hub, "_hf_api", None)  # its shared HfApi took the endpoint when first made

    cache = tmp_path / "hf-cache"
    model = AutoModelForCausalLM.from_pretrained("team/tiny", cache_dir=cache, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained("team/tiny", cache_dir=cache)
    local = AutoModelForCausalLM.from_pretrained(artifact.path, dtype=torch.float32)
    local_tokenizer = AutoTokenizer.from_pretrained(artifact.path)
    assert (cache / "models--team--tiny" / "snapshots").is_dir()

    mine, theirs = model.state_dict(), local.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    text = "hello tiny hub"
    assert tokenizer(text)["input_ids"] == local_tokenizer(text)["input_ids"]
    assert tokenizer.chat_template == local_tokenizer.chat_template


def test_seed_is_a_whole_tree_commit(tmp_path):
    app = create_hub_app(tmp_path / "hub")
    hub: Hub = app.state.hub
    first = seed(hub, "team/tiny", {"a.bin": b"1", "b.txt": b"2"})
    repo = hub.db.repo(repo_id("team/tiny"))
    assert [(e.path, e.lfs) for e in hub.db.files(repo, first.sha)] == [("a.bin", True), ("b.txt", False)]
    second = seed(hub, "team/tiny", {"b.txt": b"2"}, lfs_paths=["b.txt"])
    assert [(e.path, e.lfs) for e in hub.db.files(repo, second.sha)] == [("b.txt", True)]
    assert hub.db.resolve(repo, "main") == second
