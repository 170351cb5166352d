"""A vLLM engine for GPU machines, behind the same interface as the transformers engine.

vLLM is imported lazily (it is not a dependency and needs a CUDA GPU). This uses vLLM's offline ``LLM`` class:
requests are run one at a time under a lock, and ``stream`` yields the whole generation as one event (no
token-by-token streaming yet). LoRA adapters are served with ``enable_lora`` and a ``LoRARequest`` per call.
JSON-schema constraints, tools, logprobs and the generation fields of a request (``GENERATION_FIELDS``) are not
supported here (UnsupportedRequestError).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from typing import Any

from kaiyuan.data.templates import prompt_text
from kaiyuan.errors import KaiyuanError
from kaiyuan.models import base_of, resolve_model
from kaiyuan.serve.engines.base import (
    ContextLengthError,
    Generation,
    SamplingParams,
    StreamEvent,
    UnsupportedRequestError,
    check_generation_fields,
)

VLLM_MISSING = "the vLLM engine needs a CUDA GPU and `pip install vllm`"


def vllm_available() -> bool:
    """vLLM is installed and a CUDA GPU is visible."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


class VLLMEngine:
    generation_fields: frozenset[str] = frozenset()  # none of GENERATION_FIELDS yet: a request setting one is refused

    def __init__(self, llm: Any, tokenizer: Any, model_id: str, lora: Any = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.lora = lora  # a vllm LoRARequest, or None for the base model
        self.context_length = int(llm.llm_engine.model_config.max_model_len)
        self._lock = threading.Lock()

    @classmethod
    def from_reference(cls, ref: str, model_id: str | None = None, **llm_options: Any) -> VLLMEngine:
        """An engine for a model or adapter reference (an adapter: its base with LoRA enabled)."""
        if not vllm_available():
            raise KaiyuanError(VLLM_MISSING)
        from vllm import LLM


        artifact = resolve_model(ref)
        if artifact.kind == "adapter":
            from vllm.lora.request import LoRARequest

            base = base_of(artifact)
            llm = LLM(model=str(base.path), enable_lora=True, **llm_options)
            lora = LoRARequest(artifact.name, 1, str(artifact.path))
            return cls(llm, llm.get_tokenizer(), model_id or f"{base.name}:{artifact.name}", lora)
        llm = LLM(model=str(artifact.path), **llm_options)
        return cls(llm, llm.get_tokenizer(), model_id or artifact.name)

    def _sampling(self, params: SamplingParams, prompt_tokens: int) -> Any:
        from vllm import SamplingParams as VSamplingParams

        if params.json_schema is not None or params.tools:
            raise UnsupportedRequestError("the vLLM engine does not support JSON schemas or tools yet")
        if params.logprobs:
            raise UnsupportedRequestError("the vLLM engine does not report logprobs yet")
        check_generation_fields(params.generation, self.generation_fields, "vLLM")
        max_tokens = params.max_tokens
        room = self.context_length - prompt_tokens
        if params.fit_context and room > 0:
            max_tokens = min(max_tokens, room)
        elif prompt_tokens + max_tokens > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, {max_tokens} in the "
                "completion). Please reduce the length of the prompt or completion.")
        return VSamplingParams(max_tokens=max_tokens, temperature=params.temperature, top_p=params.top_p,
                               top_k=params.top_k if params.top_k > 0 else -1, stop=params.stop or None,
                               seed=params.seed, presence_penalty=params.presence_penalty,
                               frequency_penalty=params.frequency_penalty, logit_bias=params.logit_bias)

    def _run(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        sampling = self._sampling(params, len(prompt_ids))
        with self._lock:
            outputs = self.llm.generate([{"prompt_token_ids": prompt_ids}], sampling, lora_request=self.lora,
                                        use_tqdm=False)
        out = outputs[0].outputs[0]
        finish = "length" if out.finish_reason == "length" else "stop"
        return Generation(out.text, finish, len(prompt_ids), len(out.token_ids))

    def _chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:

        return list(self.tokenizer(prompt_text(self.tokenizer, messages), add_special_tokens=False)["input_ids"])

    def _text_ids(self, prompt: str | list[int]) -> list[int]:
        ids = list(self.tokenizer(prompt)["input_ids"]) if isinstance(prompt, str) else list(prompt)
        if not ids:
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None
                   else self.tokenizer.eos_token_id]
        return ids

    def generate(self, messages: list[dict[str, Any]], params: SamplingParams) -> Generation:
        return self._run(self._chat_ids(messages), params)

    def stream(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[StreamEvent]:
        result = self.generate(messages, params)
        yield StreamEvent(result.text, Generation("", result.finish_reason, result.prompt_tokens,
                                                  result.completion_tokens))

    def complete(self, prompt: str | list[int], params: SamplingParams) -> Generation:
        return self._run(self._text_ids(prompt), params)

    def complete_stream(self, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]:
        result = self.complete(prompt, params)
        yield StreamEvent(result.text, Generation("", result.finish_reason, result.prompt_tokens,
                                                  result.completion_tokens))
