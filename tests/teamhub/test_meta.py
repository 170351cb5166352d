"""The hub's metadata (HubDB) on SQLite and on a real PostgreSQL: migrations, repos, revisions named by their
content, the branch check that keeps two concurrent pushes from losing each other's work, and tokens."""

from __future__ import annotations

import hashlib
import threading

import pytest
import sqlalchemy as sa

from kaiyuan.errors import KaiyuanError, NotFoundError
from kaiyuan.teamhub import meta
from kaiyuan.teamhub.meta import ConflictError, Entry, HubDB, Token, revision_sha
from kaiyuan.teamhub.names import repo_id


def entry(path: str, content: bytes, lfs: bool = False) -> Entry:
    return Entry(path, hashlib.sha256(content).hexdigest(), len(content), lfs)


@pytest.fixture
def db(database_url):
    hub = HubDB(database_url)
    yield hub
    hub.engine.dispose()


def versions(db: HubDB) -> list[int]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(meta.schema_version.c.version).order_by(meta.schema_version.c.version))
                    .scalars())


# -- migrations --------------------------------------------------------------------------------------------


def test_migrations_are_recorded_and_applied_once(database_url):
    first = HubDB(database_url)
    assert versions(first) == [1, 2] == list(range(1, len(meta.MIGRATIONS) + 1))
    assert set(sa.inspect(first.engine).get_table_names()) >= {"schema_version", "repos", "commits", "entries",
                                                               "refs", "tokens", "repo_cards"}
    repo = first.create_repo(repo_id("team/kept"))
    second = HubDB(database_url)  # a second server (or a restart) on the same database
    assert second.migrate() == 2
    assert versions(second) == [1, 2]
    assert second.repo(repo_id("team/kept")) == repo  # nothing was recreated
    first.engine.dispose()
    second.engine.dispose()


def test_a_database_of_a_newer_kaiyuan_is_refused(database_url):
    HubDB(database_url).engine.dispose()
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(meta.schema_version.insert().values(version=len(meta.MIGRATIONS) + 1))
    engine.dispose()
    with pytest.raises(KaiyuanError) as caught:
        HubDB(database_url)
    assert str(caught.value) == f"{database_url}: written by a newer kaiyuan (schema 3, this one knows 2)"


# -- repos -------------------------------------------------------------------------------------------------


def test_create_repo_and_conflict(db):
    made = db.create_repo(repo_id("team/llama"), private=True)
    assert made.private and made.repo_id.id == "team/llama"
    assert db.repo(repo_id("team/llama")) == made
    with pytest.raises(ConflictError, match="already exists"):
        db.create_repo(repo_id("team/llama"))
    assert db.create_repo(repo_id("team/llama"), exist_ok=True) == made
    data = db.create_repo(repo_id("team/llama", "dataset"))  # same name, other type: another repo
    assert data.id != made.id
    assert sorted(r.repo_id.repo_type for r in db.repos()) == ["dataset", "model"]
    assert [r.id for r in db.repos("dataset")] == [data.id]
    assert db.repo(repo_id("team/absent")) is None


# -- revisions ---------------------------------------------------------------------------------------------


def test_commit_and_resolve_by_branch_tag_and_sha_prefix(db):
    repo = db.create_repo(repo_id("team/m"))
    files = [entry("config.json", b"{}"), entry("model.safetensors", b"weights" * 100, lfs=True)]
    first = db.commit(repo, "main", files, "first", "ana", parent=None)
    assert len(first.sha) == 40 and first.parent is None and first.author == "ana"
    assert db.files(repo, first.sha) == sorted(files, key=lambda e: e.path)
    second = db.commit(repo, "main", [*files, entry("README.md", b"# m")], "readme", "bo", parent=first.sha)
    assert second.parent == first.sha
    db.tag(repo, "v1", first.sha)
    assert db.resolve(repo, "main") == second
    assert db.resolve(repo, "v1") == first
    assert db.resolve(repo, first.sha) == first
    assert db.resolve(repo, first.sha[:7]) == first
    assert db.resolve(repo, first.sha[:6]) is None  # too short to be a sha prefix
    assert db.resolve(repo, "nope") is None
    assert db.resolve(repo, "0" * 40) is None
    assert db.refs(repo) == {"main": ("branch", second.sha), "v1": ("tag", first.sha)}
    assert db.blobs_in_use() == {e.blob for e in files} | {entry("README.md", b"# m").blob}


def test_revisions_are_named_by_their_content(db):
    a, b = entry("a.txt", b"a"), entry("dir/b.bin", b"b", lfs=True)
    assert revision_sha([a, b]) == revision_sha([b, a])  # order independent
    assert revision_sha([a, b]) != revision_sha([a, entry("dir/b.bin", b"B")])
    assert revision_sha([a]) != revision_sha([entry("renamed.txt", b"a")])
    one, two = db.create_repo(repo_id("team/one")), db.create_repo(repo_id("team/two"))
    left = db.commit(one, "main", [a, b], "x", None, parent=None)
    right = db.commit(two, "main", [b, a], "y", None, parent=None)
    assert left.sha == right.sha == revision_sha([a, b])
    again = db.commit(one, "dev", [b, a], "same files on another branch", None, parent=None)
    assert again.sha == left.sha
    assert db.files(one, left.sha) == db.files(two, right.sha)


