"""The team hub's upload routes, driven by the stock ``huggingface_hub`` client against a running server
(``create_repo``, ``upload_folder``, ``create_commit``), and by raw HTTP where the client would refuse to send
what the server must refuse too (path traversal, forged LFS bytes)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from kaiyuan.serve.server import BackgroundServer
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.names import repo_id

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def online(monkeypatch, tmp_path):
    """The client allowed to talk to our server (tests/conftest.py sets HF_HUB_OFFLINE=1), over LFS, not Xet."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def start(tmp_path: Path, max_file_bytes: int = 8 << 20):
    app = create_hub_app(tmp_path / "hub", max_file_bytes=max_file_bytes)
    return app, BackgroundServer(app)


@pytest.fixture
def hub(online, tmp_path):
    """(app, server, write token for namespace ``team``)."""
    app, server = start(tmp_path)
    with server:
        yield app, server, app.state.hub.db.create_token("ci", "write", "team")


def model_folder(root: Path) -> dict[str, bytes]:
    """A small model folder: README with front matter, a text file, a nested file, a 2 MB safetensors."""
    files = {"README.md": b"---\nlicense: mit\n---\n# tiny\n", "config.json": b'{"hidden_size": 8}\n',
             "nested/notes.txt": b"nested file\n", "model.safetensors": os.urandom(2 << 20)}
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return files


