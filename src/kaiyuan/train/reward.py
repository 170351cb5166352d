"""``kaiyuan train reward``: a pairwise reward model (Bradley–Terry loss) via TRL's RewardTrainer.

InstructGPT's step 2. The model gets a scalar head (``AutoModelForSequenceClassification``, one label);
the loss is ``-log σ(r(chosen) - r(rejected))``. A held-out fraction of the pairs measures pair accuracy
(the share of pairs whose chosen reply scores higher). The registered artifact is a full model (LoRA is
merged) whose config says ``kaiyuan_reward_model: true``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from kaiyuan.data.templates import render
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import load_tokenizer, resolve_model
from kaiyuan.progress import progress_bar
from kaiyuan.train.common import (
    TrainOptions,
    TrainResult,
    finished_run,
    length_limit,
    logged_rows,
    lora_config,
    mark_complete,
    plot_curve,
    stage_inputs,
    train,
    trainer_arguments,
    write_metrics,
)
from kaiyuan.train.distributed import is_main_process
from kaiyuan.train.preference import preference_rows


@dataclass
class RewardConfig(TrainOptions):
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate."})
    heldout_fraction: float = field(default=0.1, metadata={"help": "Pairs kept out to measure pair accuracy."})


def load_reward_model(ref: str | Artifact, registry: Registry | None = None) -> tuple[Any, Any, Artifact]:
    """A reward model, its tokenizer and artifact (the model returns one logit: the reward)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    artifact = ref if isinstance(ref, Artifact) else resolve_model(ref, registry)
    model = AutoModelForSequenceClassification.from_pretrained(artifact.path, num_labels=1, dtype=torch.float32,  # nosec B615: a local artifact directory
                                                               use_safetensors=True)
    tokenizer = load_tokenizer(artifact.path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer, artifact


def score_texts(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 16) -> list[float]:
    import torch

    tokenizer.padding_side = "right"
    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start: start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            scores += model(**batch).logits[:, 0].float().tolist()
    return scores


def pair_accuracy(model: Any, tokenizer: Any, columns: dict[str, list]) -> float:

    texts = []
    for prompt, chosen, rejected in zip(columns["prompt"], columns["chosen"], columns["rejected"], strict=True):
        texts += [render(tokenizer, prompt + chosen), render(tokenizer, prompt + rejected)]
    with progress_bar() as progress:
        task = progress.add_task("pair accuracy", total=1)
        scores = score_texts(model, tokenizer, texts)
        progress.advance(task)
    wins = sum(scores[i] > scores[i + 1] for i in range(0, len(scores), 2))
    return wins / max(1, len(scores) // 2)


def run_reward(cfg: RewardConfig, registry: Registry | None = None) -> TrainResult | None:
    import torch
    from datasets import Dataset
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer


    registry = registry or Registry()
    if not 0 <= cfg.heldout_fraction < 1:
        raise KaiyuanError(f"heldout_fraction must be in [0, 1), got {cfg.heldout_fraction}")
    if cfg.deepspeed == "zero3":
        raise KaiyuanError("train reward: --deepspeed zero3 shards the weights, and the held-out accuracy and the "
                           "saved reward model need them whole; use --deepspeed zero2 or DDP (--nproc)")
    start, data, records, where = stage_inputs(cfg.model, cfg.data, cfg.data_license, "the reward model", registry,
                                        need_pairs=True)
    if (done := finished_run(cfg, "reward", registry, start, data)) is not None:
        return done if is_main_process() else None
    torch.manual_seed(cfg.seed)
    model, tokenizer, _ = load_reward_model(start, registry)
    model.train()
    columns = preference_rows(records, tokenizer, length_limit(cfg, model), where)
    order = list(range(len(records)))
    random.Random(cfg.seed).shuffle(order)
    n_heldout = int(len(order) * cfg.heldout_fraction)
    heldout_idx, train_idx = sorted(order[:n_heldout]), sorted(order[n_heldout:])
    if not train_idx:
        raise KaiyuanError(f"dataset {data.id} has no pairs left to train on")
    train_columns = {k: [v[i] for i in train_idx] for k, v in columns.items()}
    heldout_columns = {k: [v[i] for i in heldout_idx] for k, v in columns.items()}

    peft = lora_config(cfg)
    if peft is not None:
        peft.task_type = "SEQ_CLS"
    trainer = RewardTrainer(model=model, args=TRLRewardConfig(**trainer_arguments(cfg, "reward", registry)),
                            train_dataset=Dataset.from_dict(train_columns), processing_class=tokenizer,
                            peft_config=peft)
    started = time.time()
    train_output = train(trainer, cfg)
    seconds = time.time() - started
    if not trainer.is_world_process_zero():
        return None
    rows = logged_rows(trainer, ("loss", "learning_rate", "epoch", "accuracy", "margin"))
    trained = trainer.model.merge_and_unload() if peft is not None else trainer.model
    trained.eval()
    accuracy = pair_accuracy(trained, tokenizer, heldout_columns) if heldout_idx else None
    metrics = {"train_loss": train_output.training_loss, "steps": trainer.state.global_step,
               "train_pairs": len(train_idx), "heldout_pairs": len(heldout_idx), "heldout_pair_accuracy": accuracy,
               "seconds": round(seconds, 1), "final_loss": rows[-1]["loss"] if rows else None}
    trained.config.kaiyuan_reward_model = True
    name = cfg.name or f"{start.name}-reward"
    from dataclasses import asdict

    with registry.writer("model", name, license=start.license, source="kaiyuan train reward", stage="reward",
                         parents=[Parent(start.id, "finetune"), Parent(data.id, "dataset")],
                         config={"stage": "reward", **asdict(cfg)}, seed=cfg.seed,
                         chat_template=tokenizer.chat_template, metrics=metrics) as writer:
        trained.save_pretrained(writer.path, safe_serialization=True)
        tokenizer.save_pretrained(writer.path)
        write_metrics(writer.path / "metrics.jsonl", rows)
        plot_curve(rows, "loss", writer.path / "loss_curve.png", f"reward loss — {name}")
    assert writer.artifact is not None
    png = writer.artifact.path / "loss_curve.png"
    result = TrainResult(writer.artifact, None, metrics, {"loss": png} if png.is_file() else {})
    mark_complete(cfg, "reward", result, registry)
    return result