def test_a_stale_parent_is_a_conflict(db):
    repo = db.create_repo(repo_id("team/m"))
    first = db.commit(repo, "main", [entry("a", b"1")], "1", None, parent=None)
    db.commit(repo, "main", [entry("a", b"2")], "2", None, parent=first.sha)
    with pytest.raises(ConflictError, match="moved"):
        db.commit(repo, "main", [entry("a", b"3")], "3", None, parent=first.sha)
    with pytest.raises(ConflictError):
        db.commit(repo, "main", [entry("a", b"3")], "3", None, parent=None)  # "new branch", but it exists
    assert db.files(repo, db.resolve(repo, "main").sha) == [entry("a", b"2")]


@pytest.mark.parametrize("branch_exists", [True, False], ids=["existing-branch", "new-branch"])
def test_two_writers_racing_for_one_parent_exactly_one_wins(db, branch_exists):
    """Both writers read the branch before either writes (forced with a barrier in front of the branch's read):
    one commit lands, the other is refused with ConflictError, and the branch points at the winner."""
    repo = db.create_repo(repo_id("team/race"))
    parent = db.commit(repo, "main", [entry("base", b"0")], "base", None, parent=None).sha if branch_exists else None
    barrier = threading.Barrier(2, timeout=2)  # SQLite queues writers at BEGIN: no one comes
    racing, waited = threading.Event(), set()

    @sa.event.listens_for(db.engine, "before_cursor_execute")
    def both_read_first(conn, cursor, statement, params, context, executemany):  # noqa: ARG001
        if (racing.is_set() and statement.lstrip().upper().startswith("SELECT REFS.SHA")
                and threading.get_ident() not in waited):  # each writer's first read of the branch
            waited.add(threading.get_ident())
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

    outcome: dict[str, object] = {}

    def push(who: str) -> None:
        try:
            outcome[who] = db.commit(repo, "main", [entry("base", b"0"), entry(f"{who}.txt", who.encode())],
                                     f"from {who}", who, parent=parent)
        except Exception as exc:  # noqa: BLE001 (the test reports what each writer got)
            outcome[who] = exc

    racing.set()
    threads = [threading.Thread(target=push, args=(who,)) for who in ("ana", "bo")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    racing.clear()
    sa.event.remove(db.engine, "before_cursor_execute", both_read_first)

    won = [who for who, got in outcome.items() if isinstance(got, meta.Commit)]
    lost = {who: got for who, got in outcome.items() if not isinstance(got, meta.Commit)}
    assert len(won) == 1, f"expected exactly one winner, got {outcome}"
    assert [type(got) for got in lost.values()] == [ConflictError], f"the loser got {lost}"
    assert db.resolve(repo, "main").sha == outcome[won[0]].sha
    assert sorted(e.path for e in db.files(repo, db.resolve(repo, "main").sha)) == sorted(["base", f"{won[0]}.txt"])


# -- tokens ------------------------------------------------------------------------------------------------


def test_only_the_tokens_hash_is_stored(db):
    token = db.create_token("ci", "write", "team")
    assert token.startswith(meta.TOKEN_PREFIX) and len(token) > 40
    with db.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(meta.tokens))]
    assert [r["token_hash"] for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
    assert not any(token in str(value) for row in rows for value in row.values())
    assert db.list_tokens() == [{"name": "ci", "scope": "write", "namespace": "team",
                                 "created_at": rows[0]["created_at"]}]
    assert db.check_token(token) == Token("ci", "write", "team")
    with pytest.raises(ConflictError, match="exists"):
        db.create_token("ci", "read")
    with pytest.raises(KaiyuanError, match="read or write"):
        db.create_token("admin", "admin")


def test_check_token_compares_in_constant_time(db, monkeypatch):
    token = db.create_token("ci", "read")
    compared = []
    real = meta.hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(meta.hmac, "compare_digest", spy)
    assert db.check_token(token) == Token("ci", "read", None)
    assert compared == [(meta.token_hash(token),) * 2]
    assert db.check_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert db.check_token("") is None
    assert db.check_token("kyh_not-a-token") is None


def test_token_scopes_and_namespaces(db):
    everywhere_read = db.check_token(db.create_token("reader", "read"))
    team_write = db.check_token(db.create_token("team-writer", "write", "team"))
    everywhere_write = db.check_token(db.create_token("admin", "write"))
    assert everywhere_read.can_read("team") and everywhere_read.can_read("other")
    assert not everywhere_read.can_write("team")
    assert team_write.can_read("team") and team_write.can_write("team")
    assert not team_write.can_read("other") and not team_write.can_write("other")
    assert everywhere_write.can_write("team") and everywhere_write.can_write("other")
    assert not Token("r", "read", "team").can_write("team")


def test_remove_token(db):
    token = db.create_token("ci", "write")
    db.remove_token("ci")
    assert db.check_token(token) is None
    assert db.list_tokens() == []
    with pytest.raises(NotFoundError, match="no token 'ci'"):
        db.remove_token("ci")
    again = db.create_token("ci", "read")  # the name is free again; the old token stays dead
    assert db.check_token(again) == Token("ci", "read", None) and db.check_token(token) is None
