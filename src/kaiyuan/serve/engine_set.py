"""The engines ``kaiyuan serve`` runs, by served name: transformers models and their LoRA adapters (each base
loaded once, adapters as ``<base>:<adapter>``), .gguf files on llama.cpp, or vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.serve.engines.adapters import AdapterSet


def build_engines(models: list[str], engine: str = "auto", llamacpp_options: dict[str, Any] | None = None,
                  max_batch_size: int = 8) -> dict[str, Any]:
    """Engines by served name, as ``kaiyuan serve`` builds them (transformers models/adapters, .gguf, vLLM).
    ``max_batch_size``: sequences a transformers model decodes together."""

    if engine not in ("auto", "transformers", "llamacpp", "vllm"):
        raise KaiyuanError(f"unknown engine {engine!r}: choose auto, transformers, llamacpp or vllm")
    engines: dict[str, Any] = {}

    def add(name: str, served: Any) -> None:
        if name in engines:
            raise KaiyuanError(f"two models would be served as {name!r}")
        engines[name] = served

    hf_refs: list[str] = []
    for ref in models:
        kind = engine if engine != "auto" else ("llamacpp" if ref.endswith(".gguf") else "transformers")
        if kind == "llamacpp":
            from kaiyuan.serve.engines.llamacpp_engine import LlamaCppEngine

            if not ref.endswith(".gguf"):
                raise KaiyuanError(f"{ref}: the llamacpp engine serves .gguf files")
            served = LlamaCppEngine.from_path(Path(ref), **(llamacpp_options or {}))
            add(served.model_id, served)
        elif kind == "vllm":
            from kaiyuan.serve.engines.vllm_engine import VLLMEngine

            served = VLLMEngine.from_reference(ref)
            add(served.model_id, served)
        else:
            hf_refs.append(ref)
    if hf_refs:

        for name, served in AdapterSet.from_references(hf_refs, max_batch_size=max_batch_size).items():
            add(name, served)
    return engines
