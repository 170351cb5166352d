"""Arena ratings: Bradley–Terry MLE against an independent fit, bootstrap, online Elo, FastChat logs, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from kaiyuan.cli.evaluate import arena_app
from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.arena import (
    IDENTITY_WORDS,
    Battle,
    bootstrap,
    bradley_terry,
    count_stored_battles,
    interval_ranks,
    leaderboard,
    leaks_identity,
    load_stored_battles,
    online_elo,
    plot_leaderboard,
    read_battles,
    store_battles,
)
from tests.conftest import write_jsonl


def battles_of(*rows: tuple[str, str, str]) -> list[Battle]:
    return [Battle(a, b, w) for a, b, w in rows]


# Four models, every pair met, with ties of both kinds and upsets: the MLE exists and is unique.
HAND_MADE = battles_of(
    ("gpt", "llama", "model_a"), ("gpt", "llama", "model_a"), ("llama", "gpt", "model_a"), ("gpt", "llama", "tie"),
    ("gpt", "qwen", "model_a"), ("qwen", "gpt", "tie (bothbad)"), ("qwen", "gpt", "model_b"),
    ("llama", "qwen", "model_b"), ("qwen", "llama", "model_b"), ("llama", "qwen", "tie"),
    ("mistral", "gpt", "model_b"), ("mistral", "gpt", "model_a"), ("gpt", "mistral", "model_a"),
    ("mistral", "llama", "tie"), ("llama", "mistral", "model_b"), ("mistral", "qwen", "model_a"),
    ("qwen", "mistral", "model_a"), ("qwen", "mistral", "tie"),
)


def sklearn_ratings(battles: list[Battle]) -> dict[str, float]:
    """FastChat's compute_mle_elo: duplicate the battles, a tie is a win in one copy and a loss in the other."""
    from sklearn.linear_model import LogisticRegression

    models = sorted({b.model_a for b in battles} | {b.model_b for b in battles})
    index = {m: i for i, m in enumerate(models)}
    doubled = battles + battles
    x = np.zeros((len(doubled), len(models)))
    y = np.zeros(len(doubled))
    for row, b in enumerate(doubled):
        x[row, index[b.model_a]] = +math.log(10)
        x[row, index[b.model_b]] = -math.log(10)
        y[row] = 1.0 if b.winner == "model_a" or (b.winner.startswith("tie") and row < len(battles)) else 0.0
    lr = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(x, y)  # no penalty
    ratings = 400 * lr.coef_[0] + 1000
    return {m: float(ratings[index[m]]) for m in models}


def test_bradley_terry_equals_logistic_regression_fit():
    ours = bradley_terry(HAND_MADE)
    theirs = sklearn_ratings(HAND_MADE)
    assert set(ours) == set(theirs)
    assert np.mean(list(ours.values())) == pytest.approx(1000, abs=1e-9)
    for model in theirs:
        assert ours[model] == pytest.approx(theirs[model], abs=1e-3)
    assert list(ours) == sorted(ours, key=lambda m: -ours[m])  # highest first


def test_bradley_terry_recovers_known_ratings():
    truth = {"a": 1120.0, "b": 1060.0, "c": 1000.0, "d": 940.0, "e": 880.0}  # mean 1000
    models = list(truth)
    rng = np.random.default_rng(1234)
    battles = []
    for _ in range(5000):
        i, j = rng.choice(len(models), size=2, replace=False)
        p_a = 1 / (1 + 10 ** ((truth[models[j]] - truth[models[i]]) / 400))
        battles.append(Battle(models[i], models[j], "model_a" if rng.random() < p_a else "model_b"))
    fitted = bradley_terry(battles)
    # ~2000 battles per model: standard error about 8 points.
    for model, rating in truth.items():
        assert abs(fitted[model] - rating) < 15, (model, fitted[model])
    assert list(fitted) == models


