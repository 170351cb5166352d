"""Preference pairs from a model's own near misses: ``kaiyuan data near-misses``.

For each conversation the model reads the reference answer token by token (teacher forcing). At the answer
token where it is least sure — the smallest margin between the reference token's probability and the best
other token's — that other token replaces the reference token. The conversations with the smallest margins
become pairs: chosen = the reference answer, rejected = the model's most likely slip.

These are on-policy hard negatives found without sampling: a preference stage (DPO) then pushes exactly where
the model hesitates, instead of on mistakes it would never make (whose log-probabilities are already tiny and
carry almost no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kaiyuan.data.datasets import DATA_FILE, dataset_records, resolve_dataset
from kaiyuan.data.templates import prompt_text
from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import load_model, resolve_model
from kaiyuan.progress import progress_bar


@dataclass
class NearMissConfig:
    model: str = field(metadata={"help": "The model whose near misses become rejected answers (usually the SFT "
                                         "model)."})
    data: str = field(metadata={"help": "Conversations (the last assistant turn is the reference answer) or "
                                        "preference pairs (chosen is the reference): a registered dataset or file."})
    n_pairs: int = field(default=128, metadata={"help": "Pairs to keep: those where the model is least sure."})
    batch_size: int = field(default=32, metadata={"help": "Conversations scored together."})
    name: str = field(default="near-miss-pairs", metadata={"help": "Name of the registered dataset."})
    data_license: str = field(default="NOASSERTION", metadata={"help": "License of a data file (SPDX)."})


@dataclass
class NearMiss:
    margin: float  # p(reference token) - p(best other token) at the least sure answer position
    position: int  # that position, in answer tokens
    row: dict[str, Any]  # prompt / chosen / rejected


def reference_rows(records: list[Any], source: str) -> list[tuple[list[dict], str]]:
    """(prompt messages, reference answer) of each record: a pair's chosen reply or a conversation's last turn."""
    out = []
    for record in records:
        if record.is_preference:
            prompt, answer = [m.to_dict() for m in record.messages], record.chosen
        else:
            prompt, answer = [m.to_dict() for m in record.messages[:-1]], record.messages[-1:]
        if len(answer) != 1 or answer[0].role != "assistant" or not prompt:
            raise KaiyuanError(f"{source}:{record.line}: needs a prompt and one assistant reply to use as reference")
        out.append((prompt, answer[0].content))
    return out


def find_near_misses(model: Any, tokenizer: Any, rows: list[tuple[list[dict], str]], batch_size: int = 32
                     ) -> list[NearMiss]:
    """One :class:`NearMiss` per row whose slip decodes to a different answer, least sure first."""
    import torch

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    found: list[NearMiss] = []
    with progress_bar() as progress, torch.inference_mode():
        task = progress.add_task("near misses", total=len(rows))
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            prompts = [tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)["input_ids"] for p, _ in batch]
            answers = [tokenizer(a, add_special_tokens=False)["input_ids"] for _, a in batch]
            width = max(len(p) + len(a) for p, a in zip(prompts, answers, strict=True))
            keep = max(len(a) for a in answers) + 1
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):  # left padding: answers end the rows
                ids[i, width - len(p) - len(a):] = torch.tensor(p + a)
                mask[i, width - len(p) - len(a):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            # the LM head only where answer tokens are predicted: the last `keep` positions
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                           position_ids=positions.to(model.device), logits_to_keep=keep).logits.float()
            for i, ((prompt, answer), a) in enumerate(zip(batch, answers, strict=True)):
                if not a:
                    continue
                rows_probs = logits[i, keep - len(a) - 1:keep - 1].softmax(-1)
                reference = rows_probs[torch.arange(len(a)), torch.tensor(a)]
                others = rows_probs.clone()
                others[torch.arange(len(a)), torch.tensor(a)] = -1.0
                best_other, best_id = others.max(-1)
                margins = reference - best_other
                position = int(margins.argmin())
                slipped = a[:position] + [int(best_id[position])] + a[position + 1:]
                rejected = tokenizer.decode(slipped, skip_special_tokens=True)
                if rejected.strip() == answer.strip():
                    continue
                found.append(NearMiss(float(margins[position]), position, {
                    "prompt": prompt, "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": rejected}]}))
            progress.advance(task, len(batch))
    return sorted(found, key=lambda m: m.margin)


def run_near_misses(cfg: NearMissConfig, registry: Registry | None = None) -> tuple[Artifact, list[NearMiss]]:
    """Score ``cfg.data`` with ``cfg.model``; register the ``n_pairs`` nearest misses as a preference dataset
    (parents: the model as ``generator``, the reference data as ``dataset``)."""

    if cfg.n_pairs < 1:
        raise KaiyuanError(f"n_pairs must be at least 1, got {cfg.n_pairs}")
    registry = registry or Registry()
    model_artifact = resolve_model(cfg.model, registry)
    data = resolve_dataset(cfg.data, registry, license=cfg.data_license)
    rows = reference_rows(dataset_records(data), f"{data.id}/{DATA_FILE}")
    loaded = load_model(model_artifact, registry)
    loaded.model.eval()
    misses = find_near_misses(loaded.model, loaded.tokenizer, rows, cfg.batch_size)
    kept = misses[:cfg.n_pairs]
    import json

    with registry.writer("dataset", cfg.name, license=data.license,
                         source=f"kaiyuan near misses of {model_artifact.id}", stage="near_misses",
                         parents=[Parent(model_artifact.id, "generator"), Parent(data.id, "dataset")],
                         config={"stage": "near-misses", "n_pairs": cfg.n_pairs, "batch_size": cfg.batch_size,
                                 "model": model_artifact.id, "data": data.id},
                         metrics={"records": len(kept), "candidates": len(rows), "slips": len(misses),
                                  "largest_margin_kept": kept[-1].margin if kept else None}) as writer:
        (writer.path / DATA_FILE).write_text(
            "".join(json.dumps(m.row, ensure_ascii=False) + "\n" for m in kept), encoding="utf-8")
    assert writer.artifact is not None
    return writer.artifact, kept
