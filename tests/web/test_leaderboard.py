"""/leaderboard: the ratings shown are kaiyuan.evaluate.arena.leaderboard's, per source (human votes, LLM-judge
battles, both); leaked-identity votes are left out and counted; /ui/leaderboard's version follows the votes; the
page explains why there are no ratings yet; in a real browser the board updates when a vote lands."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from kaiyuan.evaluate.arena import (
    STORE_NAME,
    Battle,
    battle_from_record,
    leaderboard,
    load_stored_battles,
    store_battles,
)
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Registry
from kaiyuan.serve.routes import create_app
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.web.app import mount_ui
from kaiyuan.web.store import UIStore, battle_record
from tests.web.conftest import screenshot

# (mode, model A, model B, vote): every model won and lost, so the ratings are defined
HUMAN = [("anony", "alpha", "beta", "leftvote"), ("anony", "beta", "alpha", "leftvote"),
         ("named", "alpha", "gamma", "leftvote"), ("anony", "gamma", "alpha", "leftvote"),
         ("named", "beta", "gamma", "tievote"), ("anony", "gamma", "beta", "rightvote"),
         ("anony", "beta", "gamma", "rightvote"), ("anony", "alpha", "beta", "bothbad_vote"),
         ("named", "alpha", "beta", "leftvote")]
JUDGE = [Battle("alpha", "beta", "model_b", judge="gpt-judge"), Battle("beta", "alpha", "model_b"),
         Battle("gamma", "alpha", "model_a"), Battle("alpha", "gamma", "model_a"), Battle("beta", "gamma", "tie")]


def cast(store: UIStore, mode: str, model_a: str, model_b: str, vote_type: str, leaked: bool = False,
         user: str = "local") -> dict:
    battle = store.new_battle(user, mode, model_a, model_b)
    for state, reply in zip(battle.states, ("A's answer", "B's answer"), strict=True):
        state["messages"] = [["user", "Which is bigger, 9.11 or 9.9?"], ["assistant", reply]]
    store.save_states(battle)
    return store.add_vote(battle, vote_type, leaked)


@pytest.fixture
def ui(home):
    """A UI app on ``home`` (local mode: the user "local") and its store."""
    app = create_app({}, with_ui=True)
    state = mount_ui(app, {}, home=home)
    return TestClient(app), state.store


@pytest.fixture
def votes_and_battles(ui, home):
    client, store = ui
    for row in HUMAN:
        cast(store, *row)
    store_battles(JUDGE, home / STORE_NAME)
    return client, store


class Rows(HTMLParser):
    """The ``<tr data-model=…>`` rows of the board, their attributes and the text of their cells."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: dict[str, dict] = {}
        self.texts: dict[str, str] = {}
        self.spans: dict[str, str] = {}
        self._row: str | None = None
        self._span: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "tr" and "data-model" in attrs:
            self._row = attrs["data-model"]
            self.rows[self._row], self.texts[self._row] = attrs, ""
        if tag == "span" and attrs.get("id", "").startswith("lb-"):
            self._span = attrs["id"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self._row:
            self.texts[self._row] += " " + data.strip()
        if self._span:
            self.spans[self._span] = data.strip()


def human_battles(store: UIStore) -> list[Battle]:
    return [battle_from_record(battle_record(v)) for v in store.votes() if not v["leaked_identity"]]


def expected_board(store: UIStore, home, source: str):
    battles = (human_battles(store) if source != "judge" else []) + \
        (load_stored_battles(home / STORE_NAME) if source != "human" else [])
    return leaderboard(battles, rounds=1000, seed=0)


@pytest.mark.parametrize("source", ["human", "judge", "both"])
def test_the_page_shows_the_arena_leaderboard_of_each_source(votes_and_battles, home, source):
    client, store = votes_and_battles
    response = client.get(f"/leaderboard?source={source}")
    assert response.status_code == 200, response.text
    shown = Rows(response.text)
    expected = expected_board(store, home, source)
    assert list(shown.rows) == [row.model for row in expected.rows]  # highest rating first
    for row in expected.rows:
        attrs = shown.rows[row.model]
        assert (float(attrs["data-rating"]), float(attrs["data-lower"]), float(attrs["data-upper"])) == (
            row.rating, row.lower, row.upper)  # exactly: the same fit, rounds and seed
        assert int(attrs["data-rank"]) == row.rank and int(attrs["data-battles"]) == row.battles
        text = " ".join(shown.texts[row.model].split())
        assert f"{row.rating:.1f}" in text and f"{row.wins} / {row.ties} / {row.losses}" in text
    counts = {"human": (len(HUMAN), 0), "judge": (0, len(JUDGE)), "both": (len(HUMAN), len(JUDGE))}[source]
    assert (int(shown.spans["lb-votes"]), int(shown.spans["lb-judge"])) == counts
    assert int(shown.spans["lb-battles"]) == expected.battles == sum(counts)
    assert 'id="lb-chart"' in response.text and response.text.count('class="point"') == 3
    assert 'aria-current="page"' in response.text.split(f'id="source-{source}"')[1].split(">")[0]


def test_both_is_the_default_and_an_unknown_source_is_refused(votes_and_battles):
    client, _ = votes_and_battles
    assert Rows(client.get("/leaderboard").text).spans["lb-battles"] == str(len(HUMAN) + len(JUDGE))
    page = client.get("/leaderboard?source=robots")
    assert page.status_code == 400 and "Unknown source" in page.text
    api = client.get("/ui/leaderboard?source=robots")
    assert api.status_code == 400 and api.json()["error"]["code"] == "bad_source"


def test_leaked_identity_votes_are_left_out_and_counted(votes_and_battles, home):
    client, store = votes_and_battles
    cast(store, "anony", "alpha", "gamma", "leftvote", leaked=True)
    cast(store, "anony", "gamma", "beta", "leftvote", leaked=True)
    shown = Rows(client.get("/leaderboard?source=human").text)
    assert (shown.spans["lb-votes"], shown.spans["lb-leaked"]) == (str(len(HUMAN)), "2")
    expected = expected_board(store, home, "human")
    assert expected.battles == len(HUMAN)
    assert {m: float(a["data-rating"]) for m, a in shown.rows.items()} == {r.model: r.rating for r in expected.rows}
    assert "lb-leaked" not in client.get("/leaderboard?source=judge").text  # judge battles have no such votes


def test_the_version_changes_when_a_vote_lands_and_polling_is_cached(votes_and_battles, monkeypatch):
    client, store = votes_and_battles
    first = client.get("/ui/leaderboard?source=both").json()
    assert first["version"] == f"{len(HUMAN)}-{len(JUDGE)}"
    assert Rows(first["html"]).spans["lb-votes"] == str(len(HUMAN))
    judge = client.get("/ui/leaderboard?source=judge").json()

    from kaiyuan.web import leaderboard as module

    fits = []
    monkeypatch.setattr(module, "leaderboard", lambda *a, **k: fits.append(1) or leaderboard(*a, **k))
    again = client.get("/ui/leaderboard?source=both").json()
    assert again == first and fits == []  # nothing new: the cached board, no refit

    cast(store, "anony", "alpha", "beta", "rightvote")
    after = client.get("/ui/leaderboard?source=both").json()
    assert after["version"] == f"{len(HUMAN) + 1}-{len(JUDGE)}" and fits == [1]
    assert Rows(after["html"]).spans["lb-votes"] == str(len(HUMAN) + 1)
    judge_after = client.get("/ui/leaderboard?source=judge").json()
    assert judge_after["version"] == after["version"] and judge_after["html"] == judge["html"]
    assert fits == [1]  # a vote does not refit the judge board
    store_battles([Battle("gamma", "beta", "model_a")], store.home / STORE_NAME)
    assert client.get("/ui/leaderboard?source=both").json()["version"] == f"{len(HUMAN) + 1}-{len(JUDGE) + 1}"


def test_unbounded_ratings_show_the_counts_and_the_reason(ui):
    client, store = ui
    cast(store, "anony", "alpha", "beta", "leftvote")
    cast(store, "named", "beta", "alpha", "rightvote")  # alpha won both (a tie would have been half a loss)
    response = client.get("/leaderboard?source=human")
    assert response.status_code == 200
    assert 'id="lb-reason"' in response.text and "never lost" in response.text and "{alpha}" in response.text
    shown = Rows(response.text)
    assert set(shown.rows) == {"alpha", "beta"} and "data-rating" not in shown.rows["alpha"]
    assert "2 / 0 / 0" in " ".join(shown.texts["alpha"].split())
    assert "0 / 0 / 2" in " ".join(shown.texts["beta"].split())
    assert 'id="lb-chart"' not in response.text  # no intervals to draw


def test_no_battles_yet_says_so(ui):
    client, _ = ui
    response = client.get("/leaderboard")
    assert response.status_code == 200
    assert "No ratings yet" in response.text and "no battles between two different models" in response.text
    assert client.get("/ui/leaderboard").json()["version"] == "0-0"


def test_model_names_are_escaped(ui):
    client, store = ui
    cast(store, "named", "<script>alert(1)</script>", "beta", "leftvote")
    cast(store, "named", "beta", "<script>alert(1)</script>", "leftvote")
    for text in (client.get("/leaderboard").text, client.get("/ui/leaderboard").json()["html"]):
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def register(registry: Registry, kind: str, name: str, parents=(), metrics=None):
    with registry.writer(kind, name, license="CC0-1.0", source="test", parents=list(parents),
                         metrics=metrics or {}) as writer:
        (writer.path / "file.txt").write_text(f"{name} {metrics}")  # the id hashes the files, not the metrics
    return writer.artifact


def test_registered_benchmark_scores_beside_each_model(ui, home):
    client, store = ui
    registry = Registry(home)
    alpha = register(registry, "model", "alpha")
    adapter = register(registry, "adapter", "beta-lora", [Parent(alpha.id, "base_model")])
    register(registry, "eval", "alpha@piqa", [Parent(alpha.id, "evaluated_model")],
             {"task": "piqa", "n": 10, "acc": 0.5, "acc_norm": 0.6})
    register(registry, "eval", "alpha@piqa", [Parent(alpha.id, "evaluated_model")],
             {"task": "piqa", "n": 20, "acc": 0.75})  # the latest one counts
    register(registry, "eval", "beta-lora@heldout", [Parent(adapter.id, "evaluated_model")],
             {"exact_match": 0.25, "n": 8, "n_correct": 2})
    for model_a, model_b, vote in (("alpha", "alpha:beta-lora", "leftvote"), ("alpha", "alpha:beta-lora", "rightvote"),
                                   ("alpha", "gamma", "tievote")):
        cast(store, "anony", model_a, model_b, vote)
    shown = Rows(client.get("/leaderboard").text)
    alpha_text = " ".join(shown.texts["alpha"].split())
    assert "0.7500 acc" in alpha_text and "—" in alpha_text  # piqa; no heldout score
    assert "0.2500 exact_match" in " ".join(shown.texts["alpha:beta-lora"].split())  # the adapter's eval
    assert " ".join(shown.texts["gamma"].split()).endswith("— —")  # nothing registered


def test_the_board_updates_in_the_browser_when_a_vote_lands(page, home):
    from playwright.sync_api import expect  # here: without playwright the `page` fixture skips

    app = create_app({}, with_ui=True)
    store = mount_ui(app, {}, home=home).store
    for row in HUMAN:
        cast(store, *row)
    with BackgroundServer(app) as server:
        page.goto(f"{server.url}/leaderboard?source=human")
        expect(page.locator("svg#lb-chart")).to_be_visible()
        for model in ("alpha", "beta"):
            expect(page.locator("#lb-table td.lb-model", has_text=model)).to_be_visible()
            expect(page.locator(f'svg#lb-chart g[data-model="{model}"] circle.point')).to_have_count(1)
        expect(page.locator("#lb-votes")).to_have_text(str(len(HUMAN)))
        page.evaluate("window.loadedOnce = true")
        screenshot(page, "leaderboard")
        started = time.time()
        cast(store, "anony", "alpha", "beta", "rightvote")
        expect(page.locator("#lb-votes")).to_have_text(str(len(HUMAN) + 1), timeout=10_000)
        assert time.time() - started < 10
        assert page.evaluate("window.loadedOnce") is True  # swapped in place, not reloaded
        expect(page.locator("svg#lb-chart")).to_be_visible()
        expect(page.locator("#banner")).to_be_hidden()
