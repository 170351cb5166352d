"""Several LoRA adapters of one base model, served side by side, with the base weights loaded once.

``AdapterSet.from_references(["tiny-llama", "sft-a", "sft-b"])`` gives one engine per served name::

    {"tiny-llama": ..., "tiny-llama:sft-a": ..., "tiny-llama:sft-b": ...}

All engines of one base share a single ``PeftModel`` that holds every adapter under its own (internal) name, and
one :class:`~kaiyuan.serve.engines.transformers_batching.BatchScheduler` that runs their requests in batches:
requests naming the same adapter (or the bare base) share forward passes, requests for different ones take turns
batch by batch. Around every forward pass the scheduler takes the base's lock and activates the batch's adapter
(``set_adapter``; the base itself runs inside ``disable_adapter()``); ``embed`` does the same around its call.
Different bases run independently.

An adapter whose base is not among the references gets that base loaded too (only its adapters are listed then,
not the base under its own name). A reference that is a plain model with no adapter is served by a plain
:class:`TransformersEngine`, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.hub.registry import Artifact, Registry
from kaiyuan.models import base_of, load_model, load_tokenizer, resolve_model
from kaiyuan.serve.engines.base import Embedding, Generation, SamplingParams, StreamEvent
from kaiyuan.serve.engines.transformers_engine import TransformersEngine


def adapter_model_id(base: Artifact, adapter: Artifact) -> str:
    """The name an adapter is served under: ``<base name>:<adapter name>``."""
    return f"{base.name}:{adapter.name}"


@dataclass
class SharedModel:
    """One loaded base model (a ``PeftModel`` once adapters are attached) and the lock that guards its state."""

    model: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: dict[str, str] = field(default_factory=dict)  # adapter artifact id -> PEFT adapter name

    @contextmanager
    def selected(self, adapter: str | None) -> Iterator[None]:
        """Hold the lock with ``adapter`` active (``None``: the base model, every adapter disabled)."""
        with self.lock:
            if adapter is None:
                if hasattr(self.model, "disable_adapter"):
                    with self.model.disable_adapter():
                        yield
                else:
                    yield
            else:
                self.model.set_adapter(adapter, inference_mode=True)
                yield


class AdapterEngine:
    """An engine for one served name: a :class:`TransformersEngine` over the shared model whose requests the shared
    scheduler runs with its adapter (or the bare base) active; ``embed`` switches to it under the shared lock."""

    def __init__(self, engine: TransformersEngine, shared: SharedModel, adapter: str | None) -> None:
        self.engine = engine
        self.shared = shared
        self.adapter = adapter
        self.model_id = engine.model_id
        self.context_length = engine.context_length

    def __getattr__(self, name: str) -> Any:  # tokenizer, render, model, … (not the private, unlocked helpers)
        if name.startswith("_") or name in ("engine", "shared", "adapter"):
            raise AttributeError(name)
        return getattr(self.engine, name)

    # generation: the scheduler selects the adapter around each forward pass (holding the lock here would deadlock)

    def generate(self, messages: list[dict[str, Any]], params: SamplingParams) -> Generation:
        return self.engine.generate(messages, params)

    def stream(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[StreamEvent]:
        return self.engine.stream(messages, params)

    def complete(self, prompt: str | list[int], params: SamplingParams) -> Generation:
        return self.engine.complete(prompt, params)

    def complete_stream(self, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]:
        return self.engine.complete_stream(prompt, params)

    def embed(self, inputs: list[str] | list[list[int]]) -> list[Embedding]:
        with self.shared.selected(self.adapter):
            return self.engine.embed(inputs)


def _adapter_tokenizer(adapter: Artifact, base_tokenizer: Any) -> Any:
    """The adapter's own tokenizer when it ships one (its chat template may differ), else the base's."""

    if not (adapter.path / "tokenizer_config.json").is_file():
        return base_tokenizer
    tokenizer = load_tokenizer(adapter.path)
    if len(tokenizer) != len(base_tokenizer):
        raise KaiyuanError(f"adapter {adapter.name!r} changes the vocabulary ({len(tokenizer)} tokens, the base has "
                           f"{len(base_tokenizer)}); it cannot share the base model with other adapters")
    return tokenizer


class AdapterSet:
    """Engines for models and adapters, one per served name, with each base model loaded once."""

    @staticmethod
    def from_references(refs: list[str], registry: Registry | None = None, dtype: str = "float32",
                        max_batch_size: int = 8) -> dict[str, Any]:
        from kaiyuan.serve.engines.transformers_batching import BatchScheduler

        registry = registry or Registry()
        bases: dict[str, Artifact] = {}  # base id -> base artifact, in order of first mention
        served_bases: set[str] = set()
        adapters: dict[str, list[Artifact]] = {}  # base id -> its adapters
        for ref in refs:
            artifact = resolve_model(ref, registry)
            if artifact.kind == "adapter":
                base = base_of(artifact, registry)
                if base.kind != "model":
                    raise KaiyuanError(f"adapter {artifact.name!r}: its base {base.name!r} is a {base.kind}")
                bases.setdefault(base.id, base)
                group = adapters.setdefault(base.id, [])
                if all(a.id != artifact.id for a in group):
                    group.append(artifact)
            else:
                bases.setdefault(artifact.id, artifact)
                served_bases.add(artifact.id)

        engines: dict[str, Any] = {}

        def add(name: str, engine: Any) -> None:
            if name in engines:
                raise KaiyuanError(f"two models would be served as {name!r}; register one under another name")
            engines[name] = engine

        for base_id, base in bases.items():
            loaded = load_model(base, registry, dtype=dtype)  # the base weights: loaded once per base
            group = adapters.get(base_id, [])
            if not group:
                add(base.name, TransformersEngine(loaded.model, loaded.tokenizer, base.name, max_batch_size))
                continue
            from peft import PeftModel

            shared = SharedModel(model=None)
            model: Any = loaded.model
            for i, adapter in enumerate(group):
                peft_name = f"adapter{i}"  # PEFT names become module keys: no dots or slashes from artifact names
                if i == 0:
                    model = PeftModel.from_pretrained(model, adapter.path, adapter_name=peft_name)
                else:
                    model.load_adapter(adapter.path, adapter_name=peft_name)
                shared.adapters[adapter.id] = peft_name
            model.eval()
            shared.model = model
            scheduler = BatchScheduler(model, max_batch_size, select=shared.selected, name=base.name)
            if base_id in served_bases:
                engine = TransformersEngine(model, loaded.tokenizer, base.name, scheduler=scheduler)
                add(base.name, AdapterEngine(engine, shared, None))
            for adapter in group:
                name = adapter_model_id(base, adapter)
                tokenizer = _adapter_tokenizer(adapter, loaded.tokenizer)
                peft_name = shared.adapters[adapter.id]
                engine = TransformersEngine(model, tokenizer, name, scheduler=scheduler, adapter=peft_name)
                add(name, AdapterEngine(engine, shared, peft_name))
        return engines
