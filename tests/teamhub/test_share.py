"""`kaiyuan push` from one KAIYUAN_HOME and `kaiyuan pull` into another, through a running hub: identical
manifests and ids, equal lineage and license verdict, and the pulled model serves the same reply; a tampered blob
is refused and nothing is registered."""

from __future__ import annotations

import json

import pytest

from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.card import write_cards
from kaiyuan.hub.licenses import license_report
from kaiyuan.hub.openness import openness_report
from kaiyuan.hub.registry import Registry
from kaiyuan.models import create_tiny_llama
from kaiyuan.pipeline.reproduce import IDENTICAL, reproduce
from kaiyuan.serve.engines.base import SamplingParams
from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.teamhub.app import create_hub_app
from kaiyuan.teamhub.names import repo_id
from kaiyuan.teamhub.search import CLASS_NAMES, parse_mof_class
from kaiyuan.teamhub.share import LINEAGE_FILE, REPORTS_FILE, pull, push
from kaiyuan.train.sft import SFTConfig, run_sft
from tests.conftest import run_cli

MESSAGES = [{"role": "user", "content": "Convert March 3, 1999"}]


@pytest.fixture
def online(monkeypatch):
    """huggingface_hub talks to the test's hub (tests/conftest.py keeps it offline otherwise)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def made(tmp_path, monkeypatch):
    """A demo-shaped pipeline in home A: tiny-llama → dates data → LoRA SFT → merged."""
    home = tmp_path / "a"
    monkeypatch.setenv("KAIYUAN_HOME", str(home))
    create_tiny_llama()
    run_synthetic(SyntheticConfig(n_train=8, n_heldout=2, seed=1))
    trained = run_sft(SFTConfig(model="tiny-llama", data="dates-train", max_steps=2, batch_size=4, merge=True, seed=3))
    return home, trained.merged


@pytest.fixture
def hub(tmp_path):
    app = create_hub_app(tmp_path / "hub")
    token = app.state.hub.db.create_token("ci", "write", "team")
    with BackgroundServer(app) as server:
        server.hub, server.token = app.state.hub, token
        yield server


def reply(model_id: str) -> str:
    engine = TransformersEngine.from_reference(model_id)
    return engine.generate(MESSAGES, SamplingParams(max_tokens=8, temperature=0)).text


def test_push_then_pull_into_a_fresh_home_gives_the_same_artifacts(made, hub, tmp_path, monkeypatch, online):
    home_a, merged = made
    original = Registry(home_a)
    cards = write_cards(merged.id, original, out=tmp_path / "cards")  # the model's and its data's cards
    result = push(merged.id, "team/tiny-dates", hub.url, hub.token, registry=original)
    card_ids = {cards.model.card.id, *(c.card.id for c in cards.data)}
    assert {a.id for a in result.attached} == card_ids
    lineage_ids = [a.id for a in result.ancestors]
    assert sorted(lineage_ids) == sorted({node["id"] for node in original.lineage(merged.id)})
    assert result.artifact.repo == "team/tiny-dates" and result.artifact.id == merged.id
    before = reply(merged.id)

    home_b = tmp_path / "b"
    monkeypatch.setenv("KAIYUAN_HOME", str(home_b))
    copy = Registry(home_b)
    pulled = pull("team/tiny-dates", hub.url, hub.token, registry=copy)
    assert pulled.artifact.id == merged.id and [a.id for a in pulled.ancestors] == lineage_ids
    assert {a.id for a in pulled.attached} == card_ids
    for artifact_id in [*lineage_ids, *card_ids, merged.id]:
        assert copy.get(artifact_id).manifest == original.get(artifact_id).manifest
    assert copy.lineage(merged.id) == original.lineage(merged.id)
    assert license_report(merged.id, copy).to_dict() == license_report(merged.id, original).to_dict()
    assert openness_report(merged.id, copy).to_dict() == openness_report(merged.id, original).to_dict()
    assert reply(merged.id) == before  # the pulled model serves, and says the same
    # and the pulled model reproduces: its recorded pipeline, re-run from the pulled registry, gives the same bytes
    remade = reproduce(merged.id, home=tmp_path / "again", registry=copy)
    assert [(a.id, a.status) for a in remade.artifacts] == [(i, IDENTICAL) for i in [*lineage_ids, merged.id]]
    assert remade.ok

    # the hub's search and pages read what the pushing registry computed
    repo = hub.hub.db.repo(repo_id("team/tiny-dates"))
    [report_entry] = [e for e in hub.hub.db.files(repo, pulled.artifact.revision) if e.path == REPORTS_FILE]
    reports = json.loads(b"".join(hub.hub.blobs.read(report_entry.blob)))
    assert reports["license"] == license_report(merged.id, original).to_dict()
    assert reports["openness"] == openness_report(merged.id, original).to_dict()
    assert {n["id"] for n in reports["lineage"]["nodes"]} == {merged.id, *lineage_ids}
    assert {(n["repo"], n["revision"]) for n in reports["lineage"]["nodes"] if n["id"] != merged.id} == {
        (a.repo, a.revision) for a in result.ancestors}
    card = hub.hub.db.card(repo)
    mof = reports["openness"]["mof_class"]
    assert card.mof_class == parse_mof_class(mof) and CLASS_NAMES.get(card.mof_class) == mof
    assert card.commercial is {"yes": True, "no": False}.get(reports["license"]["verdict"])

    again = pull(f"team/tiny-dates@{pulled.artifact.revision}", hub.url, hub.token, registry=copy)
    assert all(a.skipped for a in again.ancestors)  # nothing fetched twice


def test_a_tampered_blob_is_refused_and_nothing_is_registered(made, hub, tmp_path, monkeypatch, online):
    home_a, merged = made
    push(merged.id, "team/tiny-dates", hub.url, hub.token, registry=Registry(home_a))
    repo = hub.hub.db.repo(repo_id("team/tiny-dates"))
    head = hub.hub.db.resolve(repo, "main")
    [weights] = [e for e in hub.hub.db.files(repo, head.sha) if e.path == "model.safetensors"]
    blob = hub.hub.blobs.path(weights.blob)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    home_c = tmp_path / "c"
    monkeypatch.setenv("KAIYUAN_HOME", str(home_c))
    # the hub itself refuses to serve the corrupt blob; were it served, pull's own sha256 check would refuse it
    with pytest.raises(KaiyuanError, match=r"model\.safetensors (does not match its manifest|in the hub.s blob store "
                                           r"no longer matches its sha256)"):
        pull("team/tiny-dates", hub.url, hub.token, registry=Registry(home_c))
    assert Registry(home_c).list() == []
    assert [p.name for p in (home_c / "artifacts").iterdir()] == []  # no staging left behind either


def test_push_and_pull_commands(made, hub, tmp_path, monkeypatch, capsys, online):
    home_a, merged = made
    code, out, err = run_cli(monkeypatch, capsys, "push", merged.id, "team/tiny-dates", "--hub", hub.url, "--token",
                             hub.token, "--json")
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["artifact"]["id"] == merged.id
    assert f"pushing {merged.name} ({merged.id}) → team/tiny-dates" in err
    repo = hub.hub.db.repo(repo_id("team/tiny-dates"))
    tree = {e.path for e in hub.hub.db.files(repo, pushed["artifact"]["revision"])}
    assert tree == {*merged.manifest["files"], "manifest.json", LINEAGE_FILE, REPORTS_FILE}

    monkeypatch.setenv("KAIYUAN_HOME", str(tmp_path / "b"))
    code, out, err = run_cli(monkeypatch, capsys, "pull", "team/tiny-dates", "--hub", hub.url)  # public: no token
    assert code == 0, err
    assert f"{merged.id}" in out and "pulled" in out
    code, out, err = run_cli(monkeypatch, capsys, "push", merged.id, "team/x", "--hub", hub.url)  # no token
    assert code == 2
    assert f"error: {hub.url}: Invalid credentials in Authorization header: writing needs a write token" in err
    code, out, err = run_cli(monkeypatch, capsys, "pull", "team/x", "--hub", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the hub at http://127.0.0.1:9" in err


def test_files_that_do_not_match_their_manifest_are_refused(made, hub, tmp_path, monkeypatch, online):
    """A revision whose bytes are intact on the hub but do not match the manifest it carries (uploaded by any
    client): pull's own sha256 check refuses it."""
    import shutil

    from tests.teamhub.seed import seed_folder

    _home_a, merged = made
    forged = tmp_path / "forged"
    shutil.copytree(merged.path, forged)
    weights = forged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    seed_folder(hub.hub, "team/forged", forged)
    monkeypatch.setenv("KAIYUAN_HOME", str(tmp_path / "d"))
    with pytest.raises(KaiyuanError, match=r"team/forged@main: model\.safetensors does not match its manifest "
                                           r"\(sha256 [0-9a-f]{12}…, the manifest says [0-9a-f]{12}…\): tampered or "
                                           r"truncated, refused"):
        pull("team/forged", hub.url, registry=Registry(tmp_path / "d"))
    assert Registry(tmp_path / "d").list() == []
