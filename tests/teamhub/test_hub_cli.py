"""``kaiyuan hub serve|token|verify``: tokens shown once and stored as hashes, a flipped byte found and named, the
server's flags, its startup lines and its app — on SQLite and on PostgreSQL where the database matters."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types

import pytest

from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.server import free_port
from kaiyuan.teamhub.config import DATABASE_ENV, HubLocation
from kaiyuan.teamhub.meta import Entry, HubDB, Token, shown_url
from kaiyuan.teamhub.names import repo_id
from tests.conftest import run_cli


@pytest.fixture(autouse=True)
def no_database_env(monkeypatch):
    """Each test says which database it means: none comes from the environment of whoever runs the tests."""
    monkeypatch.delenv(DATABASE_ENV, raising=False)


def typed(url: str) -> str:
    """The database URL as a person types it (``postgresql://…``, not SQLAlchemy's driver-qualified form)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# -- where a hub lives -------------------------------------------------------------------------------------


def test_the_location_resolves_storage_and_database(home, tmp_path):
    default = HubLocation()
    assert default.storage_dir() == home.resolve() / "hub"
    assert default.database_url() == f"sqlite:///{home.resolve() / 'hub' / 'hub.sqlite'}"
    assert default.database_kind() == "sqlite"
    assert HubLocation(str(tmp_path / "s")).database_url() == f"sqlite:///{tmp_path / 's' / 'hub.sqlite'}"
    assert HubLocation(str(tmp_path / "s")).blobs_dir() == tmp_path / "s" / "blobs"
    for typed_url in ("postgresql://hub@db:5432/hub", "postgres://hub@db:5432/hub",
                      "postgresql+psycopg://hub@db:5432/hub"):
        location = HubLocation(database=typed_url)
        assert location.database_url() == "postgresql+psycopg://hub@db:5432/hub"
        assert location.database_kind() == "postgresql"
    assert HubLocation(database="postgresql://hub:s3cret@db/hub").shown_database() == "postgresql://hub:***@db/hub"
    with pytest.raises(KaiyuanError, match="expected postgresql://"):
        HubLocation(database="mysql://root:pw@db/hub").database_url()
    with pytest.raises(KaiyuanError) as refused:
        HubLocation(database="mysql://root:pw@db/hub").database_url()
    assert "pw" not in str(refused.value)


def test_an_unreachable_database_is_a_clear_error(monkeypatch, capsys, home):
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "list", "--database",
                           f"postgresql://hub:s3cret@127.0.0.1:{free_port()}/hub")
    assert code == 2
    assert "error: database postgresql://hub:***@127.0.0.1:" in err and "cannot open it" in err
    assert "s3cret" not in err


def test_the_database_url_may_come_from_the_environment(monkeypatch, capsys, home, tmp_path, database_url):
    monkeypatch.setenv("KAIYUAN_HUB_DATABASE", typed(database_url))
    code, out, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "read")
    assert code == 0, err
    db = HubDB(database_url)
    assert db.check_token(out.strip()) == Token("ci", "read", None)
    db.engine.dispose()
    assert not (home / "hub" / "hub.sqlite").exists()  # not the default database
    assert HubLocation().database_url() == database_url

    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"  # the flag wins over the environment
    code, out, err = run_cli(monkeypatch, capsys, "hub", "token", "list", "--json", "--database", elsewhere)
    assert code == 0 and json.loads(out) == [], err
    assert HubLocation(database=elsewhere).database_url() == elsewhere


