"""Helpers shared by the training stages: inputs, devices, trainer arguments, checkpoints, metrics and plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.data.datasets import resolve_dataset_records
from kaiyuan.data.formats import Record
from kaiyuan.errors import KaiyuanError
from kaiyuan.export.merge import merge_adapter
from kaiyuan.home import run_dir as home_run_dir
from kaiyuan.home import run_key
from kaiyuan.hub.licenses import UNKNOWN as NOASSERTION
from kaiyuan.hub.manifest import Parent, atomic_write_json
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import resolve_model
from kaiyuan.train.distributed import deepspeed_config, deepspeed_environment, is_main_process, is_zero3


def stage_inputs(model_ref: str, data_ref: str, data_license: str, stage: str, registry: Registry,
                 need_pairs: bool = False) -> tuple[Artifact, Artifact, list[Record], str]:
    """The starting model (a model, not an adapter), the dataset, its records and where they come from (the
    user's file, or the registry's copy: what errors about a record name), or a clear error —
    before any model is loaded or built. The data is checked first (a missing file, a format kaiyuan does not
    read, a bad record: named ``FILE:LINE`` in the file the user gave); a dataset without a license gets a
    warning on stderr."""

    data, records, where = resolve_dataset_records(data_ref, registry, license=data_license)
    if not records:
        raise KaiyuanError(f"dataset {data.id} has no records")
    if need_pairs:
        for record in records:
            if not record.is_preference:
                raise KaiyuanError(f"{where}:{record.line}: record: not a preference pair (needs "
                                   f"prompt, chosen and rejected) — {stage} learns from pairs")
    start = resolve_model(model_ref, registry)
    if start.kind != "model":
        raise KaiyuanError(f"{model_ref!r} is an adapter; {stage} starts from a model (merge the adapter first)")
    warn_unlicensed(data)
    return start, data, records, where


def unlicensed_warning(data: Artifact) -> str | None:
    """The warning for training on a dataset without a license (NOASSERTION), else None."""
    if data.license != NOASSERTION:
        return None
    return (f"warning: dataset {data.name} ({data.id}) has no license (NOASSERTION): models trained on it cannot be "
            "shared with a clear license; pass --data-license SPDX-ID")


def warn_unlicensed(data: Artifact) -> None:
    """Print :func:`unlicensed_warning` on stderr (once, on rank 0 of a distributed run)."""
    import sys


    message = unlicensed_warning(data)
    if message and is_main_process():
        print(message, file=sys.stderr)


def use_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")


def plot_curve(rows: list[dict[str, Any]], key: str, path: Path, title: str) -> Path | None:
    """A PNG of ``key`` against step; None when no row has the key."""
    points = [(row["step"], row[key]) for row in rows if key in row]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ shared by stages


@dataclass
class TrainOptions:
    """Options every training stage has; a stage's config adds its own fields after these."""

    model: str = field(metadata={"help": "Model to start from (registry id/name, dir, .gguf, hub id)."})
    data: str = field(metadata={"help": "Training data: a registered dataset or a JSON/JSONL file."})
    name: str | None = field(default=None, metadata={"help": "Name of the output artifact."})
    method: Literal["lora", "dora", "qlora", "full", "freeze"] = field(default="lora", metadata={
        "help": "lora, dora, qlora (4-bit base; needs bitsandbytes + CUDA), full, or freeze (train the last "
                "freeze_last_n layers only)."})
    freeze_last_n: int = field(default=2, metadata={"help": "Layers trained with method freeze."})
    epochs: float = field(default=1.0, metadata={"help": "Passes over the data."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: epochs)."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    lr_scheduler: str = field(default="linear", metadata={"help": "transformers scheduler name."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Fraction of steps for LR warm-up."})
    batch_size: int = field(default=8, metadata={"help": "Examples per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Steps to accumulate."})
    max_length: int | None = field(default=None, metadata={
        "help": "Longest tokenized example allowed (default: the model's context)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: str = field(default="all-linear", metadata={"help": "Comma list or all-linear."})
    merge: bool = field(default=False, metadata={"help": "Also merge the adapter and register the model."})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={
        "help": "fp32, or bf16 mixed precision (autocast; fast on CPUs with AVX512-BF16/AMX and on GPUs)."})
    gradient_checkpointing: bool = field(default=False, metadata={
        "help": "Recompute activations in the backward pass: less memory, ~30 % slower."})
    logging_steps: int = field(default=5, metadata={"help": "Log metrics every N steps."})
    nproc: int = field(default=1, metadata={"help": "Processes (torchrun DDP: gloo on CPU, nccl on GPU)."})
    deepspeed: str | None = field(default=None, metadata={"help": "DeepSpeed ZeRO: zero2 or zero3."})
    checkpoint_steps: int = field(default=0, metadata={"help": "Save a resumable checkpoint every N steps (0: none)."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint of this same run."})
    keep_checkpoints: bool = field(default=True, metadata={
        "help": "Copy each checkpoint's weights (no optimizer state) into the artifact as checkpoint-N/: the "
                "intermediate parameters open-science release (MOF Class I) asks for."})
    seed: int = field(default=42, metadata={"help": "Seed for data order and initialization."})
    data_license: str = field(default="NOASSERTION", metadata={"help": "License of a data file (SPDX)."})


@dataclass
class TrainResult:
    artifact: Artifact
    merged: Artifact | None
    metrics: dict[str, Any]
    curves: dict[str, Path]
    already_complete: bool = False  # ``--resume`` of a run that had finished: nothing trained, nothing registered

    @property
    def loss_curve_png(self) -> Path | None:
        return self.curves.get("loss")

    def summary(self) -> dict[str, Any]:
        return {"artifact_id": self.artifact.id, "kind": self.artifact.kind,
                "merged_model_id": self.merged.id if self.merged else None, "metrics": self.metrics,
                "curves": {k: str(v) for k, v in self.curves.items()},
                "loss_curve_png": str(self.loss_curve_png) if self.loss_curve_png else None,
                "already_complete": self.already_complete,
                **({"message": f"already complete: {self.artifact.id}"} if self.already_complete else {})}


ADAPTER_METHODS = ("lora", "dora", "qlora")


def lora_config(opts: TrainOptions) -> Any:
    """PEFT LoRA config for the adapter methods (None for full and freeze fine-tuning)."""
    if opts.method not in ADAPTER_METHODS:
        return None
    from peft import LoraConfig

    targets: str | list[str] = (opts.lora_target_modules if opts.lora_target_modules == "all-linear"
                                else [t.strip() for t in opts.lora_target_modules.split(",")])
    return LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", use_dora=opts.method == "dora")


def length_limit(opts: TrainOptions, model: Any) -> int:
    """The longest example allowed: max_length, and never more than the model's context."""
    context = getattr(model.config, "max_position_embeddings", None) or 2048
    if opts.max_length is None:
        return int(context)
    if opts.max_length > context:
        raise KaiyuanError(f"max_length {opts.max_length} is longer than the model allows ({context} positions)")
    return opts.max_length


def check_method(opts: TrainOptions) -> None:
    """Fail before any heavy work when the method cannot run here."""
    if opts.method == "qlora":
        import importlib.util

        import torch

        if importlib.util.find_spec("bitsandbytes") is None or not torch.cuda.is_available():
            raise KaiyuanError("method qlora needs bitsandbytes and a CUDA GPU (4-bit base weights); this machine "
                               f"has {'no CUDA GPU' if not torch.cuda.is_available() else 'no bitsandbytes'}. "
                               "Use method lora or dora.")


def quantization_config(opts: TrainOptions) -> Any:
    if opts.method != "qlora":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


def freeze_all_but_last(model: Any, n: int) -> None:
    """Method freeze: only the last ``n`` decoder layers train (LLaMA-Factory's freeze tuning)."""
    import re

    layer_ids = sorted({int(m.group(1)) for name, _ in model.named_parameters()
                        if (m := re.search(r"\.layers\.(\d+)\.", name))})
    if not layer_ids:
        raise KaiyuanError("method freeze: the model has no '.layers.N.' blocks to unfreeze")
    if not 0 < n <= len(layer_ids):
        raise KaiyuanError(f"freeze_last_n must be in 1..{len(layer_ids)}, got {n}")
    trainable = {f".layers.{i}." for i in layer_ids[-n:]}
    for name, param in model.named_parameters():
        param.requires_grad = any(t in name for t in trainable)


def run_dir(opts: TrainOptions, stage: str, registry: Registry | None = None) -> Path:
    """Where a run keeps its checkpoints (in the registry's home): named by a hash of its config, so ``--resume``
    finds it."""
    return home_run_dir(stage, asdict(opts), registry.home if registry is not None else None)


# written into the run directory once the run's artifact is registered: what ``--resume`` answers then
COMPLETE_FILE = "kaiyuan-complete.json"


def mark_complete(opts: TrainOptions, stage: str, result: TrainResult, registry: Registry | None = None) -> None:
    """Record in the run directory that this run finished and which artifact it registered."""
    run = run_dir(opts, stage, registry)
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / COMPLETE_FILE, {
        "stage": stage, "artifact_id": result.artifact.id,
        "merged_model_id": result.merged.id if result.merged else None, "steps": result.metrics.get("steps"),
        "curves": {key: path.name for key, path in result.curves.items()}})


def _registered_run(opts: TrainOptions, stage: str, registry: Registry) -> tuple[Artifact | None, Artifact | None,
                                                                                    dict[str, str]]:
    """(artifact, merged model, curve files) this run registered: from the run directory's completion record,
    else the newest artifact trained with the same options (runs finished before the record existed)."""
    marker = run_dir(opts, stage, registry) / COMPLETE_FILE
    if marker.is_file():
        record = json.loads(marker.read_text())
        artifact = registry.find(record.get("artifact_id") or "")
        merged = registry.find(record["merged_model_id"]) if record.get("merged_model_id") else None
        if artifact is not None and (merged is not None or not record.get("merged_model_id")):
            return artifact, merged, dict(record.get("curves") or {})
    key = run_key(asdict(opts), stage)
    source = f"kaiyuan train {stage}"
    for artifact in reversed(registry.list()):
        config = artifact.manifest.get("config") or {}
        if artifact.manifest.get("source") != source or config.get("stage") != stage or run_key(config, stage) != key:
            continue
        merged = None
        if opts.merge and opts.method in ADAPTER_METHODS:
            merged = next(reversed(registry.children(artifact.id, "merge", "model")), None)
            if merged is None:
                continue
        curves = {p.name.removesuffix("_curve.png"): p.name for p in sorted(artifact.path.glob("*_curve.png"))}
        return artifact, merged, curves
    return None, None, {}


def finished_run(opts: TrainOptions, stage: str, registry: Registry, start: Artifact | str,
                 data: Artifact | str) -> TrainResult | None:
    """With ``--resume``: the registered result of this same run (same identity as its run directory) when
    it already finished — nothing is left to train, and training again would add a step and a new artifact.
    None when the run is not finished (or ``resume`` is off). Call it before loading any model."""
    import sys

    if not opts.resume:
        return None
    artifact, merged, curve_files = _registered_run(opts, stage, registry)
    if artifact is None or not artifact.path.is_dir():
        return None
    wanted = {a.id if isinstance(a, Artifact) else a for a in (start, data)}
    parents = {p.get("id") for p in artifact.manifest.get("parents", [])}
    if not wanted <= parents:
        raise KaiyuanError(f"--resume: this run ({run_dir(opts, stage, registry)}) finished as {artifact.id}, "
                           f"trained from "
                           f"{', '.join(sorted(p for p in parents if p))}; its model or data now resolve to "
                           f"{', '.join(sorted(wanted - parents))} — the inputs changed, so train without --resume")
    curves = {key: artifact.path / name for key, name in curve_files.items() if (artifact.path / name).is_file()}
    print(f"already complete: {artifact.id} (run {run_dir(opts, stage, registry).name} finished; nothing to resume)",
          file=sys.stderr)
    return TrainResult(artifact, merged, dict(artifact.manifest.get("metrics") or {}), curves, already_complete=True)


def trainer_arguments(opts: TrainOptions, stage: str, registry: Registry | None = None) -> dict[str, Any]:
    """Keyword arguments shared by TRL's stage configs (SFTConfig, DPOConfig, …)."""
    import os


    checkpoints = {"save_strategy": "steps", "save_steps": opts.checkpoint_steps} if opts.checkpoint_steps else {
        "save_strategy": "no"}
    extra: dict[str, Any] = {}
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and use_cpu():
        extra["ddp_backend"] = "gloo"
    if opts.deepspeed:
        extra["deepspeed"] = deepspeed_config(opts.deepspeed)
        for key, value in deepspeed_environment(use_cpu()).items():  # read when DeepSpeed starts
            os.environ.setdefault(key, value)
    return dict(
        output_dir=str(run_dir(opts, stage, registry)), **checkpoints, **extra,
        num_train_epochs=opts.epochs, max_steps=opts.max_steps, learning_rate=opts.learning_rate,
        lr_scheduler_type=opts.lr_scheduler, warmup_steps=opts.warmup_ratio,
        per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.gradient_accumulation_steps,
        max_length=opts.max_length, logging_steps=opts.logging_steps, logging_first_step=True,
        report_to=reporting(), seed=opts.seed, data_seed=opts.seed, use_cpu=use_cpu(),
        bf16=opts.precision == "bf16", fp16=False, gradient_checkpointing=opts.gradient_checkpointing,
        dataset_num_proc=None, disable_tqdm=False,
    )


def reporting() -> str | list[str]:
    """TensorBoard logs when it is installed."""
    import importlib.util

    return ["tensorboard"] if importlib.util.find_spec("tensorboard") else "none"


#: Trainer callbacks every :func:`train` adds besides its ``callbacks`` argument: a way for code that runs the
#: ``kaiyuan`` CLI in-process (an embedding application, a test harness) to watch or steer every training run.
extra_callbacks: list[Any] = []


class _AtFinalStep(Exception):
    """Raised before a step that would go past max_steps (see :func:`train`)."""


def _stop_at_max_steps() -> Any:
    from transformers import TrainerCallback

    class Callback(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if 0 < state.max_steps <= state.global_step:
                raise _AtFinalStep

    return Callback()


def _logged_mean_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over the logged steps (each logged loss weighted by the steps it covers)."""
    total, steps, last = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            total += float(entry["loss"]) * (entry["step"] - last)
            steps += entry["step"] - last
            last = entry["step"]
    return total / steps if steps else None


def last_complete_checkpoint(directory: str) -> str | None:
    """The newest ``checkpoint-N`` that was saved to the end (its ``trainer_state.json`` is written last and
    parses); a checkpoint a crash cut short is passed over, with a note."""
    import json
    import re
    import sys
    from pathlib import Path

    found = sorted((int(m.group(1)), p) for p in Path(directory).iterdir()
                   if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
    for _, path in reversed(found):
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
            return str(path)
        except (OSError, ValueError):
            print(f"{path}: an incomplete checkpoint (no readable trainer_state.json): passed over", file=sys.stderr)
    return None


def train(trainer: Any, opts: TrainOptions, callbacks: Sequence[Any] = ()) -> Any:
    """``trainer.train()``, continuing from the run's last checkpoint when ``opts.resume``; ``callbacks`` (and
    :data:`extra_callbacks`) are added to the trainer first.

    When that checkpoint is the run's final step (it finished training but was never registered), nothing is
    trained: the trainer loads the checkpoint and stops before the step past ``max_steps`` that transformers
    would otherwise take (it resumes inside an epoch without checking), so the result is the checkpoint's."""
    import os
    import sys

    from transformers.trainer_utils import TrainOutput

    for callback in (*extra_callbacks, *callbacks):
        trainer.add_callback(callback)
    checkpoint = None
    if opts.resume:
        directory = trainer.args.output_dir
        checkpoint = last_complete_checkpoint(directory) if os.path.isdir(directory) else None
        print(f"resuming from {checkpoint}" if checkpoint else f"no checkpoint in {directory}: starting afresh",
              file=sys.stderr)
    if checkpoint is None:
        return trainer.train()
    trainer.add_callback(_stop_at_max_steps())
    try:
        return trainer.train(resume_from_checkpoint=checkpoint)
    except _AtFinalStep:
        state = trainer.state
        print(f"{checkpoint} is the run's final step ({state.global_step} of {state.max_steps}): nothing left to "
              "train", file=sys.stderr)
        return TrainOutput(state.global_step, _logged_mean_loss(state.log_history), {})


def logged_rows(trainer: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per logging step with the given keys (those the trainer logged)."""
    rows = []
    for entry in trainer.state.log_history:
        if "loss" in entry:
            rows.append({"step": entry["step"], **{k: entry[k] for k in keys if k in entry}})
    return rows


def make_reproducible(directory: Path, base_id: str) -> None:
    """Same training → same bytes: drop files that hold local paths or pickles (the manifest has the
    resolved config), point the adapter at the registered base, and sort its module sets."""
    for name in ("training_args.bin", "README.md"):
        (directory / name).unlink(missing_ok=True)
    adapter_config = directory / "adapter_config.json"
    if adapter_config.is_file():
        config = json.loads(adapter_config.read_text())
        config["base_model_name_or_path"] = base_id
        for key in ("target_modules", "modules_to_save"):
            if isinstance(config.get(key), list):
                config[key] = sorted(config[key])
        adapter_config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


# weights and their configs; not trainer_state.json (its token counts differ after a resume) nor pickles
CHECKPOINT_FILES = ("*.safetensors", "*config.json")


def keep_checkpoints(run: Path, directory: Path, base_id: str) -> list[str]:
    """Copy the weights of every ``checkpoint-N`` of a run into ``directory`` (weights as hard links when
    possible; the JSON files are copied, as they are rewritten here)."""
    import os
    import shutil

    kept = []
    for checkpoint in sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        target = directory / checkpoint.name
        target.mkdir()
        for pattern in CHECKPOINT_FILES:
            for source in sorted(checkpoint.glob(pattern)):
                try:
                    if source.suffix != ".safetensors":
                        raise OSError("copy")
                    os.link(source, target / source.name)
                except OSError:
                    shutil.copyfile(source, target / source.name)
        make_reproducible(target, base_id)
        kept.append(checkpoint.name)
    return kept


def register_trained(trainer: Any, opts: TrainOptions, *, stage: str, start: Artifact, parents: list[Parent],
                     tokenizer: Any, metrics: dict[str, Any], rows: list[dict[str, Any]],
                     curves: tuple[str, ...] = ("loss",), registry: Registry | None = None) -> TrainResult | None:
    """Register what a trainer produced: an adapter (LoRA) or a model (full), with metrics.jsonl and
    PNG curves; optionally the merged model too. In a distributed run only rank 0 registers (others: None);
    under DeepSpeed ZeRO-3 every rank takes part in gathering the sharded weights that rank 0 saves."""

    zero3 = is_zero3(trainer)
    if not trainer.is_world_process_zero():
        if zero3:
            trainer.save_model(trainer.args.output_dir)  # the same collective gather as rank 0's; rank 0 writes
        return None
    if trainer.args.world_size > 1:
        metrics["processes"] = trainer.args.world_size
    if getattr(trainer, "is_deepspeed_enabled", False):
        metrics["deepspeed_zero_stage"] = trainer.accelerator.state.deepspeed_plugin.zero_stage
    kind = "adapter" if opts.method in ADAPTER_METHODS else "model"
    relation = "adapter" if opts.method in ADAPTER_METHODS else "finetune"
    name = opts.name or f"{start.name}-{stage}-{opts.method}"
    with ArtifactWriter(kind, name, license=start.license, source=f"kaiyuan train {stage}", stage=stage,
                        registry=registry,
                        parents=[Parent(start.id, relation), *parents],
                        config={"stage": stage, **asdict(opts)}, seed=opts.seed,
                        chat_template=tokenizer.chat_template, metrics=metrics) as writer:
        trainer.save_model(str(writer.path))
        make_reproducible(writer.path, start.id)
        if opts.checkpoint_steps and opts.keep_checkpoints:
            metrics["checkpoints"] = keep_checkpoints(Path(trainer.args.output_dir), writer.path, start.id)
        write_metrics(writer.path / "metrics.jsonl", rows)
        for key in curves:
            plot_curve(rows, key, writer.path / f"{key.replace('/', '_')}_curve.png", f"{stage} {key} — {name}")
    artifact = writer.artifact
    assert artifact is not None
    merged = None
    if opts.method in ADAPTER_METHODS and opts.merge:

        # ZeRO-3's in-memory weights are shards: merge the saved adapter instead
        merged = (merge_adapter(artifact, registry) if zero3 else
                  merge_adapter(artifact, registry, model=trainer.model, tokenizer=tokenizer))
    found = {key: artifact.path / f"{key.replace('/', '_')}_curve.png" for key in curves}
    result = TrainResult(artifact, merged, metrics, {k: p for k, p in found.items() if p.is_file()})
    mark_complete(opts, stage, result, registry)
    return result
