"""The training stages, once: the CLI (`kaiyuan train <name>`) and recipes (`stage: <name>`) both read this."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainingStage:
    name: str
    module: str
    config: str
    function: str
    help: str
    args: tuple[Any, ...] = ()
    outputs: tuple[str, ...] = ("artifact", "merged")

    def config_class(self) -> type:
        return getattr(importlib.import_module(self.module), self.config)

    def run(self, cfg: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.function)(cfg, *self.args)


TRAINING_STAGES = (
    TrainingStage("pretrain", "kaiyuan.train.pretrain", "PretrainConfig", "run_pretrain",
                  "Causal-LM training on raw text ({'text'} records or .txt), packed into blocks with per-document "
                  "attention; continued pretraining or --from-scratch."),
    TrainingStage("sft", "kaiyuan.train.sft", "SFTConfig", "run_sft",
                  "Supervised fine-tuning (LoRA or full) with assistant-only loss, via TRL."),
    TrainingStage("dpo", "kaiyuan.train.preference", "DPOConfig", "run_preference",
                  "Direct preference optimization (sigmoid / ipo / hinge) from prompt/chosen/rejected pairs, via "
                  "TRL; the starting model is the reference.", ("dpo",)),
    TrainingStage("kto", "kaiyuan.train.preference", "KTOConfig", "run_preference",
                  "KTO from desirable / undesirable replies (each pair gives one of each), via TRL.", ("kto",)),
    TrainingStage("orpo", "kaiyuan.train.preference", "ORPOConfig", "run_preference",
                  "ORPO: SFT plus an odds-ratio preference term, no reference model (TRL experimental).", ("orpo",)),
    TrainingStage("simpo", "kaiyuan.train.preference", "SimPOConfig", "run_preference",
                  "SimPO: length-normalized, reference-free preference loss (TRL experimental CPO).", ("simpo",)),
    TrainingStage("reward", "kaiyuan.train.reward", "RewardConfig", "run_reward",
                  "Pairwise reward model (Bradley–Terry) from chosen/rejected pairs, via TRL; reports held-out pair "
                  "accuracy.", outputs=("artifact",)),
    TrainingStage("ppo", "kaiyuan.train.ppo", "PPOConfig", "run_ppo",
                  "RLHF step 3: PPO against a reward model or a Python reward function, with a KL penalty to the "
                  "frozen starting model."),
    TrainingStage("grpo", "kaiyuan.train.grpo", "GRPOConfig", "run_grpo",
                  "GRPO with verifiable reward functions (groups of sampled replies), via TRL."),
)