def tree(app, repo: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
    """path → bytes of a revision, read from the hub's metadata and blob store."""
    db, blobs = app.state.hub.db, app.state.hub.blobs
    found = db.repo(repo_id(repo, repo_type))
    commit = db.resolve(found, revision)
    return {e.path: b"".join(blobs.read(e.blob)) for e in db.files(found, commit.sha)}


def ndjson(*items: dict) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def header(summary: str = "test", **extra) -> dict:
    return {"key": "header", "value": {"summary": summary, "description": "", **extra}}


def regular(path: str, content: bytes) -> dict:
    return {"key": "file", "value": {"path": path, "content": base64.b64encode(content).decode(), "encoding": "base64"}}


def post_commit(server, token: str | None, body: bytes, repo: str = "team/tiny", revision: str = "main"
                ) -> httpx.Response:
    headers = {"Content-Type": "application/x-ndjson"} | ({"Authorization": f"Bearer {token}"} if token else {})
    return httpx.post(f"{server.url}/api/models/{repo}/commit/{revision}", content=body, headers=headers)


def lfs_batch(server, token: str, objects: list[dict], repo: str = "team/tiny") -> httpx.Response:
    body = {"operation": "upload", "transfers": ["basic", "multipart"], "objects": objects, "hash_algo": "sha256"}
    return httpx.post(f"{server.url}/{repo}.git/info/lfs/objects/batch", json=body,
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.git-lfs+json"})


def test_create_repo_and_upload_folder_round_trip(hub, tmp_path):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    url = api.create_repo("team/tiny")
    assert (url.repo_id, url.repo_type, str(url)) == ("team/tiny", "model", f"{server.url}/team/tiny")
    assert api.create_repo("team/tiny", exist_ok=True).repo_id == "team/tiny"
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_repo("team/tiny")
    assert refused.value.response.status_code == 409

    folder = tmp_path / "src"
    files = model_folder(folder)
    info = api.upload_folder(repo_id="team/tiny", folder_path=folder, commit_message="first")
    assert info.oid == app.state.hub.db.resolve(app.state.hub.db.repo(repo_id("team/tiny")), "main").sha
    assert info.commit_url == f"{server.url}/team/tiny/commit/{info.oid}"
    assert tree(app, "team/tiny") == files
    entries = app.state.hub.db.files(app.state.hub.db.repo(repo_id("team/tiny")), info.oid)
    assert {e.path for e in entries if e.lfs} == {"model.safetensors"}

    local = Path(snapshot_download("team/tiny", endpoint=server.url, token=token, cache_dir=tmp_path / "cache"))
    assert {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()} == files


def test_second_upload_deletes_and_parent_commit(hub, tmp_path):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    api.create_repo("team/tiny")
    folder = tmp_path / "src"
    files = model_folder(folder)
    first = api.upload_folder(repo_id="team/tiny", folder_path=folder)

    (folder / "nested" / "notes.txt").unlink()
    (folder / "config.json").write_bytes(b'{"hidden_size": 16}\n')
    second = api.upload_folder(repo_id="team/tiny", folder_path=folder, delete_patterns="nested/*",
                               parent_commit=first.oid)
    files.pop("nested/notes.txt")
    files["config.json"] = b'{"hidden_size": 16}\n'
    assert tree(app, "team/tiny") == files
    repo = app.state.hub.db.repo(repo_id("team/tiny"))
    assert app.state.hub.db.resolve(repo, "main").parent == first.oid

    stale = [CommitOperationAdd(path_in_repo="late.txt", path_or_fileobj=b"too late")]
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_commit("team/tiny", stale, commit_message="stale", parent_commit=first.oid)
    assert refused.value.response.status_code == 412
    assert app.state.hub.db.resolve(repo, "main").sha == second.oid

    gone = [CommitOperationDelete(path_in_repo="config.json")]
    third = api.create_commit("team/tiny", gone, commit_message="rm", parent_commit=second.oid)
    assert "config.json" not in tree(app, "team/tiny") and third.oid != second.oid


def test_unchanged_files_are_not_sent_again(hub, tmp_path):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    api.create_repo("team/tiny")
    folder = tmp_path / "src"
    model_folder(folder)
    first = api.upload_folder(repo_id="team/tiny", folder_path=folder)
    answer = httpx.post(f"{server.url}/api/models/team/tiny/preupload/main",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"files": [{"path": "model.safetensors", "sample": "", "size": 2 << 20},
                                        {"path": "config.json", "sample": "", "size": 19},
                                        {"path": "data/train.parquet", "sample": "", "size": 10}]}).json()
    weights, config, shard = answer["files"]
    assert shard == {"path": "data/train.parquet", "uploadMode": "lfs", "shouldIgnore": False}
    assert weights["uploadMode"] == "lfs" and weights["oid"] == hashlib.sha256(
        (folder / "model.safetensors").read_bytes()).hexdigest()
    content = (folder / "config.json").read_bytes()
    assert config["uploadMode"] == "regular" and not config["shouldIgnore"]
    assert config["oid"] == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    again = api.upload_folder(repo_id="team/tiny", folder_path=folder)
    assert again.oid == first.oid


def test_new_branch_starts_from_main(hub, tmp_path):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    api.create_repo("team/tiny")
    api.upload_file(path_or_fileobj=b"on main", path_in_repo="a.txt", repo_id="team/tiny")
    api.upload_file(path_or_fileobj=b"on dev", path_in_repo="b.txt", repo_id="team/tiny", revision="dev")
    assert tree(app, "team/tiny", "dev") == {"a.txt": b"on main", "b.txt": b"on dev"}
    assert tree(app, "team/tiny") == {"a.txt": b"on main"}


def test_create_branch(hub):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    api.create_repo("team/tiny")
    api.create_branch("team/tiny", branch="empty")
    assert tree(app, "team/tiny", "empty") == {}
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id="team/tiny")
    api.upload_file(path_or_fileobj=b"two", path_in_repo="a.txt", repo_id="team/tiny")
    api.create_branch("team/tiny", branch="release/v1", revision=first.oid)
    repo = app.state.hub.db.repo(repo_id("team/tiny"))
    assert app.state.hub.db.resolve(repo, "release/v1").sha == first.oid
    api.create_branch("team/tiny", branch="release/v1", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as refused:
        api.create_branch("team/tiny", branch="release/v1")
    assert refused.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"fix", path_in_repo="b.txt", repo_id="team/tiny", revision="release/v1")
    assert tree(app, "team/tiny", "release/v1") == {"a.txt": b"one", "b.txt": b"fix"}
    assert tree(app, "team/tiny") == {"a.txt": b"two"}