def test_unbounded_ratings_are_an_error():
    with pytest.raises(KaiyuanError, match=r"unbounded: \{a\} never lost to \(or tied with\) \{b, c\}"):
        bradley_terry(battles_of(("a", "b", "model_a"), ("c", "a", "model_b"), ("b", "c", "model_a"),
                                 ("c", "b", "model_a")))
    with pytest.raises(KaiyuanError, match=r"no battles connect \{c, d\} with \{a, b\}"):
        bradley_terry(battles_of(("a", "b", "tie"), ("c", "d", "tie")))


def test_bootstrap_is_deterministic_and_covers_the_estimate():
    first = bootstrap(HAND_MADE * 5, rounds=200, seed=7)
    second = bootstrap(HAND_MADE * 5, rounds=200, seed=7)
    np.testing.assert_array_equal(first.samples, second.samples)
    assert first.intervals() == second.intervals()
    assert bootstrap(HAND_MADE * 5, rounds=200, seed=8).intervals() != first.intervals()
    ratings = bradley_terry(HAND_MADE * 5)
    for model, (lower, upper) in first.intervals().items():
        assert lower < ratings[model] < upper
    assert first.samples.shape == (200 - first.skipped_rounds, 4)


def test_rank_rule():
    intervals = {"top": (1090.0, 1110.0), "close": (1085.0, 1100.0), "mid": (1000.0, 1080.0),
                 "overlap": (1050.0, 1095.0), "low": (900.0, 940.0)}
    # rank = 1 + number of models whose lower bound is above this model's upper bound
    assert interval_ranks(intervals) == {"top": 1, "close": 1, "mid": 3, "overlap": 1, "low": 5}


def test_leaderboard_rows():
    board = leaderboard(HAND_MADE * 5 + battles_of(("gpt", "gpt", "tie")), rounds=50, seed=0)
    assert [row.model for row in board] == list(bradley_terry(HAND_MADE))
    assert board.battles == len(HAND_MADE) * 5
    gpt = next(row for row in board if row.model == "gpt")
    assert (gpt.wins, gpt.ties, gpt.losses, gpt.battles) == (30, 10, 10, 50)
    assert sum(row.battles for row in board) == 2 * board.battles
    assert board[0].rank == 1 and all(row.lower <= row.rating <= row.upper for row in board)


def test_online_elo_by_hand():
    battles = battles_of(("A", "B", "model_a"), ("B", "C", "tie"), ("A", "C", "model_b"))
    # 1: A beats B, both expected 0.5: A = 1000 + 4 * 0.5 = 1002, B = 998.
    # 2: B (998) ties C (1000): E_B = 1 / (1 + 10 ** (2 / 400)); B += 4 * (0.5 - E_B), C -= the same.
    e_b = 1 / (1 + 10 ** (2 / 400))
    b = 998 + 4 * (0.5 - e_b)
    c = 1000 - 4 * (0.5 - e_b)
    # 3: C beats A (1002): E_A = 1 / (1 + 10 ** ((C - 1002) / 400)); A -= 4 * E_A, C += 4 * E_A.
    e_a = 1 / (1 + 10 ** ((c - 1002) / 400))
    expected = {"A": 1002 - 4 * e_a, "B": b, "C": c + 4 * e_a}
    assert b == pytest.approx(998.011512, abs=1e-6) and c == pytest.approx(999.988488, abs=1e-6)
    assert expected["A"] == pytest.approx(999.988421, abs=1e-6)
    assert expected["C"] == pytest.approx(1002.000066, abs=1e-6)
    ratings = online_elo(battles)
    assert ratings == pytest.approx(expected, abs=1e-9)
    assert sum(ratings.values()) == pytest.approx(3000, abs=1e-9)


