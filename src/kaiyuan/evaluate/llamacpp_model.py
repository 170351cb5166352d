"""Log-likelihood requests on a GGUF model through llama.cpp (llama-cpp-python), for CPUs and edge devices.

The same request semantics as :mod:`kaiyuan.evaluate.language_model`, with llama.cpp's own tokenizer and
quantized weights: scores are comparable in kind, not bit-equal to the transformers engine.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from kaiyuan.errors import KaiyuanError
from kaiyuan.evaluate.language_model import TransformersLM
from kaiyuan.progress import progress_bar


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _LlamaTokenizer:
    """The slice of a transformers tokenizer that :class:`TransformersLM` uses, backed by llama.cpp."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.bos_token_id = llm.token_bos() if llm.token_bos() >= 0 else None
        self.eos_token_id = llm.token_eos()
        self.pad_token_id = self.eos_token_id
        self.bos_token = None

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def decode(self, tokens: Any, skip_special_tokens: bool = True) -> str:
        return self.llm.detokenize([int(t) for t in tokens]).decode("utf-8", errors="replace")


class LlamaCppLM(TransformersLM):
    def __init__(self, path: Path, batch_size: int = 32, cache: bool = True, n_ctx: int = 2048) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise KaiyuanError("the llama.cpp engine needs llama-cpp-python (pip install llama-cpp-python)") from None
        if not path.is_file():
            raise KaiyuanError(f"{path}: no such GGUF file")
        self.llm = Llama(model_path=str(path), logits_all=True, n_ctx=n_ctx, n_batch=512, verbose=False)
        self.model_hash = f"gguf-{file_sha256(path)[:16]}"

        class _Config:
            max_position_embeddings = n_ctx

        class _Shell:
            config = _Config()

        super().__init__(_Shell(), _LlamaTokenizer(self.llm), self.model_hash, batch_size=batch_size,
                         max_length=n_ctx, cache=cache)

    def score_tokens(self, pairs: list[tuple[list[int], list[int]]], description: str) -> list[tuple[float, bool]]:
        """One llama.cpp evaluation per distinct input (the choices of a question with one-token answers share
        it); log-softmax of the last positions' logits."""
        import numpy as np

        inputs: dict[tuple[int, ...], int] = {}
        keyed = []
        for context, continuation in pairs:
            key = tuple((context + continuation)[-(self.max_length + 1):][:-1])
            inputs[key] = max(inputs.get(key, 0), len(continuation))
            keyed.append((key, continuation))
        tables = {}
        with progress_bar() as progress:
            task = progress.add_task(description, total=len(inputs))
            for key, keep in inputs.items():
                self.llm.reset()
                self.llm.eval(list(key))
                logits = np.asarray(self.llm.scores[: len(key)], dtype=np.float64)[-keep:]
                logits = logits - logits.max(-1, keepdims=True)
                tables[key] = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
                self.forward_passes += 1
                progress.advance(task)
        results = []
        for key, continuation in keyed:
            table = tables[key][-len(continuation):]
            picked = table[np.arange(len(continuation)), continuation]
            results.append((float(picked.sum()), bool((table.argmax(-1) == np.asarray(continuation)).all())))
        return results

    def _generate(self, requests: list[tuple[str, list[str]]], max_new_tokens: int, description: str) -> list[str]:
        outputs = []
        with progress_bar() as progress:
            task = progress.add_task(description, total=len(requests))
            for context, until in requests:
                reply = self.llm.create_completion(context, max_tokens=max_new_tokens, temperature=0,
                                                   stop=[s for s in until if s] or None)
                outputs.append(reply["choices"][0]["text"])
                progress.advance(task)
        return outputs
