"""``kaiyuan train sft``: supervised fine-tuning (LoRA or full) with assistant-only loss, via TRL.

The data is rendered with the model's own chat template and tokenized here, with a label mask that
covers exactly the assistant turns (see :mod:`kaiyuan.data.templates`); TRL's ``SFTTrainer`` trains on
those pre-tokenized examples and turns the mask into ``-100`` labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kaiyuan.data.templates import encode_chat
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Registry
from kaiyuan.models import load_model
from kaiyuan.train.common import (
    TrainOptions,
    TrainResult,
    check_method,
    finished_run,
    freeze_all_but_last,
    length_limit,
    logged_rows,
    lora_config,
    quantization_config,
    register_trained,
    stage_inputs,
    train,
    trainer_arguments,
)
from kaiyuan.train.distributed import is_main_process


@dataclass
class SFTConfig(TrainOptions):
    answer_only_head: bool = field(default=True, metadata={
        "help": "Run the LM head only at trained positions (same loss, faster); off: TRL's own loss."})
    packing: bool = field(default=False, metadata={
        "help": "Padding-free packing of examples into max_length rows (per-example attention via position ids)."})


SFTResult = TrainResult


def tokenize_records(tokenizer: Any, records: list, max_length: int, source: str) -> dict[str, list]:
    """Pre-tokenized columns for TRL: ``input_ids`` and ``assistant_masks``."""
    input_ids, masks = [], []
    for record in records:
        encoded = encode_chat(tokenizer, record.as_chat())
        if len(encoded.input_ids) > max_length:
            raise KaiyuanError(f"{source}:{record.line}: messages: {len(encoded.input_ids)} tokens, longer "
                               f"than max_length={max_length}")
        if not any(encoded.assistant_masks):
            raise KaiyuanError(f"{source}:{record.line}: messages: no assistant tokens to train on")
        input_ids.append(encoded.input_ids)
        masks.append(encoded.assistant_masks)
    return {"input_ids": input_ids, "assistant_masks": masks}


def run_sft(cfg: SFTConfig, registry: Registry | None = None) -> TrainResult | None:
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    registry = registry or Registry()
    check_method(cfg)
    base, data, records, where = stage_inputs(cfg.model, cfg.data, cfg.data_license, "SFT", registry)
    if any(r.text is not None for r in records):
        raise KaiyuanError(f"dataset {data.id} holds raw text; use `kaiyuan train pretrain` (SFT needs conversations)")
    if any(r.is_preference for r in records):
        raise KaiyuanError(f"dataset {data.id} holds preference pairs; SFT needs conversations")
    if (done := finished_run(cfg, "sft", registry, base, data)) is not None:
        return done if is_main_process() else None

    loaded = load_model(base, registry, for_training=True, quantization_config=quantization_config(cfg))
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    limit = length_limit(cfg, model)
    columns = tokenize_records(tokenizer, records, limit, where)

    if cfg.method == "freeze":
        freeze_all_but_last(model, cfg.freeze_last_n)
    torch.manual_seed(cfg.seed)
    trainer_class = SFTTrainer
    if cfg.answer_only_head:
        from kaiyuan.train.answer_loss import AnswerOnlyHeadSFTTrainer

        trainer_class = AnswerOnlyHeadSFTTrainer
    packing = {"packing": True, "packing_strategy": "bfd"} if cfg.packing else {}
    arguments = {**trainer_arguments(cfg, "sft", registry), "max_length": limit, **packing}
    trainer = trainer_class(model=model, args=TRLSFTConfig(**arguments),
                            train_dataset=Dataset.from_dict(columns), processing_class=tokenizer,
                            peft_config=lora_config(cfg))
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started

    rows = logged_rows(trainer, ("loss", "learning_rate", "epoch", "mean_token_accuracy"))
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "examples": len(records), "tokens_per_epoch": sum(len(ids) for ids in columns["input_ids"]),
               "seconds": round(seconds, 1), "final_loss": rows[-1]["loss"] if rows else None}
    return register_trained(trainer, cfg, stage="sft", start=base, parents=[Parent(data.id, "dataset")],
                            tokenizer=tokenizer, metrics=metrics, rows=rows, registry=registry)
