import json

import pytest

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import generate_dates
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.train.grpo import GRPOConfig, run_grpo


def digit_share(prompts, completions, references):
    """A dense toy reward for tests: the share of digits in the reply."""
    return [sum(ch.isdigit() for ch in c) / max(1, len(c)) for c in completions]


@pytest.fixture
def prompts(tiny):
    train, _ = generate_dates(8, 0, seed=4)
    return register_dataset(train, "dates-train", "CC0-1.0", "test")


def test_grpo_trains_with_verifiable_rewards_deterministically(tiny, prompts):
    cfg = dict(model="tiny-llama", data="dates-train", max_steps=2, batch_size=4, num_generations=4,
               max_new_tokens=6, logging_steps=1, learning_rate=1e-3, seed=0,
               reward_function="kaiyuan.train.ppo:dates_exact_reward,tests.train.test_grpo:digit_share")
    runs = [run_grpo(GRPOConfig(**cfg)) for _ in range(2)]
    rows = [[json.loads(line) for line in (r.artifact.path / "metrics.jsonl").read_text().splitlines()] for r in runs]
    assert rows[0] == rows[1] and [r["step"] for r in rows[0]] == [1, 2]
    assert all(0.0 <= r["reward"] <= 2.0 for r in rows[0])
    assert Registry().parents(runs[0].artifact.id) == [(tiny.id, "adapter"), (prompts.id, "dataset")]


def test_grpo_checks_group_size_before_work(tiny, prompts):
    with pytest.raises(KaiyuanError, match=r"batch_size \(6\) must be a multiple of num_generations \(4\)"):
        run_grpo(GRPOConfig(model="tiny-llama", data="dates-train", batch_size=6, num_generations=4))
