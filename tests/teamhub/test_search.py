"""Search over the hub: migration 2 (``repo_cards``) on SQLite and PostgreSQL, the filters of
:meth:`HubDB.search`, and `kaiyuan push` → index → `kaiyuan hub search` / ``GET /api/kaiyuan/search``."""

from __future__ import annotations

import json

import httpx
import pytest
import sqlalchemy as sa

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.errors import KaiyuanError
from kaiyuan.models import create_tiny_llama
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.teamhub import meta
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.meta import HubDB
from kaiyuan.teamhub.names import repo_id
from kaiyuan.teamhub.search import card_fields, parse_mof_class
from kaiyuan.teamhub.share import push
from tests.conftest import run_cli


def test_a_version_1_database_migrates_to_2_keeping_its_data(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:  # the schema as the first kaiyuan with a hub wrote it
        meta.schema_version.create(conn)
        for table in meta.MIGRATIONS[0]:
            table.create(conn)
        conn.execute(meta.schema_version.insert().values(version=1))
        conn.execute(meta.repos.insert().values(repo_type="model", namespace="team", name="old", private=False,
                                                created_at=1.0))
        conn.execute(meta.tokens.insert().values(name="ci", token_hash="0" * 64, scope="write", namespace=None,
                                                 created_at=1.0))
    engine.dispose()
    db = HubDB(database_url)
    try:
        with db.engine.connect() as conn:
            assert sorted(conn.execute(sa.select(meta.schema_version.c.version)).scalars()) == [1, 2]
            assert sa.inspect(conn).has_table("repo_cards")
        repo = db.repo(repo_id("team/old"))
        assert repo is not None and repo.created_at == 1.0
        assert [t["name"] for t in db.list_tokens()] == ["ci"]
        assert db.search() == []  # nothing indexed yet
        head = db.commit(repo, "main", [], "initial commit", "ci", parent=None)
        assert db.set_card(repo, head.sha, kind="model", name="old", license="MIT", commercial=True)
        assert [c.name for c in db.search("OLD")] == ["old"]
        assert HubDB(database_url).migrate() == 2  # again: nothing to do
    finally:
        db.engine.dispose()


def card(db, name, private=False, **fields):
    repo = db.create_repo(repo_id(f"team/{name}"), private=private)
    head = db.commit(repo, "main", [], "initial commit", "ci", parent=None)
    values = {"kind": "model", "name": name, "license": "Apache-2.0", "commercial": True, **fields}
    assert db.set_card(repo, head.sha, **values)
    return repo


def test_search_filters(database_url):
    db = HubDB(database_url)
    try:
        card(db, "open-science", mof_class=1, task="dates")
        card(db, "open-tooling", mof_class=2)
        card(db, "nc-data", kind="dataset", license="CC-BY-NC-4.0", commercial=False, mof_class=3, task="Dates")
        card(db, "mystery", license="LicenseRef-mine", commercial=None)
        card(db, "secret", private=True)
        names = lambda cards: [c.name for c in cards]  # noqa: E731
        assert names(db.search()) == ["mystery", "nc-data", "open-science", "open-tooling", "secret"]
        assert names(db.search("TEAM/open")) == ["open-science", "open-tooling"]  # the repo id, any case
        assert names(db.search("", license_allows="commercial")) == ["open-science", "open-tooling", "secret"]
        assert names(db.search(min_mof_class=2)) == ["open-science", "open-tooling"]  # II keeps II and I
        assert names(db.search(min_mof_class=1)) == ["open-science"]
        assert names(db.search(min_mof_class=3)) == ["nc-data", "open-science", "open-tooling"]  # unknown: out
        assert names(db.search(task="dates")) == ["nc-data", "open-science"]
        assert names(db.search(can_read=lambda ns: False)) == ["mystery", "nc-data", "open-science", "open-tooling"]
        assert [c.private for c in db.search("secret")] == [True]
        with pytest.raises(KaiyuanError, match="expected commercial"):
            db.search(license_allows="research")
        stale = db.repo(repo_id("team/mystery"))
        assert not db.set_card(stale, "0" * 40, kind="model", name="x", license="MIT", commercial=True)  # not main
    finally:
        db.engine.dispose()


def test_mof_classes_and_manifest_fields():
    assert [parse_mof_class(v) for v in ("I", "ii", "Class III", 2, "1", None)] == [1, 2, 3, 2, 1, None]
    for bad in ("IV", "0", True, "open"):
        with pytest.raises(KaiyuanError, match="expected I, II or III"):
            parse_mof_class(bad)
    fields = card_fields({"kind": "dataset", "name": "d", "license": "CC-BY-NC-4.0", "config": {"task": "dates"}})
    assert fields == {"kind": "dataset", "name": "d", "license": "CC-BY-NC-4.0", "commercial": False,
                      "mof_class": None, "task": "dates"}
    assert card_fields({"kind": "model", "name": "m", "license": "Apache-2.0",
                        "metrics": {"mof_class": "Class II"}})["mof_class"] == 2
    assert card_fields({"kind": "model", "name": "m", "license": "my own terms"})["commercial"] is None


def test_a_pushed_report_decides_commercial_use_and_the_mof_class():
    """kaiyuan push's .kaiyuan/reports.json: the lineage's verdict, not the model's own license, and its MOF class."""
    manifest = {"id": "model-0123456789ab", "kind": "model", "name": "m", "license": "Apache-2.0"}

    def fields(verdict, mof_class, report_id="model-0123456789ab"):
        return card_fields(manifest, {"id": report_id, "license": {"verdict": verdict},
                                      "openness": {"mof_class": mof_class}})

    assert card_fields(manifest)["commercial"] is True and card_fields(manifest)["mof_class"] is None
    assert (fields("no", "Class II")["commercial"], fields("no", "Class II")["mof_class"]) == (False, 2)  # NC data
    assert (fields("risk", "Class III")["commercial"], fields("risk", "Class III")["mof_class"]) == (None, 3)
    assert (fields("yes", None)["commercial"], fields("yes", None)["mof_class"]) == (True, None)
    assert fields("yes", "Class IX")["mof_class"] is None  # unreadable: unknown, never a pass
    ignored = fields("no", "Class I", report_id="model-ffffffffffff")  # a report about another artifact
    assert (ignored["commercial"], ignored["mof_class"]) == (True, None)


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub talks to the test's hub (tests/conftest.py keeps it offline otherwise)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_pushed_artifacts_are_found_by_license_name_and_task(tmp_path, monkeypatch, capsys, online):
    monkeypatch.setenv("KAIYUAN_HOME", str(tmp_path / "home"))
    tiny = create_tiny_llama()  # Apache-2.0
    notes = register_dataset([{"text": "a note"}], "nc-notes", "CC-BY-NC-4.0", "test")
    dates = run_synthetic(SyntheticConfig(n_train=4, n_heldout=2, seed=1))["train"]  # CC0-1.0, config.task dates
    app = create_hub_app(tmp_path / "hub")
    token = app.state.hub.db.create_token("ci", "write", "team")
    with BackgroundServer(app) as server:
        push(tiny.id, "team/tiny", server.url, token)
        push(notes.id, "team/notes", server.url, token)
        push(dates.id, "team/dates-train", server.url, token, private=True)
        everything = httpx.get(f"{server.url}/api/kaiyuan/search").json()
        with_token = httpx.get(f"{server.url}/api/kaiyuan/search", params={"task": "dates"},
                               headers={"authorization": f"Bearer {token}"}).json()
        commercial = httpx.get(f"{server.url}/api/kaiyuan/search", params={"license_allows": "commercial"}).json()
        refused = httpx.get(f"{server.url}/api/kaiyuan/search", params={"min_mof_class": "IV"})
    assert [c["repo"] for c in everything] == ["team/notes", "team/tiny"]  # the private one needs a token
    assert [c["repo"] for c in with_token] == ["team/dates-train"] and with_token[0]["private"] is True
    assert [c["repo"] for c in commercial] == ["team/tiny"]
    assert refused.status_code == 400 and "expected I, II or III" in refused.json()["error"]

    storage = str(tmp_path / "hub")
    capsys.readouterr()  # what creating and pushing printed (library warnings) is not the command's output
    code, out, err = run_cli(monkeypatch, capsys, "hub", "search", "--storage", storage, "--license-allows",
                             "commercial", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert [c["repo"] for c in found] == ["team/dates-train", "team/tiny"]  # the CLI sees private repos too
    [tiny_card] = [c for c in found if c["repo"] == "team/tiny"]
    assert tiny_card["name"] == tiny.name and tiny_card["kind"] == "model" and tiny_card["license"] == "Apache-2.0"
    assert tiny_card["commercial"] is True and tiny_card["mof_class"] is None  # as its pushed report says: no class
    code, out, err = run_cli(monkeypatch, capsys, "hub", "search", "NOTES", "--storage", storage, "--json")
    assert code == 0, err
    assert [(c["repo"], c["license"], c["commercial"]) for c in json.loads(out)] == [
        ("team/notes", "CC-BY-NC-4.0", False)]
    code, out, err = run_cli(monkeypatch, capsys, "hub", "search", "--storage", storage, "--task", "dates", "--json")
    assert code == 0, err
    assert [(c["repo"], c["task"], c["private"]) for c in json.loads(out)] == [("team/dates-train", "dates", True)]
    code, out, err = run_cli(monkeypatch, capsys, "hub", "search", "--storage", storage)
    assert code == 0, err
    assert "team/dates-train (private)" in out and "CC-BY-NC-4.0" in out
    code, out, err = run_cli(monkeypatch, capsys, "hub", "search", "--storage", storage, "--min-mof-class", "V")
    assert code == 2 and "expected I, II or III" in err
