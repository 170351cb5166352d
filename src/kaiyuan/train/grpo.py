"""``kaiyuan train grpo``: RL with verifiable rewards (GRPO) via TRL.

For each prompt a group of responses is sampled; each response's advantage is its reward relative to the
group's. Rewards are Python functions ``module:function(prompts, completions, references) -> list[float]``
(the same signature PPO uses); ``references`` are the dataset's reference answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Registry
from kaiyuan.models import load_model
from kaiyuan.train.common import (
    TrainOptions,
    TrainResult,
    finished_run,
    logged_rows,
    lora_config,
    register_trained,
    stage_inputs,
    train,
    trainer_arguments,
)
from kaiyuan.train.distributed import is_main_process
from kaiyuan.train.ppo import load_reward_function, prompt_of


@dataclass
class GRPOConfig(TrainOptions):
    reward_function: str = field(default="kaiyuan.train.ppo:dates_exact_reward", metadata={
        "help": "module:function(prompts, completions, references) -> list[float]; comma-separate several."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate."})
    num_generations: int = field(default=4, metadata={"help": "Responses sampled per prompt (the group)."})
    max_new_tokens: int = field(default=24, metadata={"help": "Longest sampled response."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature."})
    beta: float = field(default=0.0, metadata={"help": "KL weight towards the starting model (0: none)."})


def trl_reward(function: Callable[..., list[float]], name: str) -> Callable[..., list[float]]:
    """Adapt a kaiyuan reward function to TRL's calling convention (message-list completions)."""

    def reward(prompts: list, completions: list, reference: list[str], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(x) for x in function(prompts=prompts, completions=texts, references=reference)]

    reward.__name__ = name
    return reward


def run_grpo(cfg: GRPOConfig, registry: Registry | None = None) -> TrainResult | None:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    registry = registry or Registry()
    if cfg.batch_size % cfg.num_generations:
        raise KaiyuanError(f"batch_size ({cfg.batch_size}) must be a multiple of num_generations "
                           f"({cfg.num_generations})")
    functions = [trl_reward(load_reward_function(ref.strip()), ref.strip().rpartition(":")[2])
                 for ref in cfg.reward_function.split(",")]
    start, data, records, _ = stage_inputs(cfg.model, cfg.data, cfg.data_license, "GRPO", registry)
    if (done := finished_run(cfg, "grpo", registry, start, data)) is not None:
        return done if is_main_process() else None
    columns = {"prompt": [prompt_of(r) for r in records],
               "reference": [(r.chosen or [r.messages[-1]])[-1].content for r in records]}
    loaded = load_model(start, registry, for_training=True)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    torch.manual_seed(cfg.seed)
    common = {k: v for k, v in trainer_arguments(cfg, "grpo", registry).items()
              if k not in ("max_length", "dataset_num_proc")}
    args = TRLGRPOConfig(**common, num_generations=cfg.num_generations, max_completion_length=cfg.max_new_tokens,
                         temperature=cfg.temperature, beta=cfg.beta)
    trainer = GRPOTrainer(model=model, reward_funcs=functions, args=args, train_dataset=Dataset.from_dict(columns),
                          processing_class=tokenizer, peft_config=lora_config(cfg))
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started
    rows = logged_rows(trainer, ("loss", "reward", "reward_std", "kl", "learning_rate", "completions/mean_length"))
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "prompts": len(records), "seconds": round(seconds, 1), "final_loss": rows[-1]["loss"] if rows else None,
               "first_reward": rows[0].get("reward") if rows else None,
               "final_reward": rows[-1].get("reward") if rows else None}
    curves = tuple(key for key in ("loss", "reward", "kl") if any(key in r for r in rows))
    return register_trained(trainer, cfg, stage="grpo", start=start, parents=[Parent(data.id, "dataset")],
                            tokenizer=tokenizer, metrics=metrics, rows=rows, curves=curves, registry=registry)
