"""Merge a LoRA adapter into its base model and register the result."""

from __future__ import annotations

from typing import Any

from kaiyuan.hub.manifest import Parent
from kaiyuan.hub.registry import Artifact, ArtifactWriter, Registry
from kaiyuan.models import base_of, load_model


def merge_adapter(adapter: Artifact, registry: Registry | None = None, name: str | None = None,
                  model: Any = None, tokenizer: Any = None) -> Artifact:
    """Fold ``adapter`` into its base; ``model`` may be the PEFT model already in memory."""
    registry = registry or Registry()
    base = base_of(adapter, registry)
    if model is None:
        loaded = load_model(adapter, registry)
        model, tokenizer = loaded.model, loaded.tokenizer
    merged = model.merge_and_unload()
    merged.eval()
    with ArtifactWriter("model", name or f"{adapter.name}-merged", license=adapter.license,
                        source="kaiyuan merge (peft merge_and_unload)",
                        parents=[Parent(adapter.id, "merge"), Parent(base.id, "base_model")],
                        config={"stage": "merge", "adapter": adapter.id, "base_model": base.id},
                        chat_template=tokenizer.chat_template) as writer:
        merged.save_pretrained(writer.path, safe_serialization=True)
        tokenizer.save_pretrained(writer.path)
    assert writer.artifact is not None
    return writer.artifact
