"""The arena in a real browser and over HTTP: an anonymous battle of two tiny models, a vote, names revealed, the
leaderboard, the exported votes; and the rules that keep votes honest."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from kaiyuan.models import create_tiny_llama
from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.web.arena import draw_pair
from kaiyuan.web.store import UIStore
from tests.conftest import run_cli
from tests.web.conftest import ScriptedEngine, add_users, log_in, screenshot, ui_app
from tests.web.test_chat_ui import events, session


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two tiny models in the arena (tiny-llama and tiny-llama@1); "leaky" is served but weighted 0 there."""
    import os

    home = tmp_path_factory.mktemp("arena-home")
    os.environ["KAIYUAN_HOME"] = str(home)
    create_tiny_llama()
    create_tiny_llama(seed=1)
    add_users(home)
    engines = {"tiny-a": TransformersEngine.from_reference("tiny-llama", model_id="tiny-a"),
               "tiny-b": TransformersEngine.from_reference("tiny-llama@1", model_id="tiny-b"),
               "leaky": ScriptedEngine("leaky", "As a Llama model trained by Meta, I think so.")}
    with BackgroundServer(ui_app(home, engines, users=True, arena_weights={"leaky": 0}, arena_turns=2)) as server:
        server.home = home
        yield server


def battle(client, token, mode="anony", **models):
    made = client.post("/ui/arena/battles", json={"mode": mode, **models}, headers={"X-CSRF-Token": token})
    assert made.status_code == 200, made.text
    return made.json()


def ask(client, token, battle_id, prompt="What is 2+2?"):
    headers = {"X-CSRF-Token": token}
    assert client.post(f"/ui/arena/battles/{battle_id}/prompt", json={"content": prompt, "max_tokens": 8},
                       headers=headers).status_code == 200
    return [client.post(f"/ui/arena/battles/{battle_id}/reply/{side}", headers=headers) for side in "ab"]


def test_draw_pair_follows_the_weights():
    assert {tuple(sorted(draw_pair(["a", "b", "c"], {"c": 0}))) for _ in range(50)} == {("a", "b")}
    with pytest.raises(ValueError, match="the arena needs two models with a positive weight"):
        draw_pair(["a", "b"], {"b": 0})


def test_battle_vote_reveal_leaderboard_export_and_ratings(site, page, tmp_path, monkeypatch, capsys):
    from playwright.sync_api import expect

    log_in(page, site.url, "alice")
    page.goto(f"{site.url}/arena")
    expect(page.locator("#name-a")).to_have_text("Model A")
    page.fill("#arena-prompt", "Convert March 3, 1999")
    page.fill("#arena-max-tokens", "12")
    page.click("#arena-send")
    for side in "ab":
        expect(page.locator(f"#side-{side} article.message.assistant .body")).not_to_have_class(
            re.compile(r"\bpending\b"))
    expect(page.locator("#name-a")).to_have_text("Model A")  # still anonymous before the vote
    expect(page.locator("button.vote").first).to_be_enabled()
    screenshot(page, "arena")
    page.click("button[data-vote=tievote]")
    expect(page.locator("#reveal")).to_be_visible()
    names = {page.locator("#name-a").inner_text(), page.locator("#name-b").inner_text()}
    assert names == {"tiny-a", "tiny-b"}
    expect(page.locator("#reveal")).to_contain_text("thanks for your vote")
    screenshot(page, "arena-revealed")

    [vote] = UIStore(site.home).votes()
    assert (vote["type"], vote["user"], vote["anony"], vote["leaked_identity"]) == ("tievote", "alice", True, False)
    assert set(vote["models"]) == {"tiny-a", "tiny-b"}
    assert [m[0] for m in vote["states"][0]["messages"]] == ["user", "assistant"]
    assert vote["states"][0]["messages"][0][1] == "Convert March 3, 1999"

    page.goto(f"{site.url}/leaderboard?source=human")
    board = page.locator("main")
    expect(board).to_contain_text("tiny-a")
    expect(board).to_contain_text("tiny-b")
    for name in ("tiny-a", "tiny-b"):
        row = page.locator("tr", has_text=name).first
        expect(row).to_contain_text("0 / 1 / 0")  # one battle: a tie
    screenshot(page, "leaderboard-after-vote")

    out = tmp_path / "votes.jsonl"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "arena", "votes", "--export", out)
    assert code == 0, stderr
    [record] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (record["winner"], record["judge"], record["anony"], record["turn"]) == ("tie", "arena_user_alice",
                                                                                   True, 1)
    assert {record["model_a"], record["model_b"]} == {"tiny-a", "tiny-b"}
    assert record["conversation_a"][0] == {"role": "user", "content": "Convert March 3, 1999"}
    code, stdout, stderr = run_cli(monkeypatch, capsys, "arena", "ratings", "--battles", out, "--json")
    assert code == 0, stderr
    ratings = json.loads(stdout)
    assert ratings["battles"] == 1
    assert {row["model"]: row["rating"] for row in ratings["models"]} == {"tiny-a": 1000.0, "tiny-b": 1000.0}


