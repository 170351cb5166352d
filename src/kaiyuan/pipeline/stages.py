"""THE stage table: every stage kaiyuan runs, once.

The CLI (``kaiyuan train sft``, ``kaiyuan data synthetic``, ``kaiyuan export``, …), recipes (``stage: sft``) and
``kaiyuan reproduce`` (a manifest's ``stage`` field) all read :data:`STAGES`. A stage is a function with a config:
the config dataclass is the command's flags and the recipe's keys; ``outputs`` names what a recipe step can refer
to (``${sft.merged}``); ``outputs_of`` turns the function's result into those references.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

from kaiyuan.data.near_misses import NearMissConfig, run_near_misses
from kaiyuan.data.synthetic import SyntheticConfig, run_synthetic
from kaiyuan.evaluate.generation import ExactMatchConfig, run_exact_match
from kaiyuan.evaluate.harness import BenchmarkConfig, run_benchmark
from kaiyuan.evaluate.judge import JudgeConfig, run_judge
from kaiyuan.export.export import ExportConfig, run_export
from kaiyuan.train.common import ADAPTER_METHODS
from kaiyuan.train.grpo import GRPOConfig, run_grpo
from kaiyuan.train.ppo import PPOConfig, run_ppo
from kaiyuan.train.preference import DPOConfig, KTOConfig, ORPOConfig, SimPOConfig, run_preference
from kaiyuan.train.pretrain import PretrainConfig, run_pretrain
from kaiyuan.train.reward import RewardConfig, run_reward
from kaiyuan.train.sft import SFTConfig, run_sft


def _field_default(cls: type, name: str) -> Any:
    import dataclasses

    found = {f.name: f for f in fields(cls)}.get(name)
    return None if found is None or found.default is dataclasses.MISSING else found.default


def _unmerged(cls: type, values: dict[str, Any]) -> dict[str, str]:
    """A training stage registers a merged model only with ``merge: true`` and an adapter method."""
    if values.get("merge", _field_default(cls, "merge")) is not True:
        return {"merged": "it has no 'merge: true'"}
    method = values.get("method", _field_default(cls, "method"))
    if method is not None and method not in ADAPTER_METHODS:
        return {"merged": f"its method {method} trains no adapter to merge"}
    return {}


def _no_pairs(cls: type, values: dict[str, Any]) -> dict[str, str]:
    n_pairs = values.get("n_pairs", _field_default(cls, "n_pairs"))
    ok = isinstance(n_pairs, int) and not isinstance(n_pairs, bool) and n_pairs > 0
    return {} if ok else {"pairs": "it has no 'n_pairs' above 0"}


def _trained(result: Any) -> dict[str, Any]:
    return {"artifact": result.artifact.id, "merged": result.merged.id if result.merged else "",
            "metrics": result.metrics}


def _synthetic(produced: dict[str, Any]) -> dict[str, Any]:
    return {name: artifact.id for name, artifact in produced.items()}


def _near_misses(result: tuple[Any, list[Any]]) -> dict[str, Any]:
    dataset, kept = result
    return {"pairs": dataset.id, "metrics": {"pairs": len(kept)}}


def _exact_match(result: Any) -> dict[str, Any]:
    return {"artifact": result.artifact.id, "metrics": {"exact_match": result.exact_match, "n": result.n}}


def _evaluated(result: Any) -> dict[str, Any]:
    return {"artifact": result.artifact.id if result.artifact else "", "metrics": result.metrics}


def _exported(result: Any) -> dict[str, Any]:
    return {"artifact": result.artifact.id, "merged": result.merged.id if result.merged else "",
            "metrics": result.checks()}


@dataclass(frozen=True)
class Stage:
    name: str  # the recipe's ``stage:`` and the manifest's ``stage``
    command: str  # the CLI command that runs it
    config: type
    run: Callable[[Any], Any]
    outputs: tuple[str, ...]
    outputs_of: Callable[[Any], dict[str, Any]]
    help: str
    # why a config would leave some of ``outputs`` empty: (config class, values) -> {output: reason}
    unproduced: Callable[[type, dict[str, Any]], dict[str, str]] | None = field(default=None)


TRAINED = ("artifact", "merged")

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    Stage("synthetic", "data synthetic", SyntheticConfig, run_synthetic, ("train", "heldout", "pairs"), _synthetic,
          "Generate and register a synthetic task's train / held-out (/ preference) splits.", _no_pairs),
    Stage("near_misses", "data near-misses", NearMissConfig, run_near_misses, ("pairs",), _near_misses,
          "Preference pairs from a model's own near misses: at the answer token where it is least sure, its best "
          "other token is the rejected answer (on-policy hard negatives for DPO)."),
    Stage("pretrain", "train pretrain", PretrainConfig, run_pretrain, TRAINED, _trained,
          "Causal-LM training on raw text ({'text'} records or .txt), packed into blocks with per-document "
          "attention; continued pretraining or --from-scratch.", _unmerged),
    Stage("sft", "train sft", SFTConfig, run_sft, TRAINED, _trained,
          "Supervised fine-tuning (LoRA or full) with assistant-only loss, via TRL.", _unmerged),
    Stage("dpo", "train dpo", DPOConfig, partial(run_preference, algorithm="dpo"), TRAINED, _trained,
          "Direct preference optimization (sigmoid / ipo / hinge) from prompt/chosen/rejected pairs, via "
          "TRL; the starting model is the reference.", _unmerged),
    Stage("kto", "train kto", KTOConfig, partial(run_preference, algorithm="kto"), TRAINED, _trained,
          "KTO from desirable / undesirable replies (each pair gives one of each), via TRL.", _unmerged),
    Stage("orpo", "train orpo", ORPOConfig, partial(run_preference, algorithm="orpo"), TRAINED, _trained,
          "ORPO: SFT plus an odds-ratio preference term, no reference model (TRL experimental).", _unmerged),
    Stage("simpo", "train simpo", SimPOConfig, partial(run_preference, algorithm="simpo"), TRAINED, _trained,
          "SimPO: length-normalized, reference-free preference loss (TRL experimental CPO).", _unmerged),
    Stage("reward", "train reward", RewardConfig, run_reward, ("artifact",), _trained,
          "Pairwise reward model (Bradley–Terry) from chosen/rejected pairs, via TRL; reports held-out pair "
          "accuracy."),
    Stage("ppo", "train ppo", PPOConfig, run_ppo, TRAINED, _trained,
          "RLHF step 3: PPO against a reward model or a Python reward function, with a KL penalty to the "
          "frozen starting model.", _unmerged),
    Stage("grpo", "train grpo", GRPOConfig, run_grpo, TRAINED, _trained,
          "GRPO with verifiable reward functions (groups of sampled replies), via TRL.", _unmerged),
    Stage("eval", "eval --data", ExactMatchConfig, run_exact_match, ("artifact",), _exact_match,
          "Exact match on held-out conversations: the first match of an answer pattern in the greedy reply."),
    Stage("benchmark", "eval --task", BenchmarkConfig, run_benchmark, ("artifact",), _evaluated,
          "A benchmark scored the way lm-evaluation-harness does (acc, acc_norm, exact match, perplexity)."),
    Stage("judge", "judge", JudgeConfig, run_judge, ("artifact",), _evaluated,
          "Grade models' answers with an LLM judge (MT-bench rules: 1–10 ratings, or pairwise in both orders)."),
    Stage("export", "export", ExportConfig, run_export, ("artifact", "merged"), _exported,
          "Export a model or adapter: merged safetensors, a GGUF file for llama.cpp, or an Ollama model."),
)}

TRAINING_STAGES = tuple(stage for stage in STAGES.values() if stage.command.startswith("train "))


def stage_named(name: str) -> Stage | None:
    return STAGES.get(name)