def test_read_fastchat_json_array_and_jsonl(tmp_path):
    records = [
        {"model_a": "vicuna-13b", "model_b": "alpaca-13b", "winner": "model_a", "judge": "arena_user_1",
         "tstamp": 1682351591.1322, "question_id": 81, "anony": True, "language": "English",
         "conversation_a": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}],
         "conversation_b": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
        {"model_a": "alpaca-13b", "model_b": "vicuna-13b", "winner": "tie (bothbad)"},
        {"model_a": "vicuna-13b", "model_b": "vicuna-13b", "winner": "tie"},
        {"model_a": "alpaca-13b", "model_b": "vicuna-13b", "winner": "tie"},
    ]
    array = tmp_path / "clean_battle_20230101.json"
    array.write_text(json.dumps(records, indent=2))
    log = read_battles(array)
    assert [b.winner for b in log] == ["model_a", "tie (bothbad)", "tie"]
    assert log.skipped_self_battles == 1
    first = log.battles[0]
    assert (first.prompt, first.answer_a, first.answer_b) == ("hi", "hello!", "hey")
    assert (first.judge, first.tstamp, first.question_id) == ("arena_user_1", 1682351591.1322, "81")
    lines = write_jsonl(tmp_path / "battles.jsonl", records)
    assert read_battles(lines).battles == log.battles


