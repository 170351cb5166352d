import json

import pytest

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import generate_date_preferences
from kaiyuan.hub.registry import Registry
from kaiyuan.train.reward import RewardConfig, load_reward_model, run_reward, score_texts


@pytest.fixture
def pairs(tiny):
    return register_dataset(generate_date_preferences(20, seed=5), "date-pairs", "CC0-1.0", "test")


def test_reward_model_trains_registers_and_scores(tiny, pairs):
    result = run_reward(RewardConfig(model="tiny-llama", data="date-pairs", max_steps=3, batch_size=6,
                                     logging_steps=1, learning_rate=1e-3, heldout_fraction=0.25, seed=0))
    rows = [json.loads(line) for line in (result.artifact.path / "metrics.jsonl").read_text().splitlines()]
    assert [round(r["loss"], 3) for r in rows] == EXPECTED_LOSSES
    assert result.metrics["train_pairs"] == 15 and result.metrics["heldout_pairs"] == 5
    assert 0.0 <= result.metrics["heldout_pair_accuracy"] <= 1.0
    assert result.artifact.kind == "model"
    assert Registry().parents(result.artifact.id) == [(tiny.id, "finetune"), (pairs.id, "dataset")]
    model, tokenizer, _ = load_reward_model(result.artifact.id)
    assert model.config.kaiyuan_reward_model is True
    first, second = score_texts(model, tokenizer, ["hello world", "hello world"])
    assert first == second  # a reward is a deterministic scalar


EXPECTED_LOSSES = [0.696, 0.695, 0.693]  # ≈ ln 2 at the start: the score head starts near 0
