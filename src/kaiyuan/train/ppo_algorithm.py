"""PPO's arithmetic in torch (GAE, whitening, the clipped losses, the adaptive KL controller, the value head).

Imported by :func:`kaiyuan.train.ppo.run_ppo` when training starts, like torch itself: the CLI never loads it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over response tokens. Shapes (batch, T); ``mask`` 1 on real tokens.

    Returns (advantages, returns); both are 0 where ``mask`` is 0."""
    advantages = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = (values * mask).sum() / mask.sum()
    var = (((values - mean) ** 2) * mask).sum() / mask.sum()
    return (values - mean) * torch.rsqrt(var + 1e-8) * mask


def ppo_losses(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
               old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange: float,
               cliprange_value: float) -> dict[str, torch.Tensor]:
    """Clipped surrogate policy loss and clipped value loss, averaged over real tokens."""
    n = mask.sum()
    ratio = torch.exp(logprobs - old_logprobs)
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange))
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    vf = 0.5 * torch.max((values - returns) ** 2, (clipped_values - returns) ** 2)
    return {"pg_loss": (pg * mask).sum() / n, "vf_loss": (vf * mask).sum() / n,
            "clipfrac": (((ratio - 1).abs() > cliprange).float() * mask).sum() / n,
            "approx_kl": (0.5 * (logprobs - old_logprobs) ** 2 * mask).sum() / n}


class AdaptiveKL:
    """Ziegler et al.'s controller: move the coefficient so the measured KL approaches the target."""

    def __init__(self, coef: float, target: float, horizon: int) -> None:
        self.coef, self.target, self.horizon = coef, target, horizon

    def update(self, kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, kl / self.target - 1))
        self.coef *= 1 + error * n_steps / self.horizon


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden).squeeze(-1)


def response_logprobs_and_values(policy: Any, value_head: ValueHead | None, sequences: torch.Tensor,
                                 attention_mask: torch.Tensor, n_response: int
                                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probabilities of the response tokens (the last ``n_response`` positions) and the values of
    the states they were sampled in. Only those positions go through the LM head."""
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # as generate() numbers left-padded prompts
    outputs = policy(input_ids=sequences, attention_mask=attention_mask, position_ids=positions,
                     logits_to_keep=n_response + 1, output_hidden_states=value_head is not None, use_cache=False)
    logits = outputs.logits[:, :-1].float()
    tokens = sequences[:, -n_response:]
    logprobs = torch.gather(F.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)
    values = None
    if value_head is not None:
        values = value_head(outputs.hidden_states[-1][:, -n_response - 1: -1].float())
    return logprobs, values