def test_the_database_password_is_never_shown(monkeypatch, capsys, home, captured_run):
    port = free_port()
    monkeypatch.setenv("KAIYUAN_HUB_DATABASE", f"postgresql://hub:s3cret@127.0.0.1:{port}/hub")
    location = HubLocation()
    masked = f"postgresql://hub:***@127.0.0.1:{port}/hub"
    assert location.describe() == {"storage": str(home.resolve() / "hub"), "database": "postgresql",
                                   "database_url": masked}
    for args in (["hub", "token", "list"], ["hub", "verify"], ["hub", "gc", "--dry-run"],
                 ["hub", "serve", "--port", free_port()]):
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2, (args, out, err)
        assert f"error: database {masked}: cannot open it (" in err and "s3cret" not in out + err, args
    assert captured_run == []

    driver = RuntimeError('connection to "127.0.0.1" failed: FATAL: password "s3cret" authentication failed')
    assert str(location.cannot_open(driver)) == (f"database {masked}: cannot open it (connection to \"127.0.0.1\" "
                                                 'failed: FATAL: password "***" authentication failed)')
    query = HubLocation(database="postgresql://hub@db/hub?sslmode=require&password=s%40cret")
    assert query.shown_database() == "postgresql://hub@db/hub?sslmode=require&password=***"
    assert query.scrub("s@cret and s%40cret") == "*** and ***"
    assert shown_url("postgresql+psycopg://hub:s3cret@db/hub") == "postgresql+psycopg://hub:***@db/hub"

    code, out, _ = run_cli(monkeypatch, capsys, "hub", "serve", "--help")
    assert code == 0
    assert ("Put a password in KAIYUAN_HUB_DATABASE rather than on the command line, where ps shows it."
            in " ".join(out.split()))


# -- tokens ------------------------------------------------------------------------------------------------


def test_token_create_prints_it_once_and_stores_only_its_hash(monkeypatch, capsys, home, database_url):
    code, out, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "write",
                             "--namespace", "team", "--database", typed(database_url))
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n" and token.startswith("kyh_")  # TOKEN=$(kaiyuan hub token create …)
    assert "shown once" in err and token not in err
    db = HubDB(database_url)
    assert db.check_token(token) == Token("ci", "write", "team")
    assert db.list_tokens()[0]["name"] == "ci"
    db.engine.dispose()

    for args in ([], ["--json"]):
        code, out, err = run_cli(monkeypatch, capsys, "hub", "token", "list", *args, "--database", typed(database_url))
        assert code == 0, err
        assert "ci" in out and "write" in out and "team" in out
        assert token not in out + err and hashlib.sha256(token.encode()).hexdigest() not in out + err
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "token", "list", "--json", "--database", typed(database_url))
    assert [(t["name"], t["scope"], t["namespace"]) for t in json.loads(out)] == [("ci", "write", "team")]

    code, out, _ = run_cli(monkeypatch, capsys, "hub", "token", "create", "reader", "--scope", "read", "--json",
                           "--database", typed(database_url))
    shown = json.loads(out)
    assert code == 0 and {k: shown[k] for k in ("name", "scope", "namespace")} == {
        "name": "reader", "scope": "read", "namespace": None}
    db = HubDB(database_url)
    assert db.check_token(shown["token"]) == Token("reader", "read", None)

    code, out, _ = run_cli(monkeypatch, capsys, "hub", "token", "rm", "ci", "--database", typed(database_url))
    assert code == 0 and "removed token ci" in out
    assert db.check_token(token) is None
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "rm", "ci", "--database", typed(database_url))
    assert code == 2 and "no token 'ci'" in err
    db.engine.dispose()


def test_token_create_refuses_bad_input(monkeypatch, capsys, home):
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "admin")
    assert code == 2 and "scope" in err and "'read', 'write'" in err
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci")
    assert code == 2 and "scope" in err
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "read",
                           "--namespace", "../etc")
    assert code == 2 and "--namespace" in err
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "read")
    assert code == 0
    code, _, err = run_cli(monkeypatch, capsys, "hub", "token", "create", "ci", "--scope", "read")
    assert code == 2 and "exists" in err
    assert (home / "hub" / "hub.sqlite").is_file()  # the default location


# -- verify ------------------------------------------------------------------------------------------------


