"""Tags, deleting branches and repos, listing refs, and ``kaiyuan hub gc``, driven by the stock ``huggingface_hub``
client against a running hub, on SQLite and on PostgreSQL: a tag is created once (409 after, moved only by delete
and create), the default branch is never deleted, a deleted repo leaves no metadata and its blobs until the
garbage collector runs, which removes only what no revision holds and is older than its grace period."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from kaiyuan.serve.server import BackgroundServer
from kaiyuan.teamhub import meta
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.blobs import BlobBackend, BlobStore
from kaiyuan.teamhub.config import HubLocation
from kaiyuan.teamhub.gc import collect_garbage
from kaiyuan.teamhub.meta import ConflictError, Entry, HubDB
from kaiyuan.teamhub.names import repo_id
from tests.conftest import run_cli
from tests.teamhub.test_upload import header, lfs_batch, ndjson, post_commit

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOUR = 3600


@pytest.fixture(autouse=True)
def no_database_env(monkeypatch):
    monkeypatch.delenv("KAIYUAN_HUB_DATABASE", raising=False)


@pytest.fixture
def online(monkeypatch):
    """The client allowed to talk to our server (tests/conftest.py sets HF_HUB_OFFLINE=1), over LFS, not Xet."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class Served:
    """A running hub: its app, server, a write token for namespace ``team``, and its location on disk."""

    def __init__(self, app, server, token: str, location: HubLocation) -> None:
        self.app, self.server, self.token, self.location = app, server, token, location
        self.db, self.blobs = app.state.hub.db, app.state.hub.blobs

    def api(self, token: str | bool | None = None) -> HfApi:
        return HfApi(endpoint=self.server.url, token=self.token if token is None else token)

    def repo(self, name: str, repo_type: str = "model"):
        return self.db.repo(repo_id(name, repo_type))


@pytest.fixture
def hub(online, tmp_path, database_url):
    storage = tmp_path / "hub"
    app = create_hub_app(storage, database_url)
    with BackgroundServer(app) as server:
        yield Served(app, server, app.state.hub.db.create_token("ci", "write", "team"),
                     HubLocation(str(storage), database_url))
    app.state.hub.db.engine.dispose()


def error(refused: pytest.ExceptionInfo) -> tuple[int, str]:
    """(status, the server's error message) of a refused client call."""
    return refused.value.response.status_code, refused.value.response.json()["error"]