def test_private_and_dataset_repos(hub, tmp_path):
    app, server, token = hub
    api = HfApi(endpoint=server.url, token=token)
    assert api.create_repo("solo").repo_id == "team/solo"  # no namespace: the token's
    api.create_repo("team/secret", private=True)
    assert app.state.hub.db.repo(repo_id("team/secret")).private
    url = api.create_repo("team/data", repo_type="dataset")
    assert str(url) == f"{server.url}/datasets/team/data"
    weights = os.urandom(1 << 16)
    ops = [CommitOperationAdd(path_in_repo="data/train.jsonl", path_or_fileobj=b'{"x": 1}\n'),
           CommitOperationAdd(path_in_repo="data/blob.bin", path_or_fileobj=weights)]
    info = api.create_commit("team/data", ops, commit_message="data", repo_type="dataset")
    assert info.commit_url == f"{server.url}/datasets/team/data/commit/{info.oid}"
    db, blobs = app.state.hub.db, app.state.hub.blobs
    found = db.repo(repo_id("team/data", "dataset"))
    got = {e.path: (e.lfs, b"".join(blobs.read(e.blob))) for e in db.files(found, info.oid)}
    assert got == {"data/train.jsonl": (False, b'{"x": 1}\n'), "data/blob.bin": (True, weights)}


def test_writing_needs_a_write_token_for_the_namespace(hub):
    app, server, token = hub
    db = app.state.hub.db
    HfApi(endpoint=server.url, token=token).create_repo("team/tiny")
    cases = [(False, 401), (db.create_token("reader", "read", "team"), 403),
             (db.create_token("elsewhere", "write", "other"), 403)]
    for who, status in cases:
        api = HfApi(endpoint=server.url, token=who)
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_repo("team/new")
        assert refused.value.response.status_code == status
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="team/tiny")
        assert refused.value.response.status_code == status
        assert post_commit(server, who or None, ndjson(header(), regular("x.txt", b"x"))).status_code == status
    assert db.repo(repo_id("team/new")) is None
    assert tree(app, "team/tiny") == {}  # the empty main of a new repo, untouched


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/abs", ".git/config", "a//b", "back\\slash"])
def test_bad_paths_are_refused(hub, path):
    app, server, token = hub
    HfApi(endpoint=server.url, token=token).create_repo("team/tiny")
    answer = post_commit(server, token, ndjson(header(), regular("ok.txt", b"ok"), regular(path, b"evil")))
    assert answer.status_code == 400 and "line 3" in answer.json()["error"]
    answer = httpx.post(f"{server.url}/api/models/team/tiny/preupload/main",
                        headers={"Authorization": f"Bearer {token}"},
                        json={"files": [{"path": path, "sample": "", "size": 4}]})
    assert answer.status_code == 400
    assert tree(app, "team/tiny") == {}


def test_malformed_commits_name_the_line(hub):
    app, server, token = hub
    HfApi(endpoint=server.url, token=token).create_repo("team/tiny")
    cases = {b"not json\n": "line 1", ndjson(regular("a", b"a")): "must be the header",
             ndjson(header(), {"key": "file", "value": {"content": ""}}): "line 2 (file): missing 'path'",
             ndjson(header(), {"key": "rename", "value": {"path": "a"}}): "unknown key 'rename'",
             ndjson(header(), {"key": "file", "value": {"path": "a", "content": "%%"}}): "not base64",
             ndjson(header(), {"key": "deletedFile", "value": {"path": "nope"}}): "doesn't exist",
             ndjson(header(), regular("a", b"1"), regular("a/b", b"2")): "a is a file",
             ndjson(header(parentCommit="abc")): "parentCommit", b"": "empty"}
    for body, said in cases.items():
        answer = post_commit(server, token, body)
        assert answer.status_code in (400, 404) and said in answer.json()["error"], (body, answer.text)
    assert post_commit(server, token, ndjson(header()), revision="main?create_pr=1").status_code == 400


def test_lfs_upload_is_checked_on_arrival(hub):
    app, server, token = hub
    blobs = app.state.hub.blobs
    HfApi(endpoint=server.url, token=token).create_repo("team/tiny")
    real, forged = os.urandom(4096), os.urandom(4096)
    oid = hashlib.sha256(real).hexdigest()
    [item] = lfs_batch(server, token, [{"oid": oid, "size": len(real)}]).json()["objects"]
    upload, verify = item["actions"]["upload"]["href"], item["actions"]["verify"]["href"]
    assert upload.startswith(f"{server.url}/lfs/upload/{oid}?")

    answer = httpx.put(upload, content=forged)
    assert answer.status_code == 400 and "refused" in answer.json()["error"]
    assert not blobs.has(oid) and not any(blobs.all())
    assert httpx.post(verify, json={"oid": oid, "size": len(real)}).status_code == 404
    assert httpx.put(upload.replace("sig=", "sig=0"), content=real).status_code == 403
    lfs_line = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(real)}}
    answer = post_commit(server, token, ndjson(header(), lfs_line))
    assert answer.status_code == 400 and "upload the LFS object first" in answer.json()["error"]

    assert httpx.put(upload, content=real).status_code == 200
    assert blobs.has(oid) and httpx.post(verify, json={"oid": oid, "size": len(real)}).status_code == 200
    assert post_commit(server, token, ndjson(header(), lfs_line)).status_code == 200
    assert tree(app, "team/tiny") == {"w.bin": real}
    [item] = lfs_batch(server, token, [{"oid": oid, "size": len(real)}]).json()["objects"]
    assert "actions" not in item  # stored for this repo: nothing to upload


