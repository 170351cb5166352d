"""The configs of ``kaiyuan eval`` and ``kaiyuan arena ratings`` / ``votes``: their fields are the flags and YAML keys.

``kaiyuan eval`` runs one :class:`~kaiyuan.evaluate.harness.BenchmarkConfig` (``--task``) or
:class:`~kaiyuan.evaluate.generation.ExactMatchConfig` (``--data``) per model; :func:`benchmark_configs` and
:func:`exact_match_configs` build them from an :class:`EvalConfig`. Nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.generation import ExactMatchConfig
from kaiyuan.evaluate.harness import BenchmarkConfig


@dataclass
class EvalConfig:
    models: list[str] = field(metadata={"argument": True, "help": (
        "Model(s): registry id/name, local dir, .gguf, hub id (or the model name served at --base-url). Several → "
        "a comparison.")})
    task: str | None = field(default=None, metadata={"help": (
        "Benchmark: mmlu, ceval, cmmlu, gsm8k, piqa, lambada, or a task .yaml (lm-evaluation-harness format).")})
    data_dir: str | None = field(default=None, metadata={"help": "Directory with the benchmark's published files."})
    split: str | None = field(default=None, metadata={"help": "Split to score (default: the task's test split)."})
    shots: int | None = field(default=None, metadata={"help": "Few-shot examples (default: the task's)."})
    seed: int = field(default=1234, metadata={"help": "Seed of random few-shot sampling."})
    predictions: str | None = field(default=None, metadata={"help": (
        "Write per-question predictions here (JSONL; with several models: one file per model).")})
    engine: str = field(default="auto", metadata={"help": "auto | transformers | llamacpp | openai."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint (generation tasks)."})
    api_key: str | None = field(default=None, metadata={"help": "API key of --base-url."})
    png: str | None = field(default=None, metadata={"help": (
        "Bar chart comparing the models (default with several models: eval-<task>.png).")})
    cache: bool = field(default=True, metadata={"help": "Reuse cached request results of the same model."})
    data: str | None = field(default=None, metadata={"help": (
        "Instead of a benchmark: exact match on held-out conversations (registered dataset or JSON/JSONL).")})
    answer_pattern: str | None = field(default=None, metadata={
        "help": "With --data: regex whose first match is the answer."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions (of each subject)."})
    batch_size: int = field(default=32, metadata={"help": "Sequences per forward pass."})
    max_new_tokens: int | None = field(default=None, metadata={
        "help": "Longest generation (default 256; --data: 32)."})


def check_eval_config(cfg: EvalConfig) -> None:
    if (cfg.task is None) == (cfg.data is None):
        raise KaiyuanError("give either --task (a benchmark) or --data (held-out conversations)")


def benchmark_configs(cfg: EvalConfig) -> list[Any]:
    """One BenchmarkConfig per model (``--predictions`` gets the model's name with several models)."""

    configs = []
    for model in cfg.models:
        target = Path(cfg.predictions) if cfg.predictions is not None else None
        if target is not None and len(cfg.models) > 1:
            target = target.with_name(f"{target.stem}-{Path(model).name}{target.suffix}")
        configs.append(BenchmarkConfig(
            model=model, task=cfg.task or "", data_dir=cfg.data_dir or None, split=cfg.split, shots=cfg.shots,
            seed=cfg.seed, limit=cfg.limit, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens or 256,
            engine=cfg.engine,  # type: ignore[arg-type]
            base_url=cfg.base_url, api_key=cfg.api_key, predictions=str(target) if target else None,
            cache=cfg.cache))
    return configs


def exact_match_configs(cfg: EvalConfig) -> list[Any]:
    """One ExactMatchConfig per model."""

    return [ExactMatchConfig(model=model, data=cfg.data or "", answer_pattern=cfg.answer_pattern, limit=cfg.limit,
                             batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens or 32)
            for model in cfg.models]


@dataclass
class RatingsConfig:
    battles: str | None = field(default=None, metadata={"flags": ("--battles",), "help": (
        "FastChat battle log: JSON array (clean_battle_*.json) or JSONL with model_a, model_b, winner. Default: "
        "the battles stored in KAIYUAN_HOME/arena.sqlite.")})
    rounds: int = field(default=1000, metadata={"help": "Bootstrap rounds for the 95% intervals."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap resampling."})
    png: str | None = field(default=None, metadata={"help": "Also write a PNG of the ratings with their intervals."})


@dataclass
class VotesConfig:
    export: str | None = field(default=None, metadata={"help": (
        "Write every vote as a clean battle record (FastChat clean_battle_data, one JSON per line) to this file: "
        "what `kaiyuan arena ratings --battles FILE` reads.")})
