"""The MT-bench judge and judged arena battles: exact rules with scripted backends, one end-to-end run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.battles import run_battles
from kaiyuan.evaluate.judge import (
    JudgeConfig,
    Question,
    grade_pairwise,
    grade_single,
    load_answers,
    load_judge_prompts,
    load_questions,
    parse_rating,
    parse_verdict,
    run_judge,
)
from tests.conftest import write_jsonl


class ScriptedJudge:
    """A judge backend whose replies come from a list (in call order) or a function of the user prompt."""

    name = "scripted-judge"

    def __init__(self, replies):
        self.replies = replies
        self.calls: list[list[dict]] = []

    def chat(self, messages, max_tokens, temperature=0):
        assert temperature == 0
        self.calls.append(messages)
        if callable(self.replies):
            return self.replies(messages[-1]["content"])
        return self.replies.pop(0)


class EchoModel:
    """A contestant that answers with its name and the last user message."""

    def __init__(self, name):
        self.name = name

    def chat(self, messages, max_tokens, temperature=0):
        return f"{self.name} says: {messages[-1]['content']}"


QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Make it shorter."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2 + 3?"], "reference": ["5"]},
]
ANSWERS = [
    {"question_id": 81, "model_id": "alpha", "choices": [{"index": 0, "turns": ["alpha t1", "alpha t2"]}]},
    {"question_id": 111, "model_id": "alpha", "choices": [{"index": 0, "turns": ["alpha math"]}]},
    {"question_id": 81, "model_id": "beta", "choices": [{"index": 0, "turns": ["beta t1", "beta t2"]}]},
    {"question_id": 111, "model_id": "beta", "choices": [{"index": 0, "turns": ["beta math"]}]},
]


@pytest.fixture
def files(tmp_path):
    return write_jsonl(tmp_path / "question.jsonl", QUESTIONS), write_jsonl(tmp_path / "answers.jsonl", ANSWERS)


def test_parse_rating_double_brackets_fallback_and_unparsable():
    assert parse_rating("Good answer. Rating: [[7]]") == 7.0
    assert parse_rating("Rating: [[8.5]]") == 8.5
    assert parse_rating("first [[3]], later [[9]]") == 3.0
    assert parse_rating("Rating: [6]") == 6.0  # FastChat's fallback pattern
    assert parse_rating("[2] then [[9]]") == 9.0  # double brackets win over the fallback
    assert parse_rating("I would give it a seven.") is None
    assert parse_rating("[[11]]") is None and parse_rating("[[0]]") is None
    assert parse_rating("[[rating]]") is None


def test_parse_verdict_in_fastchat_order():
    assert parse_verdict("so [[A]]") == "A"
    assert parse_verdict("[[B]]") == "B"
    assert parse_verdict("[[C]]") == "tie"
    assert parse_verdict("[[B]] or maybe [[A]]") == "A"  # checked in the order A, B, C
    assert parse_verdict("[A] is better") is None


def test_reference_guided_prompts_for_math_reasoning_coding():
    prompts = load_judge_prompts()
    judge = ScriptedJudge(lambda prompt: "[[5]]")

    def chosen(category, reference, turn=1, turns=("q1", "q2")):
        question = Question(1, category, list(turns), reference)
        grade = grade_single(judge, question, ["a1", "a2"], prompts, turn=turn)
        return grade.prompt_name, grade.user_prompt

    name, user = chosen("math", ["the reference 42"])
    assert name == "kaiyuan-single-ref" and "the reference 42" in user and "q1" in user and "a1" in user
    assert chosen("reasoning", ["r"])[0] == "kaiyuan-single-ref"
    assert chosen("coding", ["r"])[0] == "kaiyuan-single-ref"
    assert chosen("math", None)[0] == "kaiyuan-single"  # no reference answer: the general prompt
    assert chosen("writing", ["r"])[0] == "kaiyuan-single"  # reference only for math / reasoning / coding
    name, user = chosen("math", ["ref one", "ref two"], turn=2)
    assert name == "kaiyuan-single-ref-multi-turn"
    assert all(text in user for text in ("q1", "q2", "a1", "a2", "ref one", "ref two"))
    assert chosen("math", ["ref one"], turn=2)[0] == "kaiyuan-single-multi-turn"
    assert chosen("writing", None, turn=2)[0] == "kaiyuan-single-multi-turn"
    # the judge saw the system prompt of the file and the rendered template
    assert judge.calls[0][0]["role"] == "system" and judge.calls[0][1]["role"] == "user"
    grade = grade_pairwise(ScriptedJudge(["[[A]]", "[[B]]"]), Question(1, "math", ["q"], ["ref"]), ["x"], ["y"],
                           prompts)
    assert grade.prompt_name == "kaiyuan-pair-ref"
    with pytest.raises(KaiyuanError, match="turn 2"):
        grade_single(judge, Question(1, "writing", ["only one turn"]), ["a"], prompts, turn=2)


@pytest.mark.parametrize(("replies", "g1", "g2", "winner"), [
    (["[[A]]", "[[B]]"], "model_a", "model_a", "model_a"),  # A first, then (swapped) B: model_a both times
    (["[[B]]", "[[A]]"], "model_b", "model_b", "model_b"),
    (["[[A]]", "[[A]]"], "model_a", "model_b", "tie"),  # position bias: inconsistent → tie
    (["[[C]]", "[[C]]"], "tie", "tie", "tie"),
    (["[[C]]", "[[B]]"], "tie", "model_a", "tie"),
    (["[[A]]", "no verdict"], "model_a", "error", "error"),
])
def test_pairwise_both_orders(replies, g1, g2, winner):
    judge = ScriptedJudge(list(replies))
    grade = grade_pairwise(judge, Question(7, "writing", ["Say hi."]), ["answer of a"], ["answer of b"],
                           load_judge_prompts())
    assert (grade.g1_winner, grade.g2_winner, grade.winner) == (g1, g2, winner)
    assert grade.g1_judgment == replies[0] and grade.g2_judgment == replies[1]
    first, second = (call[-1]["content"] for call in judge.calls)
    assert first.index("answer of a") < first.index("answer of b")
    assert second.index("answer of b") < second.index("answer of a")  # swapped
    assert grade.prompt_name == "kaiyuan-pair"


def single_rule(prompt):
    for needle, reply in [("alpha t2", "[[8]]"), ("alpha t1", "[[6]]"), ("alpha math", "Rating: [[10]]"),
                          ("beta t2", "hard to say"), ("beta t1", "Rating: [4]"), ("beta math", "[[2]]")]:
        if needle in prompt:
            return reply
    raise AssertionError(prompt)


def test_run_judge_single_from_answer_files(home, files):
    questions, answers = files
    judge = ScriptedJudge(single_rule)
    result = run_judge(JudgeConfig(questions=str(questions), judge="fake", answers=[str(answers)]),
                       backends={"fake": judge})
    m = result.metrics
    assert (m["mode"], m["n"], m["n_scored"], m["n_unparsable"], m["n_questions"]) == ("single", 6, 5, 1, 2)
    alpha, beta = m["models"]["alpha"], m["models"]["beta"]
    assert alpha == {"mean_score": 8.0, "n": 3, "n_scored": 3, "n_unparsable": 0, "turns": {"1": 8.0, "2": 8.0},
                     "categories": {"math": 10.0, "writing": 7.0}}
    assert beta == {"mean_score": 3.0, "n": 3, "n_scored": 2, "n_unparsable": 1, "turns": {"1": 3.0, "2": None},
                    "categories": {"math": 2.0, "writing": 4.0}}
    artifact = result.artifact
    assert artifact.kind == "eval" and artifact.manifest["metrics"]["models"]["alpha"]["mean_score"] == 8.0
    rows = [json.loads(line) for line in (artifact.path / "judgments.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    unparsable = [r for r in rows if r["score"] is None]
    assert [(r["model"], r["question_id"], r["turn"], r["judgment"]) for r in unparsable] == [
        ("beta", 81, 2, "hard to say")]
    assert {r["judge_prompt"] for r in rows} == {"kaiyuan-single", "kaiyuan-single-multi-turn",
                                                 "kaiyuan-single-ref"}
    assert load_answers([artifact.path / "answers.jsonl"]) == load_answers([answers])
    assert artifact.manifest["config"]["judge_name"] == "scripted-judge"
    assert artifact.manifest["parents"] == []  # answer-file models and a scripted judge are not in the registry

    first_turn = run_judge(JudgeConfig(questions=str(questions), judge="fake", answers=[str(answers)],
                                       models=["beta"], first_turn_only=True, limit=1), backends={"fake": judge})
    assert first_turn.metrics["n"] == 1 and first_turn.metrics["models"]["beta"]["mean_score"] == 4.0


def test_run_judge_pairwise_win_tie_loss(home, files):
    questions, answers = files

    def prefer_alpha(prompt):
        if "math" in prompt:
            return "[[A]]"  # always the first answer: inconsistent across orders → tie
        return "[[A]]" if prompt.index("alpha") < prompt.index("beta") else "[[B]]"

    result = run_judge(JudgeConfig(questions=str(questions), judge="fake", answers=[str(answers)],
                                   mode="pairwise"), backends={"fake": ScriptedJudge(prefer_alpha)})
    m = result.metrics
    assert (m["n"], m["n_judged"], m["n_unparsable"]) == (3, 3, 0)
    assert m["models"]["alpha"] == {"win": 2, "loss": 0, "tie": 1, "n": 3, "win_rate": 2 / 3, "loss_rate": 0.0,
                                    "win_rate_adjusted": 2.5 / 3}
    assert m["models"]["beta"]["loss"] == 2 and m["models"]["beta"]["tie"] == 1
    assert m["pairs"] == [{"model_a": "alpha", "model_b": "beta", "win_a": 2, "win_b": 0, "tie": 1,
                           "n_unparsable": 0}]
    rows = [json.loads(line) for line in (result.artifact.path / "judgments.jsonl").read_text().splitlines()]
    math = [r for r in rows if r["question_id"] == 111][0]
    assert (math["g1_winner"], math["g2_winner"], math["winner"]) == ("model_a", "model_b", "tie")
    assert {r["judge_prompt"] for r in rows} == {"kaiyuan-pair", "kaiyuan-pair-multi-turn", "kaiyuan-pair-ref"}

    unparsable = run_judge(JudgeConfig(questions=str(questions), judge="fake", answers=[str(answers)],
                                       mode="pairwise", first_turn_only=True),
                           backends={"fake": ScriptedJudge(lambda p: "?")})
    assert unparsable.metrics["n_unparsable"] == unparsable.metrics["n"] == 2
    assert unparsable.metrics["models"]["alpha"]["win_rate"] is None


def test_generated_answers_are_multi_turn_conversations(home, files):
    questions, _ = files

    class Recorder(EchoModel):
        def __init__(self, name):
            super().__init__(name)
            self.seen = []

        def chat(self, messages, max_tokens, temperature=0):
            self.seen.append([m["role"] for m in messages])
            return super().chat(messages, max_tokens, temperature)

    model = Recorder("echo")
    result = run_judge(JudgeConfig(models=["echo"], questions=str(questions), judge="fake"),
                       backends={"echo": model, "fake": ScriptedJudge(lambda p: "[[5]]")})
    assert model.seen == [["user"], ["user", "assistant", "user"], ["user"]]
    assert result.answers["echo"]["81"] == ["echo says: Write a poem.", "echo says: Make it shorter."]
    assert result.metrics["models"]["echo"]["mean_score"] == 5.0


def test_input_errors_name_file_line_and_field(home, tmp_path, files):
    questions, answers = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": 1, "turns": ["ok"]}\n{"question_id": 2, "turns": "not a list"}\n')
    with pytest.raises(KaiyuanError, match=r"bad.jsonl:2: turns: expected a non-empty list of strings"):
        load_questions(bad)
    bad.write_text('{"question_id": 1, "turns": ["ok"]}\n{not json\n')
    with pytest.raises(KaiyuanError, match=r"bad.jsonl:2: not valid JSON"):
        load_questions(bad)
    bad.write_text('{"question_id": 1, "choices": []}\n')
    with pytest.raises(KaiyuanError, match=r"bad.jsonl:1: model_id: missing"):
        load_answers([bad])
    bad.write_text(json.dumps({"name": "x", "type": "single", "system_prompt": "", "output_format": "[[rating]]",
                               "prompt_template": "{question} {answer} {oops}"}) + "\n")
    with pytest.raises(KaiyuanError, match=r"bad.jsonl:1: prompt_template: unknown placeholder\(s\) oops"):
        load_judge_prompts(bad)
    partial = write_jsonl(tmp_path / "partial.jsonl", ANSWERS[:1] + ANSWERS[2:])
    with pytest.raises(KaiyuanError, match=r"model 'alpha' has no answer to question 111"):
        run_judge(JudgeConfig(questions=str(questions), judge="fake", answers=[str(partial)]),
                  backends={"fake": ScriptedJudge([])})
    with pytest.raises(KaiyuanError, match="at least 2 model"):
        run_judge(JudgeConfig(models=["alpha"], questions=str(questions), judge="fake", answers=[str(answers)],
                              mode="pairwise"), backends={"fake": ScriptedJudge([])})
    with pytest.raises(KaiyuanError, match="no such questions file"):
        load_questions(tmp_path / "missing.jsonl")


def test_battles_are_judged_anonymously_stored_and_written_as_fastchat(home, tmp_path):
    from kaiyuan.evaluate.arena import load_stored_battles, read_battles

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Say hi."}, {"prompt": "Count to 3."},
                                                       {"question_id": "q-x", "turns": ["Undecidable."]}])
    models = [EchoModel("m1"), EchoModel("m2"), EchoModel("m3")]

    def judge_rule(prompt):
        assert "m1 says" in prompt or "m2 says" in prompt  # the judge sees answers, never the slot's model
        if "Undecidable." in prompt:
            return "cannot tell"
        if "m1 says" in prompt:  # m1 always wins; m2 against m3: always the first → inconsistent → tie
            return "[[A]]" if prompt.index("m1 says") < prompt.index("Assistant B") else "[[B]]"
        return "[[A]]"

    out = tmp_path / "battles.jsonl"
    result = run_battles(models, prompts, ScriptedJudge(judge_rule), seed=1, out=out)
    assert len(result.battles) == 6 and result.n_unparsable == 3 and result.n_prompts == 3
    for battle in result.battles:
        expected = ("model_a" if battle.model_a == "m1" else "model_b" if battle.model_b == "m1" else "tie")
        assert battle.winner == expected
        assert battle.judge == "scripted-judge" and battle.answer_a == f"{battle.model_a} says: {battle.prompt}"
    summary = result.summary()
    assert summary["models"]["m1"] == {"win": 4, "loss": 0, "tie": 0}
    assert summary["models"]["m2"] == {"win": 0, "loss": 2, "tie": 2}
    assert summary["stored_in"] == str(home / "arena.sqlite")

    stored = load_stored_battles()
    assert [(b.model_a, b.model_b, b.winner) for b in stored] == [(b.model_a, b.model_b, b.winner)
                                                                  for b in result.battles]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 6
    first = lines[0]
    assert set(first) >= {"question_id", "model_a", "model_b", "winner", "judge", "conversation_a",
                          "conversation_b", "turn", "anony", "tstamp"}
    assert first["conversation_a"] == [{"role": "user", "content": "Say hi."},
                                       {"role": "assistant", "content": f"{first['model_a']} says: Say hi."}]
    assert first["anony"] is True and first["turn"] == 1 and first["question_id"] == "1"
    assert [(b.model_a, b.model_b, b.winner) for b in read_battles(out)] == [
        (line["model_a"], line["model_b"], line["winner"]) for line in lines]

    # random pairs: one per prompt, reproducible from the seed
    one = run_battles(models, prompts, ScriptedJudge(judge_rule), pairs_per_prompt=1, seed=3, store=False)
    again = run_battles(models, prompts, ScriptedJudge(judge_rule), pairs_per_prompt=1, seed=3, store=False)
    assert len(one.battles) + one.n_unparsable == 3
    assert [(b.model_a, b.model_b) for b in one.battles] == [(b.model_a, b.model_b) for b in again.battles]
    assert len(load_stored_battles()) == 6  # store=False stored nothing
    with pytest.raises(KaiyuanError, match="at least 2 models"):
        run_battles(models[:1], prompts, ScriptedJudge([]))


def test_endpoint_backend_talks_openai_chat_completions():
    import httpx

    from kaiyuan.evaluate.chat_backends import EndpointChat, LocalChat, backend_from_spec

    seen = []

    def reply(request):
        seen.append((str(request.url), json.loads(request.content), request.headers["authorization"]))
        return httpx.Response(200, json={"id": "c1", "object": "chat.completion", "created": 0, "model": "judge-x",
                                         "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                             "role": "assistant", "content": "Rating: [[9]]"}}]})

    chat = EndpointChat("http://judge.invalid:8000", "judge-x", api_key="secret",
                        http_client=httpx.Client(transport=httpx.MockTransport(reply)))
    assert chat.chat([{"role": "user", "content": "hi"}], max_tokens=7) == "Rating: [[9]]"
    url, body, auth = seen[0]
    assert url == "http://judge.invalid:8000/v1/chat/completions" and auth == "Bearer secret"
    assert body["model"] == "judge-x" and body["max_tokens"] == 7 and body["temperature"] == 0

    backend = backend_from_spec("https://api.example.invalid/v1#big-judge")
    assert isinstance(backend, EndpointChat) and backend.name == "big-judge"
    assert backend.base_url == "https://api.example.invalid/v1"
    assert backend_from_spec("http://h:1/v1", model="m").name == "m"
    with pytest.raises(KaiyuanError, match="--judge-model"):
        backend_from_spec("http://h:1/v1")
    with pytest.raises(KaiyuanError, match="only for an http"):
        backend_from_spec("tiny-llama", model="m")
    assert LocalChat.__name__ == "LocalChat"


def test_fastchat_judge_prompts_file_can_be_used():
    shared = Path(os.environ.get("KAIYUAN_SHARED_DATA", "../shared/data"))
    path = shared / "benchmarks" / "mt_bench" / "judge_prompts.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    prompts = load_judge_prompts(path)
    select = prompts.select
    assert select("single", False, False).name == "single-v1"
    assert select("single", False, True).name == "single-math-v1"
    assert select("single", True, False).name == "single-v1-multi-turn"
    assert select("single", True, True).name == "single-math-v1-multi-turn"
    assert select("pairwise", False, False).name == "pair-v2"
    assert select("pairwise", False, True).name == "pair-math-v1"
    assert select("pairwise", True, False).name == "pair-v2-multi-turn"
    assert select("pairwise", True, True).name == "pair-math-v1-multi-turn"
    grade = grade_single(ScriptedJudge(["Rating: [[4]]"]), Question(1, "coding", ["q"], ["ref"]), ["a"], prompts)
    assert (grade.score, grade.prompt_name) == (4.0, "single-math-v1")


def test_end_to_end_tiny_llama_judges_itself_through_the_cli(tiny, home, tmp_path):
    """Random weights answer and judge: no verdicts parse, and every judgment is counted as unparsable."""
    import typer
    from typer.testing import CliRunner

    from kaiyuan.cli.evaluate import battle_command, judge_command
    from kaiyuan.evaluate.arena import load_stored_battles
    from kaiyuan.hub.manifest import RELATIONS
    from kaiyuan.hub.registry import Registry

    app = typer.Typer()
    app.command("judge")(judge_command)
    app.command("battle")(battle_command)
    questions = write_jsonl(tmp_path / "q.jsonl", [
        {"question_id": 1, "category": "writing", "turns": ["Hi there.", "Again."]},
        {"question_id": 2, "category": "math", "turns": ["2 + 3?"], "reference": ["5"]}])
    runner = CliRunner()
    result = runner.invoke(app, ["judge", "tiny-llama", "--questions", str(questions), "--judge", "tiny-llama",
                                 "--max-tokens", "4", "--judge-max-tokens", "4", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 3 and summary["n_unparsable"] == 3 and summary["n_scored"] == 0
    assert summary["models"]["tiny-llama"]["mean_score"] is None
    assert summary["models"]["tiny-llama"]["turns"] == {"1": None, "2": None}
    artifact = Registry().get(summary["eval_id"])
    relations = {(p["id"], p["relation"]) for p in artifact.manifest["parents"]}
    assert (tiny.id, "evaluated_model") in relations
    assert ((tiny.id, "judge") in relations) == ("judge" in RELATIONS)
    assert artifact.manifest["config"]["judge_id"] == tiny.id
    rows = [json.loads(line) for line in (artifact.path / "judgments.jsonl").read_text().splitlines()]
    assert [(r["question_id"], r["turn"], r["score"]) for r in rows] == [(1, 1, None), (1, 2, None), (2, 1, None)]
    assert all(isinstance(r["judgment"], str) for r in rows)

    out = tmp_path / "battles.jsonl"
    result = runner.invoke(app, ["battle", "tiny-llama", "tiny-llama@1", "--prompts", str(questions), "--judge",
                                 "tiny-llama", "--max-tokens", "4", "--judge-max-tokens", "4", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "2 comparisons without a verdict" in result.stdout
    assert out.read_text() == "" and load_stored_battles() == []
