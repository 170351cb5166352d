"""Preference stages via TRL: ``kaiyuan train dpo`` (sigmoid / IPO / hinge), ``kto``, ``orpo``, ``simpo``.

The policy starts from a model (usually the SFT model). DPO and KTO pull towards a frozen reference: that
same starting model (with LoRA: the model with the adapter switched off), recorded as a parent. ORPO and
SimPO need no reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from kaiyuan.data.templates import render
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Registry
from kaiyuan.models import load_model
from kaiyuan.train.common import (
    TrainOptions,
    TrainResult,
    finished_run,
    length_limit,
    logged_rows,
    lora_config,
    register_trained,
    stage_inputs,
    train,
    trainer_arguments,
)
from kaiyuan.train.distributed import is_main_process

PREFERENCE_KEYS = ("loss", "learning_rate", "epoch", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
                   "rewards/margins", "kl", "log_odds_ratio", "nll_loss")


@dataclass
class DPOConfig(TrainOptions):
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    loss_type: Literal["sigmoid", "ipo", "hinge"] = field(default="sigmoid", metadata={
        "help": "DPO loss: sigmoid (DPO), ipo (IPO), hinge (SLiC)."})
    beta: float = field(default=0.1, metadata={"help": "Strength of the pull towards the reference model."})
    sft_weight: float = field(default=0.0, metadata={
        "help": "Add this weight × the chosen replies' NLL (RPO: keeps the chosen answers likely)."})


def preference_rows(records: list, tokenizer: object, max_length: int, source: str) -> dict[str, list]:
    """Columns for TRL (conversational prompt / chosen / rejected), after checking every pair's length."""
    columns: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    for record in records:
        if not record.is_preference:
            raise KaiyuanError(f"{source}:{record.line}: record: not a preference pair (needs prompt, chosen and "
                               "rejected)")
        prompt = [m.to_dict() for m in record.messages]
        for side in ("chosen", "rejected"):
            reply = [m.to_dict() for m in getattr(record, side)]
            n_tokens = len(tokenizer(render(tokenizer, prompt + reply), add_special_tokens=False)["input_ids"])
            if n_tokens > max_length:
                raise KaiyuanError(f"{source}:{record.line}: {side}: {n_tokens} tokens, longer than "
                                   f"max_length={max_length}")
        columns["prompt"].append(prompt)
        columns["chosen"].append([m.to_dict() for m in record.chosen])
        columns["rejected"].append([m.to_dict() for m in record.rejected])
    return columns


@dataclass
class KTOConfig(TrainOptions):
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    beta: float = field(default=0.1, metadata={"help": "Strength of the pull towards the reference model."})
    desirable_weight: float = field(default=1.0, metadata={"help": "Weight of chosen (desirable) replies."})
    undesirable_weight: float = field(default=1.0, metadata={"help": "Weight of rejected (undesirable) replies."})


@dataclass
class ORPOConfig(TrainOptions):
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    beta: float = field(default=0.1, metadata={"help": "Weight λ of the odds-ratio term (no reference model)."})


@dataclass
class SimPOConfig(TrainOptions):
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    beta: float = field(default=2.0, metadata={"help": "Reward scale β (length-normalized, no reference model)."})
    gamma_beta_ratio: float = field(default=0.5, metadata={"help": "Target margin γ as a fraction of β."})


def _trl_stage(algorithm: str, cfg: TrainOptions, registry: Registry) -> tuple[Any, Any, bool]:
    """(TRL config, TRL trainer class, uses a reference model) for an algorithm."""
    common = trainer_arguments(cfg, algorithm, registry)
    if algorithm == "dpo":
        from trl import DPOConfig as TRLConfig
        from trl import DPOTrainer

        assert isinstance(cfg, DPOConfig)
        losses = {"loss_type": [cfg.loss_type, "sft"], "loss_weights": [1.0, cfg.sft_weight]} if cfg.sft_weight else {
            "loss_type": [cfg.loss_type]}
        return TRLConfig(**common, **losses, beta=cfg.beta), DPOTrainer, True
    if algorithm == "kto":
        from trl import KTOConfig as TRLKTOConfig
        from trl import KTOTrainer

        assert isinstance(cfg, KTOConfig)
        return TRLKTOConfig(**common, beta=cfg.beta, desirable_weight=cfg.desirable_weight,
                            undesirable_weight=cfg.undesirable_weight), KTOTrainer, True
    if algorithm == "orpo":
        from trl.experimental.orpo import ORPOConfig as TRLORPOConfig
        from trl.experimental.orpo import ORPOTrainer

        assert isinstance(cfg, ORPOConfig)
        return TRLORPOConfig(**common, beta=cfg.beta), ORPOTrainer, False
    if algorithm == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        assert isinstance(cfg, SimPOConfig)
        return CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, beta=cfg.beta,
                         simpo_gamma=cfg.gamma_beta_ratio * cfg.beta), CPOTrainer, False
    raise ValueError(algorithm)


def unpaired(columns: dict[str, list]) -> dict[str, list]:
    """KTO learns from single replies marked desirable or not: each pair gives one of each."""
    out: dict[str, list] = {"prompt": [], "completion": [], "label": []}
    for prompt, chosen, rejected in zip(columns["prompt"], columns["chosen"], columns["rejected"], strict=True):
        out["prompt"] += [prompt, prompt]
        out["completion"] += [chosen, rejected]
        out["label"] += [True, False]
    return out


def run_preference(cfg: TrainOptions, algorithm: str, registry: Registry | None = None) -> TrainResult | None:
    import torch
    from datasets import Dataset

    registry = registry or Registry()
    start, data, records, where = stage_inputs(cfg.model, cfg.data, cfg.data_license, algorithm.upper(), registry,
                                        need_pairs=True)
    if (done := finished_run(cfg, algorithm, registry, start, data)) is not None:
        return done if is_main_process() else None
    loaded = load_model(start, registry, for_training=True)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = length_limit(cfg, model)
    columns = preference_rows(records, tokenizer, limit, where)
    if algorithm == "kto":
        columns = unpaired(columns)

    torch.manual_seed(cfg.seed)
    args, trainer_class, uses_reference = _trl_stage(algorithm, cfg, registry)
    args.max_length = limit
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                            processing_class=tokenizer, peft_config=lora_config(cfg))
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started

    rows = logged_rows(trainer, PREFERENCE_KEYS)
    last = rows[-1] if rows else {}
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "pairs": len(records), "seconds": round(seconds, 1), "final_loss": last.get("loss"),
               "reward_accuracy": last.get("rewards/accuracies"), "reward_margin": last.get("rewards/margins")}
    parents = [Parent(data.id, "dataset")] + ([Parent(start.id, "reference_model")] if uses_reference else [])
    curves = tuple(key for key in ("loss", "rewards/margins", "rewards/accuracies") if any(key in r for r in rows))
    return register_trained(trainer, cfg, stage=algorithm, start=start, parents=parents, tokenizer=tokenizer,
                            metrics=metrics, rows=rows, curves=curves, registry=registry)


def run_dpo(cfg: DPOConfig, registry: Registry | None = None) -> TrainResult | None:
    return run_preference(cfg, "dpo", registry)


def run_kto(cfg: KTOConfig, registry: Registry | None = None) -> TrainResult | None:
    return run_preference(cfg, "kto", registry)


def run_orpo(cfg: ORPOConfig, registry: Registry | None = None) -> TrainResult | None:
    return run_preference(cfg, "orpo", registry)


def run_simpo(cfg: SimPOConfig, registry: Registry | None = None) -> TrainResult | None:
    return run_preference(cfg, "simpo", registry)