def test_another_namespace_cannot_claim_a_stored_object(hub):
    app, server, token = hub
    HfApi(endpoint=server.url, token=token).create_repo("team/tiny")
    secret = os.urandom(4096)
    oid = hashlib.sha256(secret).hexdigest()
    [item] = lfs_batch(server, token, [{"oid": oid, "size": len(secret)}]).json()["objects"]
    assert httpx.put(item["actions"]["upload"]["href"], content=secret).status_code == 200

    other = app.state.hub.db.create_token("other", "write", "other")
    HfApi(endpoint=server.url, token=other).create_repo("other/copy")
    lfs_line = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(secret)}}
    answer = post_commit(server, other, ndjson(header(), lfs_line), repo="other/copy")
    assert answer.status_code == 400 and "upload the LFS object first" in answer.json()["error"]
    [item] = lfs_batch(server, other, [{"oid": oid, "size": len(secret)}], repo="other/copy").json()["objects"]
    assert "upload" in item["actions"]  # it must send the bytes, which are then checked
    assert httpx.put(item["actions"]["upload"]["href"], content=os.urandom(4096)).status_code == 400
    assert post_commit(server, other, ndjson(header(), lfs_line), repo="other/copy").status_code == 400


def test_files_over_the_limit_are_413(online, tmp_path):
    app, server = start(tmp_path, max_file_bytes=64 << 10)
    with server:
        token = app.state.hub.db.create_token("ci", "write", "team")
        api = HfApi(endpoint=server.url, token=token)
        api.create_repo("team/tiny")
        huge = os.urandom(100 << 10)
        with pytest.raises(HfHubHTTPError) as refused:
            api.upload_file(path_or_fileobj=huge, path_in_repo="huge.bin", repo_id="team/tiny")
        assert refused.value.response.status_code == 413 and "limit" in str(refused.value)
        answer = lfs_batch(server, token, [{"oid": hashlib.sha256(huge).hexdigest(), "size": len(huge)}])
        assert answer.status_code == 413
        answer = post_commit(server, token, ndjson(header(), regular("huge.txt", huge)))
        assert answer.status_code == 413 and not any(app.state.hub.blobs.all())


PUSH = """
import datasets, transformers
config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16)
transformers.BertModel(config).push_to_hub("team/bert")
transformers.BertModel(config).push_to_hub("team/bert", revision="dev")
assert transformers.BertModel.from_pretrained("team/bert", revision="dev").config.hidden_size == 8
datasets.Dataset.from_dict({"x": list(range(10))}).push_to_hub("team/ds")
assert datasets.load_dataset("team/ds", split="train")["x"] == list(range(10))
"""


def test_push_to_hub_with_hf_endpoint(hub, tmp_path):
    """transformers' and datasets' own push_to_hub, configured only by environment variables, in a fresh
    process (HF_ENDPOINT is read at import)."""
    app, server, token = hub
    env = {**os.environ, "HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, "-c", PUSH], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    main, dev = tree(app, "team/bert"), tree(app, "team/bert", "dev")
    assert set(main) == set(dev) == {"README.md", "config.json", "model.safetensors"}
    assert main["model.safetensors"] != dev["model.safetensors"]
    assert {"README.md", "data/train-00000-of-00001.parquet"} <= set(tree(app, "team/ds", repo_type="dataset"))


def test_xet_clients_are_told_to_use_lfs(hub):
    _app, server, token = hub
    answer = httpx.get(f"{server.url}/api/models/team/tiny/xet-write-token/main",
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 501 and "HF_HUB_DISABLE_XET=1" in answer.json()["error"]
