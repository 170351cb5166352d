"""``kaiyuan train dpo``: direct preference optimization (sigmoid / IPO / hinge losses) via TRL.

The policy starts from a model (usually the SFT model); the frozen reference is that same starting
model (with LoRA: the model with the adapter switched off). Both are recorded as parents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from kaiyuan.data.templates import render
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Registry
from kaiyuan.models import load_model, resolve_model
from kaiyuan.train.common import (
    TrainOptions,
    TrainResult,
    dataset_records,
    logged_rows,
    lora_config,
    register_trained,
    resolve_dataset,
    train,
    trainer_arguments,
)

DPO_KEYS = ("loss", "learning_rate", "epoch", "rewards/chosen", "rewards/rejected", "rewards/accuracies",
            "rewards/margins")


@dataclass
class DPOConfig(TrainOptions):
    learning_rate: float = field(default=5e-5, metadata={"help": "Peak learning rate."})
    loss_type: Literal["sigmoid", "ipo", "hinge"] = field(default="sigmoid", metadata={
        "help": "DPO loss: sigmoid (DPO), ipo (IPO), hinge (SLiC)."})
    beta: float = field(default=0.1, metadata={"help": "Strength of the pull towards the reference model."})


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


def run_dpo(cfg: DPOConfig, registry: Registry | None = None) -> TrainResult:
    import torch
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    registry = registry or Registry()
    start = resolve_model(cfg.model, registry)
    if start.kind != "model":
        raise KaiyuanError(f"{cfg.model!r} is an adapter; start DPO from a model (merge the adapter first)")
    data = resolve_dataset(cfg.data, registry, license=cfg.data_license)
    records = dataset_records(data)
    if not records:
        raise KaiyuanError(f"dataset {data.id} has no records")
    loaded = load_model(start, registry, for_training=True)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    columns = preference_rows(records, tokenizer, cfg.max_length, f"{data.id}/data.jsonl")

    torch.manual_seed(cfg.seed)
    args = TRLDPOConfig(**trainer_arguments(cfg, "dpo"), loss_type=[cfg.loss_type], beta=cfg.beta)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_dict(columns),
                         processing_class=tokenizer, peft_config=lora_config(cfg))
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started

    rows = logged_rows(trainer, DPO_KEYS)
    last = rows[-1] if rows else {}
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "pairs": len(records), "seconds": round(seconds, 1), "final_loss": last.get("loss"),
               "reward_accuracy": last.get("rewards/accuracies"), "reward_margin": last.get("rewards/margins")}
    return register_trained(trainer, cfg, stage="dpo", start=start,
                            parents=[Parent(data.id, "dataset"), Parent(start.id, "reference_model")],
                            tokenizer=tokenizer, metrics=metrics, rows=rows,
                            curves=("loss", "rewards/margins", "rewards/accuracies"), registry=registry)
