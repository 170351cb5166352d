"""``kaiyuan train ppo``: RLHF step 3 — PPO against a reward, with a KL penalty to the frozen reference.

TRL no longer ships PPO, so this is a small one, after InstructGPT / Ziegler et al. (2019):

1. rollout: sample a response for each prompt of a batch (batched generation);
2. score: the reward model (or a Python reward function) scores each response; every response token
   also gets ``-kl_coef * (log π(token) - log π_ref(token))``;
3. advantages: GAE over the response tokens with a value head on the policy's last hidden state;
4. update: a few epochs of clipped policy loss + clipped value loss on minibatches;
5. the KL coefficient is fixed or adapted towards ``target_kl``.

With LoRA the reference is the same network with the adapter switched off (no second copy in memory).
"""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kaiyuan.data.synthetic import extract_answer
from kaiyuan.data.templates import end_of_turn_token_ids, prompt_text, render
from kaiyuan.errors import KaiyuanError
from kaiyuan.export.merge import merge_adapter
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import load_model
from kaiyuan.progress import progress_bar

if TYPE_CHECKING:
    import torch

    from kaiyuan.train.ppo_algorithm import AdaptiveKL, ValueHead

from kaiyuan.train.common import TrainResult, make_reproducible, plot_curve, stage_inputs, write_metrics
from kaiyuan.train.reward import load_reward_model, score_texts


