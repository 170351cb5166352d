"""Merge a LoRA adapter into its base model, check the merge, and register the result.

The check: on a probe text, the merged model's logits must equal those of base + adapter (the PEFT model before
merging) to a tolerance that depends on the weights' dtype. The largest absolute difference is recorded in the
merged model's manifest (``metrics.merge_max_abs_logit_diff``); above the tolerance nothing is registered.
"""

from __future__ import annotations

from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import base_of, load_model

PROBE_TEXT = ("Convert the date March 5, 1999 to ISO format. The open model answers: 1999-03-05. "
              "Hello world, please answer the question with the date only.")
# Merging adds B·A into W: exact up to float rounding of the weights' dtype (fp32: ~1e-6 on logits).
DEFAULT_TOLERANCE = {"float64": 1e-6, "float32": 1e-3, "float16": 5e-2, "bfloat16": 1e-1}


class MergeCheckError(KaiyuanError):
    """The merged model does not reproduce base + adapter."""


def default_tolerance(model: Any) -> float | None:
    """The logit tolerance for the merged weights' dtype; None (record only) for quantized weights."""
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        return None
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return DEFAULT_TOLERANCE.get(dtype)


def probe_logits(model: Any, input_ids: Any) -> Any:
    import torch

    with torch.no_grad():
        return model(input_ids=input_ids).logits.float().cpu()


def merge_adapter(adapter: Artifact, registry: Registry | None = None, name: str | None = None,
                  model: Any = None, tokenizer: Any = None, tolerance: float | None = None) -> Artifact:
    """Fold ``adapter`` into its base; ``model`` may be the PEFT model already in memory.

    Raises :class:`MergeCheckError` when the merged logits differ from base + adapter by more than ``tolerance``
    (default: by dtype, see :data:`DEFAULT_TOLERANCE`)."""
    registry = registry or Registry()
    base = base_of(adapter, registry)
    if model is None:
        loaded = load_model(adapter, registry)
        model, tokenizer = loaded.model, loaded.tokenizer
    model.eval()  # LoRA dropout off: base + adapter exactly as it will serve
    device = next(model.parameters()).device
    input_ids = tokenizer(PROBE_TEXT, return_tensors="pt").input_ids.to(device)
    expected = probe_logits(model, input_ids)
    merged = model.merge_and_unload()
    merged.eval()
    diff = float((probe_logits(merged, input_ids) - expected).abs().max())
    limit = tolerance if tolerance is not None else default_tolerance(merged)
    if limit is not None and not diff <= limit:  # also catches NaN
        raise MergeCheckError(
            f"merging adapter {adapter.id} changed the model: the merged logits differ from base + adapter by "
            f"{diff:.3g} (tolerance {limit:g}) on the probe text; nothing was registered")
    metrics = {"merge_max_abs_logit_diff": diff, "merge_logit_tolerance": limit,
               "merge_probe_tokens": int(input_ids.shape[1])}
    with registry.writer("model", name or f"{adapter.name}-merged", license=adapter.license,
                         source="kaiyuan merge (peft merge_and_unload)", stage="merge",
                         parents=[Parent(adapter.id, "merge"), Parent(base.id, "base_model")],
                         config={"stage": "merge", "adapter": adapter.id, "base_model": base.id},
                         chat_template=tokenizer.chat_template, metrics=metrics) as writer:
        merged.save_pretrained(writer.path, safe_serialization=True)
        tokenizer.save_pretrained(writer.path)
    assert writer.artifact is not None
    return writer.artifact