def pushed(storage, database: str | None = None):
    """A hub with two repos: team/m (main and tag v1) and datasets/team/d. Returns (location, {path: blob})."""
    location = HubLocation(str(storage), database)
    blobs, db = location.open_blobs(), location.open_db()
    contents = {"config.json": b'{"model_type": "llama"}', "model.safetensors": bytes(range(256)) * 64,
                "data/train.jsonl": b'{"text": "hi"}\n'}
    stored = {path: blobs.put_bytes(data) for path, data in contents.items()}
    model = db.create_repo(repo_id("team/m"))
    files = [Entry(p, stored[p][0], stored[p][1], p.endswith(".safetensors")) for p in ("config.json",
                                                                                         "model.safetensors")]
    first = db.commit(model, "main", files, "weights", "ana", parent=None)
    db.tag(model, "v1", first.sha)
    dataset = db.create_repo(repo_id("team/d", "dataset"))
    db.commit(dataset, "main", [Entry("data/train.jsonl", *stored["data/train.jsonl"], False)], "data", "bo",
              parent=None)
    db.engine.dispose()
    return location, {path: oid for path, (oid, _size) in stored.items()}, first.sha


def test_verify_is_clean_on_an_intact_hub(monkeypatch, capsys, home, tmp_path, database_url):
    location, _, _ = pushed(tmp_path / "hub", database_url)
    code, out, err = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", location.storage, "--database",
                             typed(database_url))
    assert code == 0, out + err
    assert out.startswith("clean: 3 blob(s) and 2 revision(s) checked in")


def test_verify_finds_a_flipped_byte_and_names_repo_revision_and_path(monkeypatch, capsys, home, tmp_path,
                                                                      database_url):
    location, oids, sha = pushed(tmp_path / "hub", database_url)
    blob = location.open_blobs().path(oids["model.safetensors"])
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0x01  # one bit of one byte, same size
    blob.write_bytes(bytes(data))

    code, out, err = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", location.storage, "--database",
                             typed(database_url))
    assert code == 1, out + err
    assert (f"corrupt: team/m@{sha} (main, v1) model.safetensors: blob {oids['model.safetensors']} no longer "
            "matches its sha256") in out
    assert "config.json" not in out and "datasets/team/d" not in out
    assert "1 problem(s)" in out

    code, out, _ = run_cli(monkeypatch, capsys, "hub", "verify", "--json", "--storage", location.storage,
                           "--database", typed(database_url))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert report["problems"] == [{"problem": "corrupt", "repo": "team/m", "revision": sha, "refs": ["main", "v1"],
                                   "path": "model.safetensors", "blob": oids["model.safetensors"]}]


def test_verify_finds_a_missing_blob_and_a_corrupt_unused_one(monkeypatch, capsys, home, tmp_path):
    location, oids, _ = pushed(tmp_path / "hub")  # SQLite in the storage folder
    blobs = location.open_blobs()
    blobs.path(oids["data/train.jsonl"]).unlink()
    stray, _ = blobs.put_bytes(b"uploaded, never committed")
    blobs.path(stray).write_bytes(b"uploaded, never committeD")

    code, out, _ = run_cli(monkeypatch, capsys, "hub", "verify", "--storage", location.storage)
    assert code == 1
    assert "missing: datasets/team/d@" in out and " (main) data/train.jsonl: blob " in out
    assert "is not in the blob store" in out
    assert f"corrupt: blob {stray} (used by no revision)" in out
    assert "2 problem(s)" in out


# -- serve -------------------------------------------------------------------------------------------------


def test_serve_help_lists_the_flags(monkeypatch, capsys, home):
    code, out, _ = run_cli(monkeypatch, capsys, "hub", "serve", "--help")
    assert code == 0
    for flag in ("--host", "--port", "--storage", "--database", "--max-file-bytes", "--json"):
        assert flag in out
    assert "[default: 127.0.0.1]" in out and "[default: 8080]" in out


