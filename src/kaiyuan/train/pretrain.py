"""``kaiyuan train pretrain``: causal-LM training on raw text (continued pretraining, or from scratch).

Documents are tokenized, each followed by EOS, and packed into fixed-length blocks. Position ids restart
at every document; with no attention mask, transformers then builds one causal mask per document
(``find_packed_sequence_indices``; only without a KV cache, so training runs with ``use_cache=False``),
so a token never attends across a document boundary. The first token
of a document is not a training target (nothing in its block predicts it). Attention backends that
cannot mask per document are named in a warning and the run notes it in its metrics.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

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

PER_DOCUMENT_BACKENDS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class PretrainConfig(TrainOptions):
    method: Literal["lora", "full"] = field(default="full", metadata={"help": "full (usual) or lora."})
    learning_rate: float = field(default=3e-4, metadata={"help": "Peak learning rate."})
    block_size: int = field(default=512, metadata={"help": "Tokens per packed block."})
    from_scratch: bool = field(default=False, metadata={
        "help": "Start from random weights with the model's config and tokenizer (not continued pretraining)."})


def pack_documents(token_lists: list[list[int]], block_size: int, eos_id: int, pad_id: int) -> dict[str, list]:
    """Fixed-length blocks with per-document position ids; labels skip each document's first token and
    the padding of the last block."""
    ids: list[int] = []
    positions: list[int] = []
    labels: list[int] = []
    for tokens in token_lists:
        document = tokens + [eos_id]
        ids += document
        positions += list(range(len(document)))
        labels += [-100] + document[1:]
    blocks: dict[str, list] = {"input_ids": [], "position_ids": [], "labels": []}
    for start in range(0, len(ids), block_size):
        chunk_ids, chunk_pos, chunk_labels = (ids[start: start + block_size], positions[start: start + block_size],
                                              labels[start: start + block_size])
        if chunk_pos and chunk_pos[0] != 0:  # a document continued from the previous block starts afresh here
            chunk_labels = [-100] + chunk_labels[1:]
            offset = chunk_pos[0]
            run_end = next((i for i, p in enumerate(chunk_pos) if p == 0), len(chunk_pos))
            chunk_pos = [p - offset if i < run_end else p for i, p in enumerate(chunk_pos)]
        pad = block_size - len(chunk_ids)
        if pad:
            last = chunk_pos[-1] if chunk_pos else -1
            chunk_ids += [pad_id] * pad
            chunk_pos += list(range(last + 1, last + 1 + pad))
            chunk_labels += [-100] * pad
        blocks["input_ids"].append(chunk_ids)
        blocks["position_ids"].append(chunk_pos)
        blocks["labels"].append(chunk_labels)
    return blocks


class PackedCollator:
    """Stack equal-length blocks; no attention mask, so position ids delimit the documents."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {key: torch.tensor([f[key] for f in features]) for key in ("input_ids", "position_ids", "labels")}


def run_pretrain(cfg: PretrainConfig, registry: Registry | None = None) -> TrainResult | None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    registry = registry or Registry()
    start, data, records, _ = stage_inputs(cfg.model, cfg.data, cfg.data_license, "pretraining", registry)
    texts = [r.text for r in records if r.text is not None]
    if not texts:
        raise KaiyuanError(f"dataset {data.id} has no raw text (records with a 'text' field, or .txt files)")
    if (done := finished_run(cfg, "pretrain", registry, start, data)) is not None:
        return done if is_main_process() else None
    torch.manual_seed(cfg.seed)
    loaded = load_model(start, registry, for_training=True)
    tokenizer, model = loaded.tokenizer, loaded.model
    if cfg.from_scratch:
        model = AutoModelForCausalLM.from_config(model.config)
    limit = int(getattr(model.config, "max_position_embeddings", cfg.block_size) or cfg.block_size)
    if cfg.block_size > limit:
        raise KaiyuanError(f"block_size {cfg.block_size} is longer than the model allows ({limit} positions)")
    # transformers derives per-document masks from position ids only without a KV cache
    model.config.use_cache = False
    backend = getattr(model.config, "_attn_implementation", None) or "eager"
    per_document = backend in PER_DOCUMENT_BACKENDS
    if not per_document:
        print(f"warning: attention backend {backend!r} cannot mask per document: packed documents will attend "
              "across their boundaries", file=sys.stderr)
    tokens = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    blocks = pack_documents(tokens, cfg.block_size, eos, pad)

    skip = ("max_length", "dataset_num_proc")
    common = {k: v for k, v in trainer_arguments(cfg, "pretrain", registry).items() if k not in skip}
    args = TrainingArguments(**common, remove_unused_columns=False)
    peft = lora_config(cfg)
    if peft is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(blocks), data_collator=PackedCollator())
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started
    rows = logged_rows(trainer, ("loss", "learning_rate", "epoch", "grad_norm"))
    n_tokens = sum(len(t) + 1 for t in tokens)
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step, "documents": len(texts),
               "tokens": n_tokens, "blocks": len(blocks["input_ids"]), "seconds": round(seconds, 1),
               "tokens_per_second": round(n_tokens * max(cfg.epochs, 0) / seconds, 1) if seconds else None,
               "per_document_attention": per_document, "attention_backend": backend,
               "final_loss": rows[-1]["loss"] if rows else None}
    trainer.processing_class = tokenizer
    (model.get_base_model() if peft is not None else model).config.use_cache = True  # saved for inference
    return register_trained(trainer, cfg, stage="pretrain", start=start, parents=[Parent(data.id, "dataset")],
                            tokenizer=tokenizer, metrics=metrics, rows=rows, registry=registry)
