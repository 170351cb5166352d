"""Exact match on generated answers: greedy decoding, answer extraction, one registered eval artifact."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from kaiyuan.data.datasets import dataset_records, register_dataset, resolve_dataset
from kaiyuan.data.templates import end_of_turn_token_ids, prompt_text
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import load_model, resolve_model
from kaiyuan.progress import progress_bar


@dataclass
class ExactMatchConfig:
    model: str = field(metadata={"help": "Model to evaluate (registry id/name, dir, .gguf, hub id)."})
    data: str = field(metadata={"help": "Held-out data: a registered dataset or a JSON/JSONL file."})
    answer_pattern: str | None = field(
        default=None, metadata={"help": "Regex whose first match is the answer (default: the dataset's)."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N examples."})
    batch_size: int = field(default=32, metadata={"help": "Prompts decoded together."})
    max_new_tokens: int = field(default=32, metadata={"help": "Longest answer generated."})


@dataclass
class ExactMatchResult:
    exact_match: float
    n: int
    n_correct: int
    artifact: Artifact
    predictions: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"exact_match": self.exact_match, "n": self.n, "n_correct": self.n_correct,
                "eval_id": self.artifact.id, "model_id": self.artifact.manifest["config"]["model_id"]}


def extract(text: str, pattern: str) -> str:
    if not pattern:
        return text.strip()
    match = re.search(pattern, text)
    return match.group(0) if match else ""


def generate_greedy(model: Any, tokenizer: Any, prompts: list[str], batch_size: int, max_new_tokens: int,
                    description: str = "generating") -> list[str]:
    """Greedy completions for ``prompts`` (batched, longest first, with a progress bar)."""
    import torch

    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = end_of_turn_token_ids(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    with progress_bar() as progress, torch.inference_mode():
        task = progress.add_task(description, total=len(prompts))
        for start in range(0, len(order), batch_size):
            batch = order[start: start + batch_size]
            encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(model.device)
            generated = model.generate(**encoded, do_sample=False, max_new_tokens=max_new_tokens,
                                       eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                                       temperature=None, top_p=None, top_k=None)
            new_tokens = generated[:, encoded["input_ids"].shape[1]:]
            for i, tokens in zip(batch, new_tokens, strict=True):
                outputs[i] = tokenizer.decode(tokens, skip_special_tokens=True)
            progress.advance(task, len(batch))
    return outputs


def run_exact_match(cfg: ExactMatchConfig, registry: Registry | None = None) -> ExactMatchResult:
    registry = registry or Registry()
    model_artifact = resolve_model(cfg.model, registry)
    data = resolve_dataset(cfg.data, registry)
    records = dataset_records(data)[: cfg.limit] if cfg.limit else dataset_records(data)
    if not records:
        raise KaiyuanError(f"dataset {data.id} has no records to evaluate")
    pattern = cfg.answer_pattern if cfg.answer_pattern is not None else data.manifest["config"].get(
        "answer_pattern", "")
    loaded = load_model(model_artifact, registry)
    prompts, references = [], []
    for record in records:
        chat = record.as_chat()
        if chat[-1]["role"] != "assistant":
            raise KaiyuanError(f"{data.id}:{record.line}: messages: the last message must be the reference "
                               "assistant answer")
        prompts.append(prompt_text(loaded.tokenizer, chat[:-1]))
        references.append(chat[-1]["content"])
    outputs = generate_greedy(loaded.model, loaded.tokenizer, prompts, cfg.batch_size, cfg.max_new_tokens,
                              description=f"eval {model_artifact.name}")
    predictions = []
    for record, reference, output in zip(records, references, outputs, strict=True):
        answer, gold = extract(output, pattern), extract(reference, pattern)
        predictions.append({"line": record.line, "gold": gold, "pred": answer, "output": output,
                            "correct": bool(answer) and answer == gold})
    n_correct = sum(p["correct"] for p in predictions)
    exact_match = n_correct / len(predictions)
    metrics = {"exact_match": exact_match, "n": len(predictions), "n_correct": n_correct}
    with registry.writer("eval", f"{model_artifact.name}@{data.name}", license="CC0-1.0",
                         source="kaiyuan eval (exact match)", stage="eval",
                         parents=[Parent(model_artifact.id, "evaluated_model"), Parent(data.id, "dataset")],
                         config={**asdict(cfg), "answer_pattern": pattern, "model_id": model_artifact.id,
                                 "dataset_id": data.id}, metrics=metrics) as writer:
        (writer.path / "predictions.jsonl").write_text(
            "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8")
    assert writer.artifact is not None
    return ExactMatchResult(exact_match, len(predictions), n_correct, writer.artifact, predictions)


def mistake_pairs(model_ref: str, rows: list[dict], pattern: str, registry: Registry | None = None,
                  batch_size: int = 32, max_new_tokens: int = 32, name: str = "mistake-pairs",
                  license: str = "CC0-1.0") -> tuple[Artifact, int]:
    """On-policy preference pairs: the model answers each conversation's last user turn; every wrong
    answer becomes ``rejected`` against the reference as ``chosen``. Registered with the model as its
    ``generator`` parent. Returns the dataset and the number of prompts tried."""

    registry = registry or Registry()
    model_artifact = resolve_model(model_ref, registry)
    loaded = load_model(model_artifact, registry)
    prompts = [prompt_text(loaded.tokenizer, row["messages"][:-1]) for row in rows]
    outputs = generate_greedy(loaded.model, loaded.tokenizer, prompts, batch_size, max_new_tokens,
                              description=f"answers of {model_artifact.name}")
    pairs = []
    for row, output in zip(rows, outputs, strict=True):
        reference = row["messages"][-1]["content"]
        if extract(output, pattern) != extract(reference, pattern):
            pairs.append({"prompt": row["messages"][:-1], "chosen": [{"role": "assistant", "content": reference}],
                          "rejected": [{"role": "assistant", "content": output.strip() or "(no answer)"}]})
    dataset = register_dataset(pairs, name, license, f"kaiyuan mistake pairs from {model_artifact.id}",
                               {"prompts": len(rows), "answer_pattern": pattern}, parents_of=[model_artifact.id],
                               registry=registry)
    return dataset, len(rows)
