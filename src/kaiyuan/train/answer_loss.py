"""SFT loss that runs the LM head only where it is needed.

An assistant-only loss needs logits only at positions whose next token is trained on — a few answer
tokens out of a long prompt. TRL's SFTTrainer projects through the LM head at every position of the
batch; here the forward pass gets ``logits_to_keep`` = the positions that any sequence of the batch
trains on, so the head (and its backward) runs on those alone. The loss is the same token-mean
cross-entropy. It goes through the model's own forward, so DDP/DeepSpeed wrappers keep working.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from trl import SFTTrainer


def answer_positions_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed next-token cross-entropy over labelled positions divided by the token count."""
    labels = inputs["labels"]
    targets = labels[:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(-1)  # positions t whose label t+1 is trained
    forward_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**forward_inputs, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits.float()  # (batch, len(keep), vocab)
    kept_targets = targets[:, keep]
    token_loss_sum = F.cross_entropy(logits.reshape(-1, logits.size(-1)), kept_targets.reshape(-1),
                                     ignore_index=-100, reduction="sum")
    n_tokens = (kept_targets != -100).sum()
    denominator = n_tokens if num_items_in_batch is None else num_items_in_batch
    loss = token_loss_sum / torch.as_tensor(denominator, device=token_loss_sum.device).clamp(min=1)
    with torch.no_grad():
        correct = ((logits.argmax(-1) == kept_targets) & (kept_targets != -100)).sum()
    return loss, {"n_tokens": n_tokens, "correct": correct}


class AnswerOnlyHeadSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with :func:`answer_positions_loss` (logs ``mean_token_accuracy`` too)."""

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        if return_outputs:  # evaluation that wants logits: use TRL's path
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        loss, stats = answer_positions_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count spans all ranks
        n_tokens = self.accelerator.gather_for_metrics(stats["n_tokens"]).sum()
        correct = self.accelerator.gather_for_metrics(stats["correct"]).sum()
        self._metrics[mode]["mean_token_accuracy"].append((correct / n_tokens).item() if n_tokens > 0 else 0.0)
        if mode == "train" and "attention_mask" in inputs:
            self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
