import json

import pytest
import torch

from kaiyuan.data.datasets import register_dataset
from kaiyuan.data.synthetic import generate_date_preferences, generate_dates
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Registry
from kaiyuan.train.ppo import PPOConfig, run_ppo
from kaiyuan.train.ppo_algorithm import AdaptiveKL, gae, ppo_losses
from kaiyuan.train.reward import RewardConfig, run_reward


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: δ2 = 1 - 0.3 = 0.7; δ1 = 0 + 0.3 - 0.2 = 0.1 → A1 = 0.1 + 0.5·0.7 = 0.45;
    #        δ0 = 0 + 0.2 - 0.1 = 0.1 → A0 = 0.1 + 0.5·0.45 = 0.325
    # row 1: one real token: A0 = 0.5 - 0.4 = 0.1 (masked next values do not leak in)
    torch.testing.assert_close(advantages, torch.tensor([[0.325, 0.45, 0.7], [0.1, 0.0, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.425, 0.65, 1.0], [0.5, 0.0, 0.0]]))


def test_clipped_losses_by_hand():
    logprobs = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5 against old log-prob 0
    old = torch.zeros(1, 2)
    advantages = torch.tensor([[1.0, -1.0]])
    values, old_values, returns = torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2), torch.tensor([[2.0, 0.0]])
    out = ppo_losses(logprobs, old, advantages, values, old_values, returns, torch.ones(1, 2), 0.2, 0.2)
    # token 0: max(-1.5, -1.2) = -1.2; token 1: max(0.5, 0.8) = 0.8 → mean -0.2
    assert out["pg_loss"].item() == pytest.approx(-0.2)
    # value: max((1-2)², (0.2-2)²)/2 = 1.62 and 0 → mean 0.81
    assert out["vf_loss"].item() == pytest.approx(0.81)
    assert out["clipfrac"].item() == pytest.approx(1.0)


def test_adaptive_kl_moves_towards_target():
    controller = AdaptiveKL(0.1, target=6.0, horizon=100)
    controller.update(kl=12.0, n_steps=10)  # too much KL: error clipped to +0.2
    assert controller.coef == pytest.approx(0.1 * 1.02)
    controller.update(kl=0.0, n_steps=10)
    assert controller.coef == pytest.approx(0.1 * 1.02 * 0.98)


@pytest.fixture
def prompts(tiny):
    train, _ = generate_dates(16, 0, seed=3)
    return register_dataset(train, "dates-train", "CC0-1.0", "test")


def ppo(**overrides):
    base = dict(model="tiny-llama", data="dates-train", reward_function="kaiyuan.train.ppo:dates_exact_reward",
                steps=3, batch_size=4, mini_batch_size=2, max_new_tokens=6, learning_rate=1e-3, seed=1)
    return run_ppo(PPOConfig(**{**base, **overrides}))


def test_ppo_with_a_reward_function_is_deterministic_and_starts_at_zero_kl(tiny, prompts):
    first, second = ppo(), ppo()
    rows = [json.loads(line) for line in (first.artifact.path / "metrics.jsonl").read_text().splitlines()]
    assert (first.artifact.path / "metrics.jsonl").read_text() == (second.artifact.path / "metrics.jsonl").read_text()
    assert rows[0]["kl"] == 0.0  # the LoRA policy equals the reference before its first update
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"reward", "kl", "loss"} == set(first.curves)
    assert Registry().parents(first.artifact.id) == [(tiny.id, "adapter"), (prompts.id, "dataset"),
                                                     (tiny.id, "reference_model")]
    assert (first.artifact.path / "value_head.safetensors").is_file()


def test_ppo_with_a_registered_reward_model(tiny, prompts):
    register_dataset(generate_date_preferences(8, seed=1), "pairs", "CC0-1.0", "test")
    reward = run_reward(RewardConfig(model="tiny-llama", data="pairs", max_steps=1, batch_size=4,
                                     heldout_fraction=0.0))
    result = ppo(reward_function=None, reward_model=reward.artifact.id, steps=1, merge=True)
    parents = Registry().parents(result.artifact.id)
    assert (reward.artifact.id, "reward_model") in parents
    assert result.merged is not None and result.metrics["steps"] == 1


def test_ppo_needs_one_reward(tiny, prompts):
    with pytest.raises(KaiyuanError, match="exactly one of reward_model or reward_function"):
        ppo(reward_function=None)


def test_scored_logprobs_are_the_sampling_distribution(tiny):
    """Left-padded prompts are scored with the positions generate() used, so PPO's ratios are on-policy."""
    from kaiyuan.models import load_model
    from kaiyuan.train.ppo_algorithm import response_logprobs_and_values

    loaded = load_model("tiny-llama")
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"
    encoded = tokenizer(["<|im_start|>user\nhi<|im_end|>\n", "<|im_start|>user\na longer prompt here<|im_end|>\n"],
                        return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(0)
    out = loaded.model.generate(**encoded, do_sample=True, top_k=0, top_p=1.0, max_new_tokens=5, min_new_tokens=5,
                                output_logits=True, return_dict_in_generate=True,
                                pad_token_id=tokenizer.pad_token_id)
    n = len(out.logits)  # raw logits: before min_new_tokens masks the end-of-sequence token
    expected = torch.stack([torch.log_softmax(s.float(), -1) for s in out.logits], 1)
    expected = torch.gather(expected, 2, out.sequences[:, -n:].unsqueeze(-1)).squeeze(-1)
    mask = torch.cat([encoded["attention_mask"], torch.ones(2, n, dtype=torch.long)], 1)
    with torch.no_grad():
        logprobs, _ = response_logprobs_and_values(loaded.model, None, out.sequences, mask, n)
    torch.testing.assert_close(logprobs, expected, atol=1e-4, rtol=1e-4)
