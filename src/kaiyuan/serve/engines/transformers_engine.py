"""A transformers engine for any HF model or adapter (one sequence at a time for now)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from kaiyuan.data.templates import end_of_turn_token_ids, prompt_text
from kaiyuan.serve.engines.base import ContextLengthError, Generation, SamplingParams, StreamEvent


class StopTrimmer:
    """Cut streamed text at the first stop string, holding back what might be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.pending += text
        hits = [self.pending.find(s) for s in self.stops if s in self.pending]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        hold = max((len(s) - 1 for s in self.stops), default=0)
        keep = 0
        for size in range(min(hold, len(self.pending)), 0, -1):
            if any(s.startswith(self.pending[-size:]) for s in self.stops):
                keep = size
                break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out

    def flush(self) -> str:
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out


class TokenStreamer:
    """A transformers streamer that yields text as each token arrives (not word by word).

    The generated ids are decoded as a whole each time and the new suffix is emitted, so multi-token
    characters come out whole; a trailing replacement character waits for the token that completes it.
    """

    def __init__(self, tokenizer: Any, timeout: float | None = None) -> None:
        self.tokenizer = tokenizer
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.timeout = timeout
        self.ids: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first passes the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        if len(text) > self.sent:
            self.queue.put(text[self.sent:])
            self.sent = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.sent:
            self.queue.put(text[self.sent:])
            self.sent = len(text)
        self.queue.put(None)

    def __iter__(self) -> Iterator[str]:
        while (item := self.queue.get(timeout=self.timeout)) is not None:
            yield item


class CancelledCriteria:
    """A stopping criterion that ends generation once ``event`` is set (client went away)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersEngine:
    def __init__(self, model: Any, tokenizer: Any, model_id: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.stop_token_ids = end_of_turn_token_ids(tokenizer)
        self._lock = threading.Lock()

    @classmethod
    def from_reference(cls, ref: str, model_id: str | None = None) -> TransformersEngine:
        from kaiyuan.models import load_model

        loaded = load_model(ref)
        return cls(loaded.model, loaded.tokenizer, model_id or loaded.artifact.name)

    def _prompt_ids(self, messages: list[dict[str, str]], params: SamplingParams) -> list[int]:
        text = prompt_text(self.tokenizer, messages)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) + params.max_tokens > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(ids) + params.max_tokens} tokens ({len(ids)} in the messages, {params.max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.")
        return ids

    def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Generation:
        text, finish = [], None
        for event in self.stream(messages, params):
            text.append(event.text)
            finish = event.finish or finish
        assert finish is not None
        finish.text = "".join(text)
        return finish

    def stream(self, messages: list[dict[str, str]], params: SamplingParams) -> Iterator[StreamEvent]:
        import torch
        prompt_ids = self._prompt_ids(messages, params)
        streamer = TokenStreamer(self.tokenizer)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([prompt_ids], device=self.model.device),
            "attention_mask": torch.ones(1, len(prompt_ids), dtype=torch.long, device=self.model.device),
            "max_new_tokens": params.max_tokens, "do_sample": sample, "streamer": streamer,
            "eos_token_id": self.stop_token_ids, "pad_token_id": self.tokenizer.pad_token_id
            or self.stop_token_ids[0],
            "temperature": params.temperature if sample else None, "top_p": params.top_p if sample else None,
            "top_k": None,
        }
        from transformers import StoppingCriteriaList

        cancelled = threading.Event()
        kwargs["stopping_criteria"] = StoppingCriteriaList([CancelledCriteria(cancelled)])
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    result["output"] = self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the caller below
                result["error"] = exc
                streamer.end()

        trimmer = StopTrimmer(params.stop)
        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            try:
                for piece in streamer:
                    out = trimmer.feed(piece)
                    if out:
                        yield StreamEvent(out)
            finally:  # also when the consumer stops early (client disconnected): stop generating
                cancelled.set()
                worker.join()
        if "error" in result:
            raise result["error"]
        tail = trimmer.flush()
        new_tokens = result["output"][0, len(prompt_ids):].tolist()
        ended = bool(new_tokens) and new_tokens[-1] in self.stop_token_ids
        finish_reason = "stop" if ended or trimmer.stopped or len(new_tokens) < params.max_tokens else "length"
        completion_tokens = sum(1 for t in new_tokens if t != kwargs["pad_token_id"] or t in self.stop_token_ids)
        yield StreamEvent(tail, Generation("", finish_reason, len(prompt_ids), completion_tokens))
