"""A local judge that can judge: LoRA-tune SmolLM2-135M-Instruct to give MT-bench pairwise verdicts on the dates task.

A 135M instruction model does not follow MT-bench's judge prompt (it answers the question instead of writing
``[[A]]``). This example runs the lifecycle on the judge itself: it records the exact prompts that
``kaiyuan judge`` / ``kaiyuan arena battle`` send (through the real code path, with a recording stand-in judge)
for answer pairs whose verdict is known (one answer is the right ISO date, the other a near miss or prose),
fine-tunes a judge on them, and prints the registered judge model's id:

    python examples/train_dates_judge.py
    kaiyuan arena battle MODEL_A MODEL_B --prompts PROMPTS.jsonl --judge <printed id>
"""

from __future__ import annotations

import argparse
import random
from datetime import date

from kaiyuan.data.synthetic import _near_miss_date, _wrong_date, date_example
from kaiyuan.evaluate.judge import Question, grade_pairwise, load_judge_prompts
from kaiyuan.train.common import register_dataset
from kaiyuan.train.sft import SFTConfig, run_sft


class Recorder:
    """A stand-in judge that records the messages it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[list[dict[str, str]]] = []

    def chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float = 0) -> str:
        self.sent.append(messages)
        return ""


def judge_conversations(n: int, seed: int) -> list[dict]:
    """2 × ``n`` judge conversations: each pair judged in both orders, as the judge will see it."""
    rng = random.Random(seed)
    prompts = load_judge_prompts()
    rows = []
    for number in range(n):
        example = date_example(rng)
        gold = example["messages"][1]["content"]
        wrong = (_near_miss_date if rng.random() < 0.5 else _wrong_date)(date.fromisoformat(gold), rng)
        question = Question(question_id=number, category="extraction", turns=[example["messages"][0]["content"]])
        recorder = Recorder()
        grade_pairwise(recorder, question, [gold], [wrong], prompts)  # A = right, B = wrong; then swapped
        for messages, verdict in zip(recorder.sent, ("[[A]]", "[[B]]"), strict=True):
            rows.append({"messages": [*messages, {"role": "assistant", "content": verdict}]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100, help="Answer pairs (each judged in both orders).")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = judge_conversations(args.n, args.seed)
    data = register_dataset(rows, "dates-judge-train", "CC0-1.0", "examples/train_dates_judge.py",
                            {"n": args.n}, seed=args.seed)
    result = run_sft(SFTConfig(model="smollm2-135m-instruct", data=data.id, name="smollm2-135m-dates-judge",
                               learning_rate=1e-3, batch_size=8, merge=True, seed=0, precision="bf16"))
    assert result.merged is not None
    print(result.merged.id)


if __name__ == "__main__":
    main()
