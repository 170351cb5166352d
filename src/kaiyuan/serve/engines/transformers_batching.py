"""Batched decoding for the transformers engine: one scheduler thread runs the forward passes of every request to a
model together.

Requests wait in a queue. The scheduler takes up to ``max_batch_size`` of them, left-pads their prompts and runs one
prefill (attention mask + position ids from the mask, a fresh ``DynamicCache``), then one decode step after another
for all rows at once. Each row samples on its own (greedy, or temperature / top-k / top-p drawn from its own
``torch.Generator`` seeded from the request's seed, so a seeded request gives the same text alone or batched), with
its own generation-config processors (transformers' repetition penalty, n-gram ban, minimum length, …), logits
processor (a JSON-schema constraint) and log-probabilities, and stops on its own
stop tokens or token budget. Finished and abandoned rows leave the batch (their cache rows are dropped) and their
consumers learn at once.

Newcomers join a running batch (continuous batching) when its cache is a plain ``DynamicCache`` of full-attention
layers: they are prefilled on their own, and their keys and values are left-padded to the batch's width and stacked
onto it; columns no row uses any more are cut off when rows leave. Caches of other shapes (sliding windows, linear
attention, quantized) are not spliced: newcomers wait until the running batch is done (dynamic batching).

Requests carry a ``group`` (the LoRA adapter they run with) and share a forward pass only with requests of the same
group; ``select(group)`` is held around every forward pass (to take the model's lock and switch adapters). Groups
take turns in arrival order: a newcomer does not join while a request of another group waits before it.

Token ids (with their log-probabilities and the top alternatives', when asked for) go to the request's queue;
turning them into text, cutting it at stop strings and aligning log-probabilities is the consumer's job (it cancels
the request once it has all the text it wants). The thread runs while there is work and ends when idle; ``submit``
starts another.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from kaiyuan.serve.engines.base import SamplingParams, is_greedy
from kaiyuan.serve.engines.generation_processors import GenerationProcessors

Select = Callable[[Hashable], AbstractContextManager[Any]]


@dataclass
class SchedulerStats:
    """Counters the scheduler thread updates (read them from any thread; they only grow)."""

    forward_calls: int = 0  # model forward passes (prefills and decode steps)
    tokens_generated: int = 0  # sampled tokens, all requests together
    max_batch_sequences: int = 0  # most sequences in one forward pass
    max_running: int = 0  # most sequences in the running batch at once
    requests_joined: int = 0  # requests that joined a batch already decoding
    requests_finished: int = 0  # completed, abandoned or failed
    requests_cancelled: int = 0  # ended by their consumer before they finished (a Stop, a disconnect, a stop string)


class TokenLogprobs(NamedTuple):
    """A sampled token's log-probability and the ``top_logprobs`` most likely tokens' (id, log-probability): from
    ``log_softmax`` of the logits after the repetition penalty, before the constraint and the sampling warpers (the
    model's own distribution)."""

    logprob: float
    top: list[tuple[int, float]]


@dataclass(eq=False)
class BatchRequest:
    """One generation request, as the scheduler sees it.

    ``constraint`` is a logits processor for this row alone, called as ``constraint(generated_ids [1, n],
    scores [1, vocab])`` (the JSON-schema constraint).
    """

    prompt_ids: list[int]
    params: SamplingParams
    stop_ids: Collection[int]
    group: Hashable = None
    constraint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    processors: GenerationProcessors | None = None  # the generation-config fields (repetition penalty, n-grams, …)
    generated: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" (a stop token) | "length", once finished
    cancelled: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)  # no more tokens will be produced
    out: queue.Queue[tuple[int, TokenLogprobs | None] | BaseException | None] = field(default_factory=queue.Queue)
    generator: torch.Generator | None = None

    def tokens(self) -> Iterator[tuple[int, TokenLogprobs | None]]:
        """Each generated token id and its log-probabilities (None unless asked for); raises the scheduler's error."""
        while (item := self.out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    @property
    def position(self) -> int:  # the position of the last generated token, decoded next
        return len(self.prompt_ids) + len(self.generated) - 1


def sample(scores: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Greedy when ``temperature`` is 0; else temperature, top-k and top-p (as transformers' warpers apply them, in
    that order) and a draw from ``generator``. ``scores``: one row of logits."""
    if is_greedy(params.temperature):
        return int(scores.argmax())
    scores = scores / params.temperature
    if 0 < params.top_k < scores.numel():
        scores = scores.masked_fill(scores < torch.topk(scores, params.top_k).values[-1], float("-inf"))
    if params.top_p < 1:  # drop the least likely tokens whose mass stays within 1 - top_p (keep at least one)
        ordered, order = torch.sort(scores)
        drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= 1 - params.top_p
        drop[-1] = False
        scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(scores.softmax(dim=-1), 1, generator=generator))


def adjust_logits(scores: torch.Tensor, generated: list[int], params: SamplingParams) -> torch.Tensor:
    """OpenAI's presence and frequency penalties (over the tokens generated so far) and ``logit_bias``, on one row
    of logits: ``logit[j] - count[j] * frequency_penalty - (count[j] > 0) * presence_penalty + bias[j]``."""
    if (params.presence_penalty or params.frequency_penalty) and generated:
        ids, counts = torch.unique(torch.tensor(generated, device=scores.device), return_counts=True)
        penalty = counts.to(scores.dtype) * params.frequency_penalty + params.presence_penalty
        scores = scores.index_add(0, ids, -penalty)
    if params.logit_bias:
        ids = torch.tensor(list(params.logit_bias), device=scores.device)
        scores = scores.index_add(0, ids, torch.tensor(list(params.logit_bias.values()), dtype=scores.dtype,
                                                       device=scores.device))
    return scores


def _logprobs(row: torch.Tensor, token: int, top: int) -> TokenLogprobs:
    alternatives: list[tuple[int, float]] = []
    if top:
        values, indices = row.topk(min(top, row.numel()))
        alternatives = list(zip(indices.tolist(), values.tolist(), strict=True))
    return TokenLogprobs(float(row[token]), alternatives)


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _spliceable(cache: Any) -> bool:
    """Whether the cache is a plain DynamicCache of full-attention layers, whose rows can be padded and stacked."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    return (type(cache) is DynamicCache and not cache.offloading
            and all(type(layer) is DynamicLayer and layer.is_initialized for layer in cache.layers))


def _accepts(model: Any, argument: str) -> bool:
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PeftModel passes it on
    return argument in inspect.signature(base.forward).parameters


_on_scheduler_thread = threading.local()  # .active: this thread runs a scheduler's loop


class BatchScheduler:
    """Runs the requests for one model in batches on a thread of its own (see the module docstring)."""

    def __init__(self, model: Any, max_batch_size: int = 8, select: Select | None = None,
                 continuous: bool = True, name: str = "transformers") -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.model = model
        self.max_batch_size = max_batch_size
        self.continuous = continuous  # let newcomers join a running batch when its cache allows
        self.name = name
        lock = threading.Lock()
        self.select: Select = select or (lambda group: lock)
        self.stats = SchedulerStats()
        self._keep_last_logits = _accepts(model, "logits_to_keep")
        self._mutex = threading.Lock()  # guards _waiting and _thread
        self._waiting: deque[BatchRequest] = deque()
        self._thread: threading.Thread | None = None
        # the running batch: touched by the scheduler thread only
        self._rows: list[BatchRequest] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [rows, cache width]: 1 where a row has a token
        self._spliceable = False
        self.last_progress = time.monotonic()  # when the thread last admitted work or ran a forward pass
        self.last_error: BaseException | None = None  # what ended the thread last time it failed
        self._in_forward = False  # a forward pass is running (its rows may be in neither list yet)

    def health(self, stall_after_s: float) -> str | None:
        """What is wrong (for /health), or None: work waiting while no forward pass has ended for too long."""
        busy = bool(self._rows or self._waiting or self._in_forward)
        idle_for = time.monotonic() - self.last_progress
        if busy and idle_for > stall_after_s:
            return f"batching thread stalled: no forward pass ended for {idle_for:.0f} s with work waiting"
        return None

    # -- any thread ----------------------------------------------------------------------------------------------

    def submit(self, request: BatchRequest) -> None:
        with self._mutex:
            self._waiting.append(request)
            if self._thread is None:
                self.last_progress = time.monotonic()
                self._thread = threading.Thread(target=self._loop, name=f"batching-{self.name}", daemon=True)
                self._thread.start()

    def cancel(self, request: BatchRequest) -> None:
        """Stop ``request`` (its consumer went away) and wait until no more tokens are produced for it (the
        scheduler notices before its next forward pass).

        Called on the scheduler thread itself — a consumer's generator can be closed there by the garbage
        collector — it only marks the request: that thread is the one that releases it, so waiting would wait
        forever."""
        if not request.cancelled.is_set() and request.finish_reason is None:
            with self._mutex:
                self.stats.requests_cancelled += 1
        request.cancelled.set()
        if getattr(_on_scheduler_thread, "active", False):
            return
        while not request.released.wait(timeout=1):
            with self._mutex:
                running = self._thread is not None and self._thread.is_alive()
            if sys.is_finalizing() or not running:  # the scheduler thread is gone (with the interpreter)
                return

    @property
    def active_requests(self) -> int:
        """Sequences in the running batch (not counting those waiting)."""
        return len(self._rows)

    @property
    def kv_cells_in_use(self) -> int:
        """Token positions the running batch holds keys and values for (0 once nothing runs)."""
        mask = self._mask
        return int(mask.sum()) if mask is not None and self._rows else 0

    @property
    def waiting_requests(self) -> int:
        """Requests queued for a place in the batch."""
        return len(self._waiting)

    # -- the scheduler thread ------------------------------------------------------------------------------------

    def _loop(self) -> None:
        _on_scheduler_thread.active = True
        try:
            with torch.inference_mode():
                while (newcomers := self._admit()) is not None:
                    if newcomers:
                        self._prefill(newcomers)
                    if self._rows:
                        self._decode()
        except BaseException as exc:  # a bug: fail everything rather than leave consumers waiting; the next
            self.last_error = exc  # submit starts a fresh thread
            with self._mutex:
                self._thread = None
                waiting, self._waiting = list(self._waiting), deque()
            self._fail(self._rows + waiting, exc)
            self._reset()
            raise

    def _admit(self) -> list[BatchRequest] | None:
        """The waiting requests that start now ([] if none may; None: no work left, and the thread ends)."""
        self._drop([row for row in self._rows if row.cancelled.is_set()])
        with self._mutex:
            for request in [r for r in self._waiting if r.cancelled.is_set()]:
                self._waiting.remove(request)
                self._release(request)
            if not self._rows and not self._waiting:
                self._thread = None
                return None
            if self._rows and not (self.continuous and self._spliceable):
                return []
            group = self._rows[0].group if self._rows else self._waiting[0].group
            taken: list[BatchRequest] = []
            while (self._waiting and self._waiting[0].group == group
                   and len(self._rows) + len(taken) < self.max_batch_size):
                taken.append(self._waiting.popleft())
            return taken

    def _forward(self, group: Hashable, **inputs: Any) -> Any:
        self._in_forward = True
        try:
            with self.select(group):
                output = self.model(**inputs, use_cache=True)
        finally:
            self._in_forward = False
            self.last_progress = time.monotonic()
        rows = inputs["input_ids"].shape[0]
        self.stats.forward_calls += 1
        self.stats.max_batch_sequences = max(self.stats.max_batch_sequences, rows)
        return output

    def _prefill(self, requests: list[BatchRequest]) -> None:
        device = self.model.device
        width = max(len(r.prompt_ids) for r in requests)
        extra = {"logits_to_keep": 1} if self._keep_last_logits else {}
        try:
            ids = torch.tensor([[0] * (width - len(r.prompt_ids)) + r.prompt_ids for r in requests], device=device)
            mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in requests],
                                device=device)
            positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
            output = self._forward(requests[0].group, input_ids=ids, attention_mask=mask, position_ids=positions,
                                   **extra)
        except Exception as exc:  # the running batch is untouched: only the newcomers fail
            self._fail(requests, exc)
            return
        try:
            self._merge(requests, output.past_key_values, mask)
        except Exception as exc:  # the batch's cache may be half spliced: every row fails
            self._fail(self._rows + requests, exc)
            self._reset()
            return
        logits = output.logits[:, -1]
        self._drop([r for i, r in enumerate(requests) if not self._advance(r, logits[i])])

    def _merge(self, requests: list[BatchRequest], cache: Any, mask: torch.Tensor) -> None:
        """Make the newcomers (prefilled into ``cache``) rows of the running batch."""
        if not self._rows:
            self._cache, self._mask = cache, mask
            self._spliceable = _spliceable(cache)
        else:
            assert self._mask is not None
            width = max(self._mask.shape[1], mask.shape[1])
            for layer, new in zip(self._cache.layers, cache.layers, strict=True):
                layer.keys = torch.cat([_pad_left(layer.keys, width, -2), _pad_left(new.keys, width, -2)])
                layer.values = torch.cat([_pad_left(layer.values, width, -2), _pad_left(new.values, width, -2)])
            self._mask = torch.cat([_pad_left(self._mask, width, -1), _pad_left(mask, width, -1)])
            self.stats.requests_joined += len(requests)
        self._rows.extend(requests)
        self.stats.max_running = max(self.stats.max_running, len(self._rows))

    def _decode(self) -> None:
        assert self._mask is not None
        rows, device = self._rows, self.model.device
        try:
            mask = torch.cat([self._mask, self._mask.new_ones(len(rows), 1)], dim=1)
            ids = torch.tensor([[r.generated[-1]] for r in rows], device=device)
            positions = torch.tensor([[r.position] for r in rows], device=device)
            output = self._forward(rows[0].group, input_ids=ids, attention_mask=mask, position_ids=positions,
                                   past_key_values=self._cache)
        except Exception as exc:  # the batch's cache may be spoilt: every row fails
            self._fail(rows, exc)
            self._reset()
            return
        self._mask = mask
        logits = output.logits[:, -1]
        self._drop([r for i, r in enumerate(rows) if not self._advance(r, logits[i])])

    def _advance(self, request: BatchRequest, logits: torch.Tensor) -> bool:
        """Sample ``request``'s next token from its row of logits and send it; False when the request is done."""
        if request.cancelled.is_set():
            return False
        try:
            scores = logits.float()
            processors = request.processors
            if processors:  # transformers' own processors, on this row alone (its ids unpadded)
                seen = processors.input_ids(request.prompt_ids, request.generated, scores.device)
                scores = processors.penalty(seen, scores[None])[0]
            row = torch.log_softmax(scores, dim=-1) if request.params.logprobs else None
            if processors:
                scores = processors.settle(processors.rest(seen, scores[None])[0])
            scores = adjust_logits(scores, request.generated, request.params)
            if request.constraint is not None:
                generated = torch.tensor([request.generated], dtype=torch.long)
                scores = request.constraint(generated, scores[None])[0]
            if request.generator is None and not is_greedy(request.params.temperature):
                request.generator = torch.Generator(device=scores.device)
                if request.params.seed is None:
                    request.generator.seed()
                else:
                    request.generator.manual_seed(request.params.seed)
            token = sample(scores, request.params, request.generator)
            logprobs = None if row is None else _logprobs(row, token, request.params.top_logprobs)
        except Exception as exc:  # a failing constraint fails its own request only
            self._fail([request], exc)
            return False
        request.generated.append(token)
        self.stats.tokens_generated += 1
        request.out.put((token, logprobs))
        if token in request.stop_ids:
            return self._finish(request, "stop")
        if len(request.generated) >= request.params.max_tokens:
            return self._finish(request, "length")
        return True

    def _finish(self, request: BatchRequest, reason: str) -> bool:
        request.finish_reason = reason
        request.out.put(None)
        self._release(request)
        return False

    def _release(self, request: BatchRequest) -> None:
        if not request.released.is_set():
            request.released.set()
            self.stats.requests_finished += 1

    def _fail(self, requests: list[BatchRequest], exc: BaseException) -> None:
        for request in requests:
            if not request.released.is_set():
                request.out.put(exc)
                self._release(request)

    def _drop(self, gone: list[BatchRequest]) -> None:
        """Take finished, failed and abandoned rows out of the running batch (and out of its cache)."""
        if not gone:
            return
        for request in gone:
            self._release(request)
        keep = [i for i, row in enumerate(self._rows) if row not in gone]
        if not keep:
            return self._reset()
        assert self._mask is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._rows = [self._rows[i] for i in keep]
        self._cache.reorder_cache(index)
        self._mask = self._mask[index]
        if self._spliceable:  # cut the columns no row uses any more (the longest rows may have left)
            first = int(self._mask.any(dim=0).int().argmax())
            if first:
                for layer in self._cache.layers:
                    layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
                self._mask = self._mask[:, first:]

    def _reset(self) -> None:
        self._rows, self._cache, self._mask, self._spliceable = [], None, None, False