@dataclass
class PPOConfig:
    model: str = field(metadata={"help": "Policy to start from (usually the SFT model); also the reference."})
    data: str = field(metadata={"help": "Prompts: a dataset of conversations or preference pairs."})
    reward_model: str | None = field(default=None, metadata={"help": "Registered reward model (train reward)."})
    reward_function: str | None = field(default=None, metadata={
        "help": "Python reward instead: module:function(prompts, completions, references) -> list[float]."})
    name: str | None = field(default=None, metadata={"help": "Name of the output artifact."})
    method: Literal["lora", "full"] = field(default="lora", metadata={"help": "lora or full."})
    steps: int = field(default=10, metadata={"help": "PPO iterations (rollout + update)."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per rollout."})
    mini_batch_size: int = field(default=4, metadata={"help": "Sequences per gradient step."})
    ppo_epochs: int = field(default=2, metadata={"help": "Passes over each rollout."})
    max_new_tokens: int = field(default=24, metadata={"help": "Longest sampled response."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of rollouts."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Adam learning rate."})
    kl_coef: float = field(default=0.05, metadata={"help": "Initial weight of the per-token KL penalty."})
    adaptive_kl: bool = field(default=False, metadata={"help": "Adapt kl_coef towards target_kl."})
    target_kl: float = field(default=6.0, metadata={"help": "Target KL (adaptive controller)."})
    kl_horizon: int = field(default=10000, metadata={"help": "Horizon of the adaptive KL controller."})
    gamma: float = field(default=1.0, metadata={"help": "Discount."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    cliprange: float = field(default=0.2, metadata={"help": "Policy ratio clip."})
    cliprange_value: float = field(default=0.2, metadata={"help": "Value clip."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    merge: bool = field(default=False, metadata={"help": "Also merge the adapter and register the model."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling, prompt order and init."})
    data_license: str = field(default="NOASSERTION", metadata={"help": "License of a data file (SPDX)."})


def prompt_of(record: Any) -> list[dict[str, str]]:
    """The conversation up to the reply to generate (trailing assistant turns removed)."""
    messages = [m.to_dict() for m in record.messages]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise KaiyuanError(f"line {record.line}: messages: no prompt before the assistant reply")
    return messages


def load_reward_function(ref: str) -> Callable[..., list[float]]:
    module_name, _, function_name = ref.partition(":")
    if not function_name:
        raise KaiyuanError(f"reward_function {ref!r}: write module:function")
    try:
        return getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise KaiyuanError(f"reward_function {ref!r}: {exc}") from None


def run_ppo(cfg: PPOConfig, registry: Registry | None = None) -> TrainResult:
    import torch

    from kaiyuan.train.ppo_algorithm import AdaptiveKL, ValueHead  # torch: loaded when training starts

    if (cfg.reward_model is None) == (cfg.reward_function is None):
        raise KaiyuanError("PPO needs exactly one of reward_model or reward_function")
    if cfg.batch_size % cfg.mini_batch_size:
        raise KaiyuanError(f"batch_size ({cfg.batch_size}) must be a multiple of mini_batch_size "
                           f"({cfg.mini_batch_size})")
    registry = registry or Registry()
    start, data, records, _ = stage_inputs(cfg.model, cfg.data, cfg.data_license, "PPO", registry)
    reward_artifact: Artifact | None = None
    if cfg.reward_model:

        reward_net, reward_tokenizer, reward_artifact = load_reward_model(cfg.reward_model, registry)
        if not reward_artifact.manifest.get("config", {}).get("stage") == "reward":
            raise KaiyuanError(f"{cfg.reward_model!r} was not trained by `kaiyuan train reward`")

        def score(prompts: list[list[dict]], completions: list[str], references: list[str]) -> list[float]:
            texts = [render(reward_tokenizer, p + [{"role": "assistant", "content": c}])
                     for p, c in zip(prompts, completions, strict=True)]
            return score_texts(reward_net, reward_tokenizer, texts)
    else:
        function = load_reward_function(cfg.reward_function or "")

        def score(prompts: list[list[dict]], completions: list[str], references: list[str]) -> list[float]:
            return [float(x) for x in function(prompts=prompts, completions=completions, references=references)]

    torch.manual_seed(cfg.seed)
    loaded = load_model(start, registry, for_training=True)
    tokenizer, policy = loaded.tokenizer, loaded.model
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                   target_modules="all-linear", task_type="CAUSAL_LM"))
        reference = None
    else:
        reference = load_model(start, registry).model
    value_head = ValueHead(policy.config.hidden_size)
    parameters = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=cfg.learning_rate)
    kl = AdaptiveKL(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon)
    stop_ids = end_of_turn_token_ids(tokenizer)
    prompts = [prompt_of(r) for r in records]
    references = [(r.chosen or [r.messages[-1]])[-1].content for r in records]
    order = list(range(len(records)))
    rng = random.Random(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    rows: list[dict[str, Any]] = []
    started = time.time()
    with progress_bar() as progress:
        task = progress.add_task("PPO", total=cfg.steps)
        for step in range(1, cfg.steps + 1):
            if len(order) < cfg.batch_size:
                order += rng.sample(range(len(records)), len(records))
            batch, order = order[: cfg.batch_size], order[cfg.batch_size:]
            row = ppo_step(cfg, policy, reference, value_head, optimizer, tokenizer, kl, stop_ids, generator,
                           [prompts[i] for i in batch], [references[i] for i in batch], score)
            rows.append({"step": step, **row})
            if cfg.adaptive_kl:
                kl.update(row["kl"], cfg.batch_size)
            progress.update(task, advance=1, description=f"PPO reward {row['reward']:.3f} kl {row['kl']:.3f}")
    seconds = time.time() - started

    metrics = {"steps": cfg.steps, "seconds": round(seconds, 1), "seconds_per_step": round(seconds / cfg.steps, 2),
               "final_reward": rows[-1]["reward"], "first_reward": rows[0]["reward"], "final_kl": rows[-1]["kl"],
               "final_loss": rows[-1]["loss"]}
    return register_ppo(cfg, policy, value_head, tokenizer, start, data, reward_artifact, rows, metrics, registry)


def ppo_step(cfg: PPOConfig, policy: Any, reference: Any, value_head: ValueHead, optimizer: Any, tokenizer: Any,
             kl: AdaptiveKL, stop_ids: list[int], generator: torch.Generator, prompts: list[list[dict]],
             references: list[str], score: Callable[..., list[float]]) -> dict[str, float]:
    import torch

    from kaiyuan.train.ppo_algorithm import gae, ppo_losses, response_logprobs_and_values, whiten

    # 1. rollout
    texts = [prompt_text(tokenizer, p) for p in prompts]
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    policy.eval()
    with torch.no_grad():
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        sequences = policy.generate(**encoded, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                                    max_new_tokens=cfg.max_new_tokens, eos_token_id=stop_ids,
                                    pad_token_id=tokenizer.pad_token_id)
    n_response = sequences.shape[1] - encoded["input_ids"].shape[1]
    response = sequences[:, -n_response:]
    is_stop = torch.isin(response, torch.tensor(stop_ids))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0  # tokens after the first end-of-turn
    mask = (~after_stop).float()
    attention_mask = torch.cat([encoded["attention_mask"], mask.long()], dim=1)
    completions = [tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response, mask, strict=True)]

    # 2. score, KL penalty, advantages
    scores = torch.tensor(score(prompts, completions, references), dtype=torch.float32)
    with torch.no_grad():
        old_logprobs, old_values = response_logprobs_and_values(policy, value_head, sequences, attention_mask,
                                                                n_response)
        if reference is None:
            with policy.disable_adapter():
                ref_logprobs, _ = response_logprobs_and_values(policy, None, sequences, attention_mask, n_response)
        else:
            ref_logprobs, _ = response_logprobs_and_values(reference, None, sequences, attention_mask, n_response)
    kl_per_token = (old_logprobs - ref_logprobs) * mask
    rewards = -kl.coef * kl_per_token
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
    advantages = whiten(advantages, mask)

    # 3. PPO epochs over minibatches
    policy.train()
    stats: dict[str, list[float]] = {"loss": [], "pg_loss": [], "vf_loss": [], "clipfrac": [], "approx_kl": []}
    for _ in range(cfg.ppo_epochs):
        permutation = torch.randperm(len(scores), generator=generator)
        for start in range(0, len(scores), cfg.mini_batch_size):
            idx = permutation[start: start + cfg.mini_batch_size]
            logprobs, values = response_logprobs_and_values(policy, value_head, sequences[idx], attention_mask[idx],
                                                            n_response)
            assert values is not None
            losses = ppo_losses(logprobs, old_logprobs[idx], advantages[idx], values, old_values[idx], returns[idx],
                                mask[idx], cfg.cliprange, cfg.cliprange_value)
            loss = losses["pg_loss"] + cfg.vf_coef * losses["vf_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            stats["loss"].append(loss.item())
            for key in ("pg_loss", "vf_loss", "clipfrac", "approx_kl"):
                stats[key].append(losses[key].item())
    return {"reward": scores.mean().item(), "kl": (kl_per_token.sum(dim=1)).mean().item(), "kl_coef": kl.coef,
            "response_length": mask.sum(dim=1).mean().item(),
            **{key: sum(v) / len(v) for key, v in stats.items()}}


def register_ppo(cfg: PPOConfig, policy: Any, value_head: ValueHead, tokenizer: Any, start: Artifact, data: Artifact,
                 reward_artifact: Artifact | None, rows: list[dict[str, Any]], metrics: dict[str, Any],
                 registry: Registry) -> TrainResult:
    from safetensors.torch import save_file


    parents = [Parent(start.id, "adapter" if cfg.method == "lora" else "finetune"), Parent(data.id, "dataset"),
               Parent(start.id, "reference_model")]
    if reward_artifact is not None:
        parents.append(Parent(reward_artifact.id, "reward_model"))
    name = cfg.name or f"{start.name}-ppo-{cfg.method}"
    with ArtifactWriter("adapter" if cfg.method == "lora" else "model", name, license=start.license,
                        source="kaiyuan train ppo", stage="ppo", registry=registry, parents=parents,
                        config={"stage": "ppo", **asdict(cfg)},
                        seed=cfg.seed, chat_template=tokenizer.chat_template, metrics=metrics) as writer:
        policy.save_pretrained(writer.path, safe_serialization=True)
        tokenizer.save_pretrained(writer.path)
        value_weights = {k: v.contiguous() for k, v in value_head.state_dict().items()}
        save_file(value_weights, writer.path / "value_head.safetensors")
        make_reproducible(writer.path, start.id)
        write_metrics(writer.path / "metrics.jsonl", rows)
        for key in ("reward", "kl", "loss"):
            plot_curve(rows, key, writer.path / f"{key}_curve.png", f"PPO {key} — {name}")
    artifact = writer.artifact
    assert artifact is not None
    merged = None
    if cfg.method == "lora" and cfg.merge:

        merged = merge_adapter(artifact, registry, model=policy, tokenizer=tokenizer)
    curves = {k: artifact.path / f"{k}_curve.png" for k in ("reward", "kl", "loss")}
    return TrainResult(artifact, merged, metrics, {k: v for k, v in curves.items() if v.is_file()})


def dates_exact_reward(prompts: list, completions: list[str], references: list[str]) -> list[float]:
    """A verifiable reward for the dates task: 1 when the first ISO date in the reply is the reference."""

    return [1.0 if extract_answer(c) == r else 0.0 for c, r in zip(completions, references, strict=True)]

