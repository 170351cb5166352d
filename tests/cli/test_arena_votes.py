"""`kaiyuan arena votes`: the web arena's human votes as a table, and exported as clean battle records that
`kaiyuan arena ratings --battles` reads (leaked-identity votes skipped and counted)."""

from __future__ import annotations

import json

from kaiyuan.web.store import UIStore, battle_record
from tests.conftest import run_cli


def cast(store: UIStore, user: str, mode: str, model_a: str, model_b: str, vote_type: str, reply_a: str = "Hi!",
         reply_b: str = "Hello.", leaked: bool = False) -> dict:
    battle = store.new_battle(user, mode, model_a, model_b)
    for state, reply in zip(battle.states, (reply_a, reply_b), strict=True):
        state["messages"] = [["user", "Say hi"], ["assistant", reply]]
    store.save_states(battle)
    return store.add_vote(battle, vote_type, leaked)


def test_votes_without_any_say_so_and_make_no_database(monkeypatch, capsys, home):
    code, out, err = run_cli(monkeypatch, capsys, "arena", "votes")
    assert code == 0, err
    assert "no human votes" in out
    assert not (home / "ui.sqlite").exists()
    code, out, _ = run_cli(monkeypatch, capsys, "arena", "votes", "--json")
    assert (code, json.loads(out)) == (0, {"votes": []})


def test_votes_table_and_json(monkeypatch, capsys, home):
    store = UIStore(home)
    cast(store, "ada", "anony", "alpha", "beta", "leftvote")
    cast(store, "bob", "named", "beta", "gamma", "bothbad_vote", reply_a="I am Beta.", leaked=True)
    code, out, err = run_cli(monkeypatch, capsys, "arena", "votes")
    assert code == 0, err
    lines = [line for line in out.splitlines() if "alpha" in line or "gamma" in line]
    assert len(lines) == 2
    assert all(word in lines[0] for word in ("ada", "alpha", "beta", "model_a", "yes", "no", "UTC"))
    assert all(word in lines[1] for word in ("bob", "beta", "gamma", "tie (bothbad)"))
    code, out, _ = run_cli(monkeypatch, capsys, "arena", "votes", "--json")
    rows = json.loads(out)["votes"]
    assert [(r["user"], r["model_a"], r["model_b"], r["winner"], r["anony"], r["leaked_identity"]) for r in rows] == [
        ("ada", "alpha", "beta", "model_a", True, False), ("bob", "beta", "gamma", "tie (bothbad)", False, True)]


def test_exported_votes_are_read_by_ratings_leaked_one_skipped(monkeypatch, capsys, home, tmp_path):
    store = UIStore(home)
    cast(store, "ada", "anony", "alpha", "beta", "tievote")
    cast(store, "bob", "anony", "alpha", "beta", "leftvote", reply_a="I am Alpha.", leaked=True)
    target = tmp_path / "out" / "votes.jsonl"
    code, out, err = run_cli(monkeypatch, capsys, "arena", "votes", "--export", target)
    assert code == 0, err
    assert f"wrote 2 votes to {target} (1 leaked" in out
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert records == [battle_record(vote) for vote in store.votes()]
    first = records[0]
    assert (first["model_a"], first["model_b"], first["winner"], first["judge"]) == ("alpha", "beta", "tie",
                                                                                    "arena_user_ada")
    assert first["conversation_a"] == [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi!"}]
    assert [r["leaked_identity"] for r in records] == [False, True]
    assert [p.name for p in target.parent.iterdir()] == ["votes.jsonl"]  # written atomically: no temporary left

    code, out, err = run_cli(monkeypatch, capsys, "arena", "ratings", "--battles", target, "--rounds", "20",
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["battles"], report["skipped_leaked_identity"]) == (1, 1)
    assert {row["model"]: (row["wins"], row["ties"], row["losses"]) for row in report["models"]} == {
        "alpha": (0, 1, 0), "beta": (0, 1, 0)}
    code, out, _ = run_cli(monkeypatch, capsys, "arena", "ratings", "--battles", target, "--rounds", "20")
    assert code == 0 and "1 leaked-identity votes skipped" in out

    code, out, _ = run_cli(monkeypatch, capsys, "arena", "votes", "--export", target, "--json")
    assert json.loads(out) == {"export": str(target), "votes": 2, "leaked_identity": 1}