def test_hub_commands_start_without_heavy_imports(home):
    probe = ("import sys; sys.argv = ['kaiyuan', *sys.argv[1:]]\n"
             "import atexit\n"
             "atexit.register(lambda: sys.__stderr__.write('HEAVY:' + ','.join(m for m in ('sqlalchemy', 'fastapi', "
             "'uvicorn', 'psycopg', 'torch') if m in sys.modules) + '\\n'))\n"
             "from kaiyuan.cli import main; main()\n")
    for args in (["--help"], ["hub", "--help"], ["hub", "serve", "--help"], ["hub", "token", "create", "--help"],
                 ["hub", "gc", "--help"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "KAIYUAN_HOME": str(home)})
        assert done.returncode == 0, done.stderr
        assert "HEAVY:\n" in done.stderr, f"kaiyuan {' '.join(args)}: {done.stderr[-300:]}"


@pytest.fixture
def captured_run(monkeypatch):
    """uvicorn.run replaced: what ``hub serve`` would serve, without serving it."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    return calls


def test_serve_resolves_the_hub_and_announces_it(monkeypatch, capsys, home, captured_run, tmp_path):
    """Without the routes: create_hub_app stood in for, to see what ``hub serve`` passes it and prints."""
    made: list[tuple] = []
    fake = types.ModuleType("kaiyuan.teamhub.app")
    fake.create_hub_app = lambda storage, url=None, max_file_bytes=0: made.append((storage, url, max_file_bytes)) \
        or "the app"
    monkeypatch.setitem(sys.modules, "kaiyuan.teamhub.app", fake)
    pages = types.ModuleType("kaiyuan.web.hub_pages")  # the web pages need a real app: not mounted on the stand-in
    pages.mount_hub_pages = lambda app: None
    monkeypatch.setitem(sys.modules, "kaiyuan.web.hub_pages", pages)
    port = free_port()
    code, out, err = run_cli(monkeypatch, capsys, "hub", "serve", "--port", port, "--max-file-bytes", 1000)
    assert code == 0, err
    storage = home.resolve() / "hub"
    assert made == [(storage, f"sqlite:///{storage / 'hub.sqlite'}", 1000)]
    assert captured_run == [{"app": "the app", "host": "127.0.0.1", "port": port, "log_level": "info"}]
    assert f"hub at http://127.0.0.1:{port} (storage {storage}, database sqlite)\n" in err
    assert f"export HF_ENDPOINT=http://127.0.0.1:{port}" in err
    assert "token" not in err and out == ""

    made.clear()
    code, out, err = run_cli(monkeypatch, capsys, "hub", "serve", "--host", "0.0.0.0", "--port", port, "--storage",
                             tmp_path / "team", "--database", "postgres://hub@db.internal/hub", "--json")
    assert code == 0, err
    assert made == [(tmp_path / "team", "postgresql+psycopg://hub@db.internal/hub", 50 << 30)]
    assert f"hub at http://0.0.0.0:{port} (storage {tmp_path / 'team'}, database postgresql; reachable beyond " \
           "this machine: private repos and writes need a token)" in err
    assert "export HF_ENDPOINT=http://0.0.0.0" not in err  # clients get this machine's name instead
    assert json.loads(out)["database"] == "postgresql" and json.loads(out)["loopback"] is False


def test_serve_refuses_a_port_in_use(monkeypatch, capsys, home, captured_run):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        code, _, err = run_cli(monkeypatch, capsys, "hub", "serve", "--port", holder.getsockname()[1])
    assert code == 2 and "is in use" in err
    assert captured_run == []


def real_app_or_skip() -> None:
    try:
        import kaiyuan.teamhub.app  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"kaiyuan.teamhub.app does not import yet ({exc})")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_serve_serves_the_hub_app(monkeypatch, capsys, home, captured_run, tmp_path, request, database):
    real_app_or_skip()
    from fastapi.testclient import TestClient

    args = ["--storage", tmp_path / "hub"]
    if database == "postgresql":
        args += ["--database", request.getfixturevalue("postgres_url")]
    code, _, err = run_cli(monkeypatch, capsys, "hub", "serve", "--port", free_port(), *args)
    assert code == 0, err
    assert f"database {database})" in err
    [call] = captured_run
    with TestClient(call["app"]) as client:
        answer = client.get("/health")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"
    assert (tmp_path / "hub" / "blobs").is_dir()
