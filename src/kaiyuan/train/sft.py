"""``kaiyuan train sft``: supervised fine-tuning (LoRA or full) with assistant-only loss, via TRL.

The data is rendered with the model's own chat template and tokenized here, with a label mask that
covers exactly the assistant turns (see :mod:`kaiyuan.data.templates`); TRL's ``SFTTrainer`` trains on
those pre-tokenized examples and turns the mask into ``-100`` labels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.data.templates import encode_chat
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import load_model, resolve_model
from kaiyuan.train.common import dataset_records, plot_curve, resolve_dataset, use_cpu, write_metrics


@dataclass
class SFTConfig:
    model: str = field(metadata={"help": "Base model reference (registry id/name, dir, .gguf, hub id)."})
    data: str = field(metadata={"help": "Training data: a registered dataset or a JSON/JSONL file."})
    name: str | None = field(default=None, metadata={"help": "Name of the output artifact."})
    method: Literal["lora", "full"] = field(default="lora", metadata={"help": "lora or full."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the data."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: epochs)."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of steps for LR warm-up."})
    batch_size: int = field(default=8, metadata={"help": "Examples per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps to accumulate."})
    max_length: int = field(default=1024, metadata={"help": "Longest tokenized example allowed."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "Comma list or all-linear."})
    merge: bool = field(default=False, metadata={"help": "Also merge the adapter and register the model."})
    answer_only_head: bool = field(default=True, metadata={
        "help": "Run the LM head only at trained positions (same loss, faster); off: TRL's own loss."})
    logging_steps: int = field(default=5, metadata={"help": "Log loss every N steps."})
    seed: int = field(default=42, metadata={"help": "Seed for data order and initialization."})
    data_license: str = field(default="NOASSERTION", metadata={"help": "License of a data file (SPDX)."})


@dataclass
class SFTResult:
    artifact: Artifact
    merged: Artifact | None
    metrics: dict[str, Any]
    loss_curve_png: Path | None

    def summary(self) -> dict[str, Any]:
        return {"artifact_id": self.artifact.id, "kind": self.artifact.kind,
                "merged_model_id": self.merged.id if self.merged else None, "metrics": self.metrics,
                "loss_curve_png": str(self.loss_curve_png) if self.loss_curve_png else None}


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


def run_sft(cfg: SFTConfig, registry: Registry | None = None) -> SFTResult:
    import torch
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    from kaiyuan.home import kaiyuan_home

    registry = registry or Registry()
    base = resolve_model(cfg.model, registry)
    if base.kind != "model":
        raise KaiyuanError(f"{cfg.model!r} is an adapter; train on a model (merge the adapter first)")
    data = resolve_dataset(cfg.data, registry, license=cfg.data_license)
    records = dataset_records(data)
    if not records:
        raise KaiyuanError(f"dataset {data.id} has no records")
    if any(r.is_preference for r in records):
        raise KaiyuanError(f"dataset {data.id} holds preference pairs; SFT needs conversations")

    loaded = load_model(base, registry, for_training=True)
    tokenizer, model = loaded.tokenizer, loaded.model
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    columns = tokenize_records(tokenizer, records, cfg.max_length, f"{data.id}/data.jsonl")
    train_dataset = Dataset.from_dict(columns)

    peft_config = None
    if cfg.method == "lora":
        from peft import LoraConfig

        targets: str | list[str] = (cfg.lora_target_modules if cfg.lora_target_modules == "all-linear"
                                    else [t.strip() for t in cfg.lora_target_modules.split(",")])
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=targets, task_type="CAUSAL_LM")
    run_dir = kaiyuan_home() / "runs" / f"sft-{time.strftime('%Y%m%d-%H%M%S')}"
    args = TRLSFTConfig(
        output_dir=str(run_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length, logging_steps=cfg.logging_steps, logging_first_step=True,
        save_strategy="no", report_to="none",
        seed=cfg.seed, data_seed=cfg.seed, use_cpu=use_cpu(), bf16=False, fp16=False,
        dataset_num_proc=None, disable_tqdm=False,
    )
    torch.manual_seed(cfg.seed)
    trainer_class = SFTTrainer
    if cfg.answer_only_head:
        from kaiyuan.train.answer_loss import AnswerOnlyHeadSFTTrainer

        trainer_class = AnswerOnlyHeadSFTTrainer
    trainer = trainer_class(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    started = time.time()
    train_output = trainer.train()
    seconds = time.time() - started

    rows = [{"step": h["step"], "loss": h["loss"], "learning_rate": h.get("learning_rate"),
             "epoch": h.get("epoch")} for h in trainer.state.log_history if "loss" in h]
    n_tokens = sum(len(ids) for ids in columns["input_ids"])
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "examples": len(records), "tokens_per_epoch": n_tokens, "seconds": round(seconds, 1),
               "final_loss": rows[-1]["loss"] if rows else None}
    kind = "adapter" if cfg.method == "lora" else "model"
    relation = "adapter" if cfg.method == "lora" else "finetune"
    name = cfg.name or f"{base.name}-sft-{cfg.method}"
    with ArtifactWriter(kind, name, license=base.license, source="kaiyuan train sft",
                        parents=[Parent(base.id, relation), Parent(data.id, "dataset")],
                        config={"stage": "sft", **asdict(cfg)}, seed=cfg.seed,
                        chat_template=tokenizer.chat_template, metrics=metrics) as writer:
        trainer.save_model(str(writer.path))
        adapter_config = writer.path / "adapter_config.json"
        if adapter_config.is_file():  # point at the registered base, not a local path
            config = json.loads(adapter_config.read_text())
            config["base_model_name_or_path"] = base.id
            adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        write_metrics(writer.path / "metrics.jsonl", rows)
        plot_curve(rows, "loss", writer.path / "loss_curve.png", f"SFT loss — {name}")
    artifact = writer.artifact
    assert artifact is not None

    merged = None
    if cfg.method == "lora" and cfg.merge:
        from kaiyuan.export.merge import merge_adapter

        merged = merge_adapter(artifact, registry, model=trainer.model, tokenizer=tokenizer)
    png = artifact.path / "loss_curve.png"
    return SFTResult(artifact=artifact, merged=merged, metrics=metrics,
                     loss_curve_png=png if png.is_file() else None)