def backdate(path: Path, seconds: float = 2 * HOUR) -> None:
    """Make ``path`` look last written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def backdate_all(hub: Served, seconds: float = 2 * HOUR) -> None:
    """Every blob, partial upload and upload marker of the hub ``seconds`` old."""
    for path in (hub.location.storage_dir() / "blobs").rglob("*"):
        if path.is_file():
            backdate(path, seconds)
    for path in (hub.location.storage_dir() / "uploads").rglob("*"):
        if path.is_file():
            backdate(path, seconds)


# -- tags ------------------------------------------------------------------------------------------------------


def test_tags_are_created_once_listed_and_moved_only_by_delete_and_create(hub):
    api = hub.api()
    api.create_repo("team/tiny")
    first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id="team/tiny")
    second = api.upload_file(path_or_fileobj=b"two", path_in_repo="a.txt", repo_id="team/tiny")
    api.create_tag("team/tiny", tag="v1", revision=first.oid, tag_message="the first")
    api.create_tag("team/tiny", tag="release/latest")  # default: main
    refs = api.list_repo_refs("team/tiny")
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", second.oid)]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [
        ("release/latest", "refs/tags/release/latest", second.oid), ("v1", "refs/tags/v1", first.oid)]
    assert refs.converts == [] and refs.pull_requests is None
    assert api.list_repo_refs("team/tiny", include_pull_requests=True).pull_requests == []
    assert api.model_info("team/tiny", revision="v1").sha == first.oid
    answer = httpx.get(f"{hub.server.url}/team/tiny/resolve/v1/a.txt")
    assert answer.status_code == 200 and answer.content == b"one"

    with pytest.raises(HfHubHTTPError) as refused:
        api.create_tag("team/tiny", tag="v1", revision=second.oid)
    assert error(refused) == (409, "Tag already exists: v1 (a tag does not move: delete it, then create it again)")
    api.create_tag("team/tiny", tag="v1", revision=second.oid, exist_ok=True)  # 409 swallowed: it did not move
    assert hub.db.resolve(hub.repo("team/tiny"), "v1").sha == first.oid

    api.delete_tag("team/tiny", tag="v1")
    api.create_tag("team/tiny", tag="v1", revision=second.oid)
    assert hub.db.resolve(hub.repo("team/tiny"), "v1").sha == second.oid
    api.delete_tag("team/tiny", tag="release/latest")
    assert [t.name for t in api.list_repo_refs("team/tiny").tags] == ["v1"]


def test_tag_names_and_revisions_are_checked(hub):
    api = hub.api()
    api.create_repo("team/tiny")
    api.create_branch("team/tiny", branch="dev")
    cases = {"a..b": (400, "tag name 'a..b': use letters, digits, '-', '_', '.' and '/' (not a hex sha)"),
             "abcdef0": (400, "tag name 'abcdef0': use letters, digits, '-', '_', '.' and '/' (not a hex sha)"),
             "refs/tags/v1": (400, "revision 'refs/tags/v1': this hub has no pull requests or special refs"),
             "dev": (409, "Reference already exists: dev is a branch"),
             "main": (409, "Reference already exists: main is a branch")}
    for tag, expected in cases.items():
        with pytest.raises(HfHubHTTPError) as refused:
            api.create_tag("team/tiny", tag=tag)
        assert error(refused) == expected, tag
    with pytest.raises(RevisionNotFoundError) as refused:
        api.create_tag("team/tiny", tag="v1", revision="nope")
    assert error(refused) == (404, "Invalid rev id: nope")
    with pytest.raises(RevisionNotFoundError) as refused:
        api.delete_tag("team/tiny", tag="v1")
    assert error(refused) == (404, "Tag not found: v1")
    with pytest.raises(RevisionNotFoundError) as refused:
        api.delete_tag("team/tiny", tag="dev")
    assert error(refused) == (404, "Tag not found: dev (dev is a branch: delete it with delete_branch)")
    api.create_tag("team/tiny", tag="v1")
    answer = post_commit(hub.server, hub.token, ndjson(header()), revision="v1")
    assert answer.status_code == 400 and answer.json()["error"] == "'v1' is a tag: commit to a branch"
    assert set(hub.db.refs(hub.repo("team/tiny"))) == {"main", "dev", "v1"}


def test_two_tag_writers_racing_for_one_name_exactly_one_wins(database_url):
    """Both writers reach the tag's INSERT before either commits (a barrier in front of it): one tag lands, the
    other is a ConflictError (before: a read, then an insert or an update — an IntegrityError or a lost tag)."""
    db = HubDB(database_url)
    repo = db.create_repo(repo_id("team/race"))
    shas = {who: db.commit(repo, who, [Entry(f"{who}.txt", hashlib.sha256(who.encode()).hexdigest(), 3, False)],
                           who, who, parent=None).sha for who in ("ana", "bob")}
    barrier = threading.Barrier(2, timeout=2)  # SQLite queues writers at BEGIN: no one comes
    racing = threading.Event()

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def both_insert_at_once(conn, cursor, statement, params, context, executemany):  # noqa: ARG001
        if racing.is_set() and statement.lstrip().upper().startswith("INSERT INTO REFS"):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    outcome: dict[str, object] = {}

    def tag(who: str) -> None:
        try:
            db.tag(repo, "v1", shas[who])
            outcome[who] = "won"
        except Exception as exc:  # noqa: BLE001 (the test reports what each writer got)
            outcome[who] = exc

    racing.set()
    threads = [threading.Thread(target=tag, args=(who,)) for who in shas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    racing.clear()
    sa.event.remove(db.engine, "before_cursor_execute", both_insert_at_once)
    won = [who for who, got in outcome.items() if got == "won"]
    lost = [got for got in outcome.values() if got != "won"]
    assert len(won) == 1, outcome
    assert [type(got) for got in lost] == [ConflictError] and str(lost[0]) == "team/race: tag 'v1' exists"
    assert db.refs(repo)["v1"] == ("tag", shas[won[0]])
    with pytest.raises(ConflictError) as caught:
        db.tag(repo, "ana", shas["bob"])
    assert str(caught.value) == "team/race: branch 'ana' exists"
    db.engine.dispose()


# -- branches --------------------------------------------------------------------------------------------------


def test_delete_branch_but_never_the_default_one(hub):
    api = hub.api()
    api.create_repo("team/tiny")
    api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id="team/tiny")
    api.create_branch("team/tiny", branch="release/v1")
    api.upload_file(path_or_fileobj=b"fix", path_in_repo="b.txt", repo_id="team/tiny", revision="release/v1")
    fixed = hub.db.resolve(hub.repo("team/tiny"), "release/v1").sha
    api.create_tag("team/tiny", tag="v1", revision="release/v1")
    api.delete_branch("team/tiny", branch="release/v1")
    refs = api.list_repo_refs("team/tiny")
    assert [b.name for b in refs.branches] == ["main"] and [t.target_commit for t in refs.tags] == [fixed]
    assert hub.db.resolve(hub.repo("team/tiny"), fixed[:12]).sha == fixed  # its revisions stay, by sha and tag

    with pytest.raises(HfHubHTTPError) as refused:
        api.delete_branch("team/tiny", branch="main")
    assert error(refused) == (403, "Cannot delete the default branch main of team/tiny: delete the repo instead "
                                   "(HfApi.delete_repo)")
    with pytest.raises(RevisionNotFoundError) as refused:
        api.delete_branch("team/tiny", branch="release/v1")
    assert error(refused) == (404, "Branch not found: release/v1")
    with pytest.raises(RevisionNotFoundError) as refused:
        api.delete_branch("team/tiny", branch="v1")
    assert error(refused) == (404, "Branch not found: v1 (v1 is a tag: delete it with delete_tag)")
    api.upload_file(path_or_fileobj=b"again", path_in_repo="c.txt", repo_id="team/tiny", revision="release/v1")
    assert {e.path for e in hub.db.files(hub.repo("team/tiny"), hub.db.resolve(hub.repo("team/tiny"),
                                                                                "release/v1").sha)} == {"a.txt",
                                                                                                        "c.txt"}


def test_ref_and_repo_writes_need_a_write_token_for_the_namespace(hub):
    api = hub.api()
    api.create_repo("team/tiny")
    api.create_repo("team/secret", private=True)
    api.create_tag("team/tiny", tag="v1")
    api.create_branch("team/tiny", branch="dev")
    cases = [(False, 401), (hub.db.create_token("reader", "read", "team"), 403),
             (hub.db.create_token("elsewhere", "write", "other"), 403)]
    calls = [("create_tag", {"tag": "v2"}), ("delete_tag", {"tag": "v1"}), ("delete_branch", {"branch": "dev"}),
             ("delete_repo", {})]
    for who, status in cases:
        for method, kwargs in calls:
            with pytest.raises(HfHubHTTPError) as refused:
                getattr(hub.api(who), method)("team/tiny", **kwargs)
            assert refused.value.response.status_code == status, (who, method)
    assert set(hub.db.refs(hub.repo("team/tiny"))) == {"main", "dev", "v1"}
    assert [t.name for t in hub.api(False).list_repo_refs("team/tiny").tags] == ["v1"]  # public: anyone reads
    with pytest.raises(RepositoryNotFoundError):
        hub.api(False).list_repo_refs("team/secret")  # private: not there without a token for it
    with pytest.raises(RepositoryNotFoundError):
        hub.api(cases[2][0]).list_repo_refs("team/secret")
    assert [b.name for b in hub.api(cases[1][0]).list_repo_refs("team/secret").branches] == ["main"]


# -- repos -----------------------------------------------------------------------------------------------------


def rows_of(db: HubDB, repo_row_id: int) -> dict[str, int]:
    """How many rows each table holds for the repo of that id."""
    with db.engine.connect() as conn:
        counts = {t.name: conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.repo_id == repo_row_id))
                  .scalar() for t in (meta.refs, meta.commits, meta.entries, meta.repo_cards)}
        counts["repos"] = conn.execute(sa.select(sa.func.count()).select_from(meta.repos)
                                       .where(meta.repos.c.id == repo_row_id)).scalar()
    return counts


def test_delete_repo_removes_its_metadata_in_one_go_and_keeps_the_blobs(hub):
    api = hub.api()
    api.create_repo("team/tiny")
    weights = os.urandom(1 << 16)
    info = api.upload_file(path_or_fileobj=weights, path_in_repo="w.bin", repo_id="team/tiny")
    api.create_tag("team/tiny", tag="v1")
    api.create_branch("team/tiny", branch="dev")
    repo = hub.repo("team/tiny")
    hub.db.set_card(repo, info.oid, kind="model", name="tiny", license="mit", commercial=True)
    assert rows_of(hub.db, repo.id) == {"refs": 3, "commits": 2, "entries": 1, "repo_cards": 1, "repos": 1}
    marker = hub.location.storage_dir() / "uploads" / "model" / "team" / "tiny" / hashlib.sha256(weights).hexdigest()
    assert marker.is_file()

    api.delete_repo("team/tiny")
    assert hub.repo("team/tiny") is None
    assert rows_of(hub.db, repo.id) == {"refs": 0, "commits": 0, "entries": 0, "repo_cards": 0, "repos": 0}
    assert hub.blobs.has(hashlib.sha256(weights).hexdigest())  # the garbage collector's to remove
    assert not marker.parent.exists()  # its uploads no longer count as anyone's
    with pytest.raises(RepositoryNotFoundError) as refused:
        api.delete_repo("team/tiny")
    assert error(refused) == (404, "Repository Not Found for url: team/tiny.")
    api.delete_repo("team/tiny", missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("team/tiny")

    api.create_repo("team/tiny")  # the name is free again: a new, empty repo
    assert api.list_repo_files("team/tiny") == [] and [t.name for t in api.list_repo_refs("team/tiny").tags] == []
    api.create_repo("team/data", repo_type="dataset")
    api.create_repo("team/data")  # a model of the same name stays when the dataset goes
    api.delete_repo("team/data", repo_type="dataset")
    assert hub.repo("team/data", "dataset") is None and hub.repo("team/data") is not None
    with pytest.raises(HfHubHTTPError) as refused:
        httpx_delete(hub, {"name": "x", "organization": "team", "type": "space"})
    assert refused.value.response.status_code == 400


def httpx_delete(hub: Served, body: dict) -> None:
    answer = httpx.request("DELETE", f"{hub.server.url}/api/repos/delete", json=body,
                           headers={"Authorization": f"Bearer {hub.token}"})
    if answer.status_code >= 400:
        raise HfHubHTTPError(answer.json()["error"], response=answer)


# -- gc --------------------------------------------------------------------------------------------------------


def lfs_upload(hub: Served, data: bytes, repo: str = "team/tiny") -> str:
    """``data`` uploaded as an LFS object of ``repo`` (the batch API and its PUT link), never committed."""
    oid = hashlib.sha256(data).hexdigest()
    [item] = lfs_batch(hub.server, hub.token, [{"oid": oid, "size": len(data)}], repo=repo).json()["objects"]
    assert httpx.put(item["actions"]["upload"]["href"], content=data).status_code == 200
    return oid


def gc(hub: Served, grace: float = HOUR, dry_run: bool = False) -> dict:
    return collect_garbage(hub.location, grace, dry_run)


def test_an_uncommitted_upload_is_kept_within_the_grace_period_and_removed_after(hub, monkeypatch, capsys):
    api = hub.api()
    api.create_repo("team/tiny")
    kept = api.upload_file(path_or_fileobj=b"committed", path_in_repo="a.txt", repo_id="team/tiny")
    data = os.urandom(1 << 16)
    oid = lfs_upload(hub, data)  # its commit never comes
    marker = hub.location.storage_dir() / "uploads" / "model" / "team" / "tiny" / oid

    report = gc(hub)
    assert (report["blobs"], report["bytes"]) == ({"stored": 2, "in_use": 1, "in_grace": 1, "removed": 0,
                                                   "bytes": 0}, 0)
    assert hub.blobs.has(oid) and marker.is_file()
    backdate_all(hub)
    dry = gc(hub, dry_run=True)
    assert dry["dry_run"] and dry["removed"][0]["name"] == oid and dry["bytes"] == len(data)
    assert (dry["blobs"]["removed"], dry["markers"]) == (1, {"removed": 1})
    assert hub.blobs.has(oid) and marker.is_file()  # a dry run removes nothing

    report = gc(hub)
    assert [b["name"] for b in report["removed"]] == [oid] and report["bytes"] == len(data)
    assert report["blobs"] == {"stored": 2, "in_use": 1, "in_grace": 0, "removed": 1, "bytes": len(data)}
    assert not hub.blobs.has(oid) and not marker.exists()
    assert httpx.get(f"{hub.server.url}/team/tiny/resolve/{kept.oid}/a.txt").content == b"committed"
    code, out, err = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", hub.location.storage,
                             "--database", hub.location.database)
    assert code == 0 and out.startswith("clean: 1 blob(s) and 1 revision(s) checked in"), out + err

    [item] = lfs_batch(hub.server, hub.token, [{"oid": oid, "size": len(data)}]).json()["objects"]
    assert "upload" in item["actions"]  # collected: the client must send the bytes again
    assert httpx.put(item["actions"]["upload"]["href"], content=data).status_code == 200
    lfs_line = {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256", "oid": oid, "size": len(data)}}
    assert post_commit(hub.server, hub.token, ndjson(header(), lfs_line)).status_code == 200


def test_an_old_upload_announced_again_is_young_again(hub):
    """The LFS PUT lands an object before the commit names it; a blob stored long ago and announced to the batch
    API again (nothing to upload) is freshened, so a collection between the two does not take it."""
    api = hub.api()
    api.create_repo("team/tiny")
    data = os.urandom(4096)
    oid = lfs_upload(hub, data)
    backdate_all(hub)
    [item] = lfs_batch(hub.server, hub.token, [{"oid": oid, "size": len(data)}]).json()["objects"]
    assert "actions" not in item  # held by this repo: nothing to send, and touched
    assert gc(hub)["blobs"]["removed"] == 0 and hub.blobs.has(oid)
    api.create_repo("team/other")
    other = os.urandom(4096)
    other_oid = lfs_upload(hub, other)
    backdate_all(hub)
    assert lfs_upload(hub, other, repo="team/other") == other_oid  # the bytes sent again: the stored blob freshened
    removed = gc(hub)["removed"]
    assert hub.blobs.has(other_oid) and [b["name"] for b in removed] == [oid]
    assert removed[0]["size"] == 4096 and removed[0]["mtime"] == pytest.approx(time.time() - 2 * HOUR, abs=60)


def test_blobs_any_revision_holds_are_never_removed(hub, monkeypatch, capsys):
    api = hub.api()
    for name in ("team/one", "team/two"):
        api.create_repo(name)
    shared = os.urandom(1 << 15)
    api.upload_file(path_or_fileobj=shared, path_in_repo="w.bin", repo_id="team/one")
    api.upload_file(path_or_fileobj=shared, path_in_repo="copy.bin", repo_id="team/two")
    old = api.upload_file(path_or_fileobj=b"only in an old revision", path_in_repo="old.txt", repo_id="team/one")
    api.create_tag("team/one", tag="v1", revision=old.oid)
    api.upload_file(path_or_fileobj=b"on a branch that was deleted", path_in_repo="gone.txt", repo_id="team/one",
                    revision="dev")
    api.delete_branch("team/one", branch="dev")
    api.delete_tag("team/one", tag="v1")
    api.delete_file("old.txt", repo_id="team/one")  # main no longer holds it; the older revision does
    backdate_all(hub)
    stored = set(hub.blobs.all())
    report = gc(hub, grace=0)
    assert report["removed"] == [] and report["blobs"]["in_use"] == len(stored) and set(hub.blobs.all()) == stored
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", hub.location.storage,
                           "--database", hub.location.database)
    assert code == 0, out


def test_a_deleted_repos_blobs_go_unless_another_repo_holds_them(hub, monkeypatch, capsys):
    api = hub.api()
    api.create_repo("team/gone")
    api.create_repo("team/kept")
    shared, own = os.urandom(1 << 15), os.urandom(1 << 15)
    api.upload_file(path_or_fileobj=shared, path_in_repo="shared.bin", repo_id="team/gone")
    api.upload_file(path_or_fileobj=own, path_in_repo="own.bin", repo_id="team/gone")
    api.upload_file(path_or_fileobj=b"gone's readme", path_in_repo="README.md", repo_id="team/gone")
    api.upload_file(path_or_fileobj=shared, path_in_repo="copy.bin", repo_id="team/kept")
    api.delete_repo("team/gone")
    backdate_all(hub)
    own_oid, shared_oid = hashlib.sha256(own).hexdigest(), hashlib.sha256(shared).hexdigest()
    readme_oid = hashlib.sha256(b"gone's readme").hexdigest()
    report = gc(hub)
    assert sorted(b["name"] for b in report["removed"]) == sorted([own_oid, readme_oid])
    assert report["bytes"] == len(own) + len(b"gone's readme")
    assert hub.blobs.has(shared_oid) and not hub.blobs.has(own_oid)
    answer = httpx.get(f"{hub.server.url}/team/kept/resolve/main/copy.bin")
    assert answer.status_code == 200 and answer.content == shared
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", hub.location.storage,
                           "--database", hub.location.database)
    assert code == 0 and out.startswith("clean: 1 blob(s)"), out


def test_partial_uploads_are_removed_once_older_than_the_grace(tmp_path):
    location = HubLocation(str(tmp_path / "hub"))
    blobs = location.open_blobs()
    (blobs.root / "tmp").mkdir()
    stale, fresh = blobs.root / "tmp" / "upload-stale", blobs.root / "tmp" / "upload-fresh"
    stale.write_bytes(b"x" * 100)
    fresh.write_bytes(b"y" * 10)
    (blobs.root / "tmp" / "unrelated").write_bytes(b"z")
    backdate(stale)
    assert collect_garbage(location, HOUR, dry_run=True)["partial"] == {"removed": 1, "bytes": 100}
    assert stale.exists()
    report = collect_garbage(location, HOUR)
    assert report["partial"] == {"removed": 1, "bytes": 100} and report["bytes"] == 100
    assert [p["name"] for p in report["removed_partial"]] == ["upload-stale"]
    assert not stale.exists() and fresh.exists() and (blobs.root / "tmp" / "unrelated").exists()
    with pytest.raises(Exception, match="expected 0 or more"):
        collect_garbage(location, -1)


def test_hub_gc_cli_reports_and_dry_runs(hub, monkeypatch, capsys):
    api = hub.api()
    api.create_repo("team/tiny")
    api.upload_file(path_or_fileobj=b"kept", path_in_repo="a.txt", repo_id="team/tiny")
    data = os.urandom(2048)
    oid = lfs_upload(hub, data)
    backdate_all(hub)
    where = ["--storage", hub.location.storage, "--database", hub.location.database]
    code, out, err = run_cli(monkeypatch, capsys, "hub", "gc", "--dry-run", *where)
    assert code == 0, err
    storage = hub.location.storage_dir()
    assert out == (f"would remove blob {oid} (2048 bytes, used by no revision)\n"
                   "would remove 1 blob(s) and 0 partial upload(s): would free 2048 bytes; kept 1 blob(s) in use and "
                   f"0 unused one(s) younger than 3600 s, in {storage}\n")
    assert hub.blobs.has(oid)
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "gc", "--json", "--grace-seconds", "0", *where)
    report = json.loads(out)
    assert code == 0 and not report["dry_run"] and [b["name"] for b in report["removed"]] == [oid]
    assert report["grace_seconds"] == 0 and report["database"] in ("sqlite", "postgresql")
    assert not hub.blobs.has(oid)
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "gc", *where)
    assert code == 0 and out == ("removed 0 blob(s) and 0 partial upload(s): freed 0 bytes; kept 1 blob(s) in use "
                                 f"and 0 unused one(s) younger than 3600 s, in {storage}\n")
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "gc", "--help")
    assert code == 0 and all(flag in out for flag in ("--grace-seconds", "--dry-run", "--storage", "--database"))


def test_the_local_store_is_a_blob_backend():
    """Every method of the interface the routes use, with the same parameters, on the one implementation."""
    members = [name for name, value in vars(BlobBackend).items() if callable(value) and not name.startswith("_")]
    assert {"has", "size", "stamp", "put", "put_bytes", "touch", "read", "verify", "delete", "iter_blobs", "all",
            "iter_partial", "delete_partial", "sweep"} == set(members)
    for name in members:
        expected = list(inspect.signature(getattr(BlobBackend, name)).parameters)
        assert list(inspect.signature(getattr(BlobStore, name)).parameters) == expected, name