def test_bad_records_name_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "battles.jsonl", [{"model_a": "x", "model_b": "y", "winner": "model_a"},
                                                    {"model_a": "x", "model_b": "y", "winner": "draw"}])
    with pytest.raises(KaiyuanError) as info:
        read_battles(path)
    assert str(info.value) == (f"{path}:2: winner: expected one of 'model_a', 'model_b', 'tie', 'tie (bothbad)', "
                               "got 'draw'")
    array = tmp_path / "battles.json"
    array.write_text(json.dumps([{"model_a": "x", "model_b": "y", "winner": "tie"}, {"model_a": "x", "winner": "tie"},
                                 {"model_a": "x", "model_b": "y", "winner": "tie", "tstamp": "noon"}]))
    with pytest.raises(KaiyuanError) as info:
        read_battles(array)
    assert str(info.value) == f"{array}[#1]: model_b: missing\n{array}[#2]: tstamp: expected a number, got 'noon'"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\n{"model_a": \n')
    with pytest.raises(KaiyuanError, match=r"broken.jsonl:2: record: invalid JSON"):
        read_battles(broken)


def test_store_round_trip(home):
    assert load_stored_battles() == []
    battles = [Battle("a", "b", "model_b", prompt="p", answer_a="x", answer_b="y", judge="gpt-4", tstamp=1.5,
                      question_id="q1"), Battle("b", "a", "tie (bothbad)")]
    assert store_battles(battles) == 2
    store_battles(battles[:1])
    assert load_stored_battles() == battles + battles[:1]
    assert (home / "arena.sqlite").exists()


def test_plot_is_written_atomically(tmp_path):
    png = plot_leaderboard(leaderboard(HAND_MADE, rounds=20, seed=0).rows, tmp_path / "plots" / "arena.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["arena.png"]


def test_cli_ratings_json_and_png(home, tmp_path):
    runner = CliRunner()
    battles = write_jsonl(tmp_path / "battles.jsonl", [b.to_dict() for b in HAND_MADE * 3])
    png = tmp_path / "ratings.png"
    result = runner.invoke(arena_app, ["ratings", "--battles", str(battles), "--rounds", "30", "--seed", "3",
                                       "--png", str(png), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["battles"] == len(HAND_MADE) * 3 and report["rounds"] == 30 and report["seed"] == 3
    expected = bradley_terry(HAND_MADE * 3)
    assert [row["model"] for row in report["models"]] == list(expected)
    for row in report["models"]:
        assert row["rating"] == pytest.approx(expected[row["model"]], abs=1e-9)
        assert row["lower"] <= row["rating"] <= row["upper"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(arena_app, ["ratings", "--battles", str(battles), "--rounds", "30", "--seed", "3",
                                      "--json"])
    assert json.loads(again.stdout)["models"] == report["models"]

    # Default: the stored battles; none stored yet is an error the main CLI turns into exit code 2.
    empty = runner.invoke(arena_app, ["ratings", "--rounds", "10"])
    assert isinstance(empty.exception, KaiyuanError) and "no battles stored" in str(empty.exception)
    store_battles(HAND_MADE)
    table = runner.invoke(arena_app, ["ratings", "--rounds", "10"])
    assert table.exit_code == 0, table.output
    assert "mistral" in table.stdout and "95% CI" in table.stdout


def test_leaked_identity_records_are_read_left_out_and_counted(tmp_path):
    records = [{"model_a": "x", "model_b": "y", "winner": "model_a", "leaked_identity": True},
               {"model_a": "x", "model_b": "y", "winner": "model_b", "leaked_identity": False},
               {"model_a": "y", "model_b": "x", "winner": "tie"},
               {"model_a": "x", "model_b": "x", "winner": "tie"}]
    log = read_battles(write_jsonl(tmp_path / "battles.jsonl", records))
    assert [b.winner for b in log] == ["model_b", "tie"]
    assert (log.skipped_leaked_identity, log.skipped_self_battles) == (1, 1)
    array = tmp_path / "battles.json"
    array.write_text(json.dumps(records))
    assert read_battles(array).skipped_leaked_identity == 1
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"model_a": "x", "model_b": "y", "winner": "tie",
                                                "leaked_identity": "yes"}])
    with pytest.raises(KaiyuanError) as info:
        read_battles(bad)
    assert str(info.value) == f"{bad}:1: leaked_identity: expected true or false, got 'yes'"


def test_cli_ratings_reports_leaked_identity_votes(home, tmp_path):
    rows = [b.to_dict() for b in HAND_MADE] + [{"model_a": "gpt", "model_b": "qwen", "winner": "model_a",
                                                "leaked_identity": True}]
    battles = write_jsonl(tmp_path / "battles.jsonl", rows)
    result = CliRunner().invoke(arena_app, ["ratings", "--battles", str(battles), "--rounds", "10", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["battles"], report["skipped_leaked_identity"]) == (len(HAND_MADE), 1)
    table = CliRunner().invoke(arena_app, ["ratings", "--battles", str(battles), "--rounds", "10"])
    assert "1 leaked-identity votes skipped" in " ".join(table.stdout.split())


@pytest.mark.parametrize(("replies", "models", "leaked"), [
    (["I am a helpful assistant."], ["alpha", "beta"], False),
    (["As an AI made by OpenAI, I…"], ["alpha", "beta"], True),  # an identity word, any case
    (["I'm LLaMA."], ["alpha", "beta"], True),
    (["Hola, soy Tülu."], ["alpha", "beta"], True),
    (["This is Alpha speaking."], ["alpha", "beta"], True),  # the battle's own model name
    (["Greetings from smollm2-dates."], ["HuggingFaceTB/SmolLM2-Dates", "beta"], True),  # last part of org/name
    (["My adapter is dates-lora."], ["tiny-base:dates-lora", "beta"], True),  # the adapter half
    (["Built on tiny-base."], ["tiny-base:dates-lora", "beta"], True),  # the base half
    (["q: 7b or not"], ["q:7b", "beta"], False),  # parts under 3 characters are ignored
    (["", None], ["alpha", "beta"], False),
    ([], ["alpha", "beta"], False),
])
def test_leaks_identity(replies, models, leaked):
    assert leaks_identity(replies, models) is leaked


def test_identity_words_are_fastchats_lowercased():
    assert len(IDENTITY_WORDS) == 26 and all(w == w.lower() for w in IDENTITY_WORDS)
    assert {"gpt-4", "keg lab", "01.ai", "tülu", "tulu", "uc berkeley"} <= set(IDENTITY_WORDS)


def test_count_stored_battles(home):
    assert count_stored_battles() == 0
    store_battles(HAND_MADE)
    assert count_stored_battles() == len(HAND_MADE) == len(load_stored_battles())