def test_anonymous_replies_do_not_carry_the_model_names(site):
    client, token = session(site, "bob")
    made = battle(client, token)
    assert made["models"] == ["Model A", "Model B"]
    for side, response in zip("ab", ask(client, token, made["battle_id"]), strict=True):
        assert response.status_code == 200
        assert "tiny-a" not in response.text and "tiny-b" not in response.text
        assert {c["model"] for c in events(response) if "model" in c} == {f"Model {side.upper()}"}


def test_votes_need_both_replies_one_per_battle_and_the_users_own_battle(site):
    client, token = session(site, "bob")
    headers = {"X-CSRF-Token": token}
    made = battle(client, token)
    early = client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "leftvote"}, headers=headers)
    assert early.status_code == 409 and early.json()["error"]["message"] == "Vote once both models have answered."
    assert client.post(f"/ui/arena/battles/{made['battle_id']}/prompt", json={"content": "hi", "max_tokens": 4},
                       headers=headers).status_code == 200
    client.post(f"/ui/arena/battles/{made['battle_id']}/reply/a", headers=headers)
    half = client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "leftvote"}, headers=headers)
    assert half.status_code == 409  # B's reply was never seen
    client.post(f"/ui/arena/battles/{made['battle_id']}/reply/b", headers=headers)
    again = client.post(f"/ui/arena/battles/{made['battle_id']}/reply/b", headers=headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_answer"

    alice, alices = session(site, "alice")
    forged = alice.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "rightvote"},
                        headers={"X-CSRF-Token": alices})
    assert forged.status_code == 404  # alice never saw bob's battle
    assert client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "leftvote"},
                       headers=headers).status_code == 200
    second = client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "rightvote"}, headers=headers)
    assert second.status_code == 409
    assert second.json()["error"]["message"] == "This battle already has your vote: one vote per battle."
    bad = client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "best"}, headers=headers)
    assert bad.status_code == 400
    more = client.post(f"/ui/arena/battles/{made['battle_id']}/prompt", json={"content": "more"}, headers=headers)
    assert more.status_code == 409 and more.json()["error"]["code"] == "battle_over"


def test_the_turn_limit_and_a_leaked_identity(site):
    client, token = session(site, "bob")
    headers = {"X-CSRF-Token": token}
    made = battle(client, token, mode="named", model_a="tiny-a", model_b="leaky")
    assert made["models"] == ["tiny-a", "leaky"]
    ask(client, token, made["battle_id"])
    ask(client, token, made["battle_id"], "and 3+3?")
    third = client.post(f"/ui/arena/battles/{made['battle_id']}/prompt", json={"content": "x"}, headers=headers)
    assert third.status_code == 409
    assert third.json()["error"]["message"] == "A battle has at most 2 prompts: vote, then start a new battle."
    named = client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "rightvote"}, headers=headers)
    assert named.json()["leaked_identity"] is False  # named battles are not anonymous: nothing to leak

    # an anonymous battle in which a reply names its model (weights only steer the draw: build it directly)
    store = UIStore(site.home)
    leaky = store.new_battle("bob", "anony", "tiny-a", "leaky")
    ask(client, token, leaky.id)
    vote = client.post(f"/ui/arena/battles/{leaky.id}/vote", json={"type": "rightvote"}, headers=headers)
    assert vote.json() | {"tstamp": 0} == {"battle_id": leaky.id, "models": ["tiny-a", "leaky"], "winner": "model_b",
                                          "leaked_identity": True, "tstamp": 0}
    assert store.votes()[-1]["leaked_identity"] is True


def test_the_arena_needs_two_models(tmp_path):
    home = tmp_path / "home"
    with BackgroundServer(ui_app(home, {"only": ScriptedEngine("only", "hi")})) as server:
        page = httpx.get(f"{server.url}/arena")
        assert "The arena needs at least two served models (served: only)." in page.text


def test_votes_are_rate_limited_per_user(tmp_path):
    home = tmp_path / "home"
    add_users(home)
    engines = {"x": ScriptedEngine("x", "one"), "y": ScriptedEngine("y", "two")}
    with BackgroundServer(ui_app(home, engines, users=True, votes_per_minute=1)) as server:
        client, token = session(server, "alice")
        codes = []
        for _ in range(2):
            made = battle(client, token)
            ask(client, token, made["battle_id"])
            codes.append(client.post(f"/ui/arena/battles/{made['battle_id']}/vote", json={"type": "tievote"},
                                     headers={"X-CSRF-Token": token}))
        assert [c.status_code for c in codes] == [200, 429]
        assert codes[1].json()["error"]["message"].startswith("Too many votes: wait ")
        assert int(codes[1].headers["retry-after"]) >= 1
        assert len(UIStore(home).votes()) == 1
