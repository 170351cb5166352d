"""``kaiyuan eval MODEL --task T``: score a model on a benchmark the way lm-evaluation-harness does.

Multiple choice: ``acc`` = argmax of the summed continuation log-likelihood, ``acc_norm`` = argmax of the
log-likelihood divided by the choice's length in characters. Generation: exact match on the extracted
answer. Per-subject scores, per-category and overall aggregates weighted as the benchmark's official
script weights them (MMLU: by questions; C-Eval, CMMLU: mean of the subjects). The result is a
registered ``eval`` artifact whose parent is the evaluated model.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.endpoint_model import EndpointLM
from kaiyuan.evaluate.language_model import TransformersLM
from kaiyuan.evaluate.llamacpp_model import LlamaCppLM
from kaiyuan.evaluate.tasks import Item, TaskData, load_task
from kaiyuan.hub.manifest import Parent, atomic_write_bytes, atomic_write_text
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import load_model, resolve_model


@dataclass
class BenchmarkConfig:
    model: str = field(metadata={"help": "Model: registry id/name, local dir, .gguf, hub id, or the model name "
                                         "served at --base-url."})
    task: str = field(metadata={"help": "mmlu, ceval, cmmlu, gsm8k, piqa, lambada, or a task .yaml file."})
    data_dir: str | None = field(default=None, metadata={"help": "Directory with the benchmark's published files."})
    split: str | None = field(default=None, metadata={"help": "Split to score (default: the task's test split)."})
    shots: int | None = field(default=None, metadata={"help": "Few-shot examples (default: the task's)."})
    seed: int = field(default=1234, metadata={"help": "Seed of random few-shot sampling."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N questions of each subject."})
    batch_size: int = field(default=32, metadata={"help": "Sequences per forward pass."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest generation (generation tasks)."})
    engine: Literal["auto", "transformers", "llamacpp", "openai"] = field(default="auto", metadata={
        "help": "auto: llamacpp for .gguf files when llama-cpp-python is installed, openai with --base-url, "
                "else transformers."})
    base_url: str | None = field(default=None, metadata={"help": "OpenAI-compatible endpoint (generation tasks)."})
    api_key: str | None = field(default=None, metadata={"help": "API key of --base-url."})
    predictions: str | None = field(default=None, metadata={"help": "Also write per-question predictions here "
                                                                    "(JSONL)."})
    cache: bool = field(default=True, metadata={"help": "Reuse cached request results of the same model."})


@dataclass
class BenchmarkResult:
    task: str
    model_id: str
    metrics: dict[str, float]  # overall
    subjects: dict[str, dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    n: int
    seconds: float
    predictions: list[dict[str, Any]]
    artifact: Artifact | None
    model_name: str = ""  # what people call the model: its registry name, else the reference given

    @property
    def label(self) -> str:
        """The model as tables and chart legends name it: ``name (id)``, or the id alone when that is the name."""
        return f"{self.model_name} ({self.model_id})" if self.model_name and self.model_name != self.model_id \
            else self.model_id

    def summary(self) -> dict[str, Any]:
        return {"task": self.task, "model_id": self.model_id, "model_name": self.model_name, "n": self.n,
                "metrics": self.metrics,
                "categories": self.categories, "subjects": self.subjects, "seconds": round(self.seconds, 2),
                "eval_id": self.artifact.id if self.artifact else None}


# ------------------------------------------------------------------------------------------------ scoring


def score_choice(item: Item, results: list[tuple[float, bool]]) -> dict[str, Any]:
    lls = [r[0] for r in results]
    pred = max(range(len(lls)), key=lambda i: (lls[i], -i))
    normalized = [ll / len(choice) for ll, choice in zip(lls, item.choices, strict=True)]
    pred_norm = max(range(len(normalized)), key=lambda i: (normalized[i], -i))
    return {"pred": pred, "pred_norm": pred_norm, "loglikelihoods": lls,
            "acc": float(pred == item.gold), "acc_norm": float(pred_norm == item.gold)}


def normalize_answer(text: str, item: Item) -> str:
    for pattern in item.ignore_patterns:
        text = re.sub(pattern, "", text)
    text = text.strip()
    return text.lower() if item.ignore_case else text


def score_generation(item: Item, text: str) -> dict[str, Any]:
    gold = normalize_answer(str(item.gold), item)
    if not item.filters:
        answer = normalize_answer(text, item)
        return {"output": text, "answer": answer, "exact_match": float(answer == gold)}
    answers = {f.name: normalize_answer(f.apply(text), item) for f in item.filters}
    out: dict[str, Any] = {"output": text, "answers": answers}
    for name, answer in answers.items():
        out[f"exact_match,{name}"] = float(answer == gold)
    out["exact_match"] = out[f"exact_match,{item.filters[0].name}"]
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def aggregate(rows: list[dict[str, Any]], metric: str) -> float:
    """One metric over rows of per-question scores (perplexity: exp of the mean negative log-likelihood)."""
    if metric == "perplexity":
        return math.exp(-_mean([r["loglikelihood"] for r in rows]))
    if metric == "word_perplexity":
        return math.exp(-sum(r["loglikelihood"] for r in rows) / sum(r["words"] for r in rows))
    if metric == "bits_per_byte":
        return -sum(r["loglikelihood"] for r in rows) / (sum(r["bytes"] for r in rows) * math.log(2))
    return _mean([r[metric] for r in rows])


def summarize(data: TaskData, rows: list[dict[str, Any]], metrics: list[str]
              ) -> tuple[dict[str, float], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    by_subject: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_subject[row["subject"]].append(row)
    subjects = {s: {"n": len(r), **{m: aggregate(r, m) for m in metrics}} for s, r in sorted(by_subject.items())}

    def combine(names: list[str]) -> dict[str, Any]:
        if data.weighting == "subjects":
            return {"n": sum(subjects[s]["n"] for s in names), "subjects": len(names),
                    **{m: _mean([subjects[s][m] for s in names]) for m in metrics}}
        group = [r for s in names for r in by_subject[s]]
        return {"n": len(group), "subjects": len(names), **{m: aggregate(group, m) for m in metrics}}

    members: dict[str, list[str]] = defaultdict(list)
    for subject in subjects:
        for category in data.categories.get(subject, []):
            members[category].append(subject)
    categories = {c: combine(names) for c, names in sorted(members.items())}
    overall = combine(list(subjects))
    return {m: overall[m] for m in metrics}, subjects, categories


# ------------------------------------------------------------------------------------------------ engines


def _engine_kind(cfg: BenchmarkConfig) -> str:
    if cfg.engine != "auto":
        return cfg.engine
    if cfg.base_url:
        return "openai"
    if cfg.model.endswith(".gguf"):
        import importlib.util

        return "llamacpp" if importlib.util.find_spec("llama_cpp") else "transformers"
    return "transformers"


def open_language_model(cfg: BenchmarkConfig, registry: Registry) -> tuple[Any, str, Artifact | None]:
    """(language model, model id for reports, registered model artifact or None for endpoints)."""
    kind = _engine_kind(cfg)
    if kind == "openai":

        if not cfg.base_url:
            raise KaiyuanError("--engine openai needs --base-url")
        return EndpointLM(cfg.base_url, cfg.model, cfg.api_key, cache=cfg.cache), f"{cfg.base_url}#{cfg.model}", None
    if kind == "llamacpp":

        lm = LlamaCppLM(Path(cfg.model), batch_size=cfg.batch_size, cache=cfg.cache)
        return lm, lm.model_hash, None

    artifact = resolve_model(cfg.model, registry)
    loaded = load_model(artifact, registry)
    return (TransformersLM(loaded.model, loaded.tokenizer, artifact.id, batch_size=cfg.batch_size, cache=cfg.cache),
            artifact.id, artifact)


# ------------------------------------------------------------------------------------------------ the run


def evaluate_items(lm: Any, data: TaskData, max_new_tokens: int) -> list[dict[str, Any]]:
    """Per-question scores, in the task's order."""
    items = data.items
    rows: list[dict[str, Any]] = [{"id": i.id, "subject": i.subject, "gold": i.gold} for i in items]
    choice = [n for n, i in enumerate(items) if i.kind in ("choice", "target")]
    if choice:
        requests = [(items[n].context, c) for n in choice for c in items[n].continuations()]
        results = iter(lm.loglikelihood(requests, description=f"{data.name}: loglikelihood"))
        for n in choice:
            item = items[n]
            mine = [next(results) for _ in item.continuations()]
            if item.kind == "choice":
                rows[n].update(score_choice(item, mine))
            else:
                rows[n].update({"loglikelihood": mine[0][0], "acc": float(mine[0][1])})
    rolling = [n for n, i in enumerate(items) if i.kind == "rolling"]
    if rolling:
        totals = lm.loglikelihood_rolling([items[n].context for n in rolling], description=f"{data.name}: perplexity")
        for n, total in zip(rolling, totals, strict=True):
            text = items[n].context
            rows[n].update({"loglikelihood": total, "words": len(re.split(r"\s+", text.strip())),
                            "bytes": len(text.encode("utf-8"))})
    generate = [n for n, i in enumerate(items) if i.kind == "generate"]
    if generate:
        texts = lm.generate_until([(items[n].context, items[n].until) for n in generate], max_new_tokens,
                                  description=f"{data.name}: generating")
        for n, text in zip(generate, texts, strict=True):
            rows[n].update(score_generation(items[n], text))
    return rows


def run_benchmark(cfg: BenchmarkConfig, registry: Registry | None = None, register: bool = True
                  ) -> BenchmarkResult:
    registry = registry or Registry()
    data = load_task(cfg.task, Path(cfg.data_dir) if cfg.data_dir else None, cfg.split, cfg.shots, cfg.seed,
                     cfg.limit)
    if _engine_kind(cfg) == "openai" and any(i.kind != "generate" for i in data.items):
        raise KaiyuanError(f"{data.name}: scoring log-likelihoods needs the model itself (transformers or "
                           "llama.cpp); an OpenAI-compatible endpoint can only run generation tasks")
    lm, model_id, model_artifact = open_language_model(cfg, registry)
    started = time.time()
    rows = evaluate_items(lm, data, cfg.max_new_tokens)
    seconds = time.time() - started
    overall, subjects, categories = summarize(data, rows, data.metrics)
    if cfg.predictions:
        write_jsonl(Path(cfg.predictions), rows)
    artifact = None
    if register:
        parents = [Parent(model_artifact.id, "evaluated_model")] if model_artifact else []
        name = f"{model_artifact.name if model_artifact else cfg.model}@{data.name}"
        with registry.writer("eval", name, license="CC0-1.0", source=f"kaiyuan eval --task {cfg.task}",
                             stage="benchmark",
                             parents=parents, config={**asdict(cfg), "model_id": model_id, "task_name": data.name,
                                                      "task_source": data.source},
                             metrics={"task": data.name, "n": len(rows), **overall,
                                      "categories": categories, "subjects": subjects}) as writer:
            write_jsonl(writer.path / "predictions.jsonl", rows)
        artifact = writer.artifact
    return BenchmarkResult(data.name, model_id, overall, subjects, categories, len(rows), seconds, rows, artifact,
                           model_name=model_artifact.name if model_artifact is not None else cfg.model)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic: a temporary file renamed into place."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def plot_comparison(results: list[BenchmarkResult], metric: str, path: Path) -> Path:
    """Bar chart of one metric for several models (and, when present, per category)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({c for r in results for c in r.categories}) or []
    labels = ["overall"] + groups
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(labels) * len(results) / 2), 4))
    width = 0.8 / len(results)
    for k, result in enumerate(results):
        values = [result.metrics.get(metric, 0.0)] + [result.categories.get(g, {}).get(metric, 0.0) for g in groups]
        ax.bar([x + k * width for x in range(len(labels))], values, width, label=result.label)
    ax.set_xticks([x + width * (len(results) - 1) / 2 for x in range(len(labels))], labels, rotation=20)
    ax.set_ylabel(metric)
    ax.set_title(f"{results[0].task}: {metric}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
