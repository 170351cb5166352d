"""A llama.cpp engine for GGUF files (the CPU / edge serving path), with continuous batching.

One scheduler thread owns the llama.cpp context. Requests enter a queue; every loop iteration builds one
``llama_batch`` holding one decode token for every running sequence plus prefill tokens (chunked) of newly
admitted ones, each token tagged with its request's sequence id, and runs a single ``llama_decode``. Then
every sequence whose logits came out samples its next token (greedy, or temperature / top-p with a numpy
Generator seeded from the request's seed) and its text goes out through that request's own queue. At most
``n_parallel`` sequences run at once (each with its own ``n_ctx``-token slice of the KV cache); the others
wait in the queue.

Prompt caching: a finished sequence's KV cells stay in its slot, with the tokens they hold. A new request takes
the free slot that shares the longest prefix with its prompt, drops the cells after that prefix
(``llama_memory_seq_rm``) and prefills only the rest — chat prompts share the template and system prompt, so
time to first token falls (llama.cpp's server and llama-cpp-python reuse prefixes the same way). The prompt's
uncached tail is decoded in a smaller batch than a fresh prefill would use, which moves the logits in the last
float bits — enough to change a sampled token — so a request with a ``seed`` is always prefilled afresh: same
seed and request, same text.

Per request, as the transformers engine does them: log-probabilities (``log_softmax`` of the raw logits row, taken
before the JSON grammar and before temperature / top-k / top-p), JSON-constrained decoding (``json_schema``, through
a llama.cpp grammar sampler of the request's own, which masks the logits row before sampling; end of generation is
allowed only once the JSON is complete) and tools (rendered through the chat template, or described in a Hermes-style
system message when the template does not know ``tools``) and the generation fields a request sets (``extra_body``:
repetition penalty, no-repeat n-grams, minimum length, suppressed and banned tokens, …, as transformers' own logits
processors apply them, on the row llama.cpp returns). The other sequences in the batch are not affected.
"""

from __future__ import annotations

import codecs
import ctypes
import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kaiyuan.serve.engines.base import (
    GENERATION_FIELDS,
    STALL_AFTER_S,
    ContextLengthError,
    EngineUnavailableError,
    Generation,
    SamplingParams,
    StreamEvent,
    TokenLogprob,
    UnsupportedRequestError,
    check_generation_fields,
    check_generation_tokens,
    check_logit_bias,
    is_greedy,
)
from kaiyuan.serve.engines.chat_messages import (
    LogprobAligner,
    SpecialTokenShield,
    StopTrimmer,
    collect,
    describe_tools,
    template_message,
)


@dataclass
class SchedulerStats:
    """Counters the scheduler thread updates (read them from any thread; they only grow)."""

    decode_calls: int = 0  # llama_decode calls
    tokens_generated: int = 0  # sampled tokens, all requests together
    max_batch_sequences: int = 0  # most distinct sequences in one llama_decode batch
    max_running: int = 0  # most sequences running at once
    requests_finished: int = 0  # completed, abandoned or failed
    requests_cancelled: int = 0  # stopped by their consumer before they finished (a client's Stop, a disconnect)
    prompt_tokens_cached: int = 0  # prompt tokens whose KV cells were reused instead of prefilled


@dataclass
class _Request:
    prompt_ids: list[int]
    params: SamplingParams
    rng: np.random.Generator
    out: queue.Queue[StreamEvent | BaseException] = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    seq_id: int = -1
    prefilled: int = 0  # prompt tokens already in the KV cache
    cached: int = 0  # of those, reused from the slot's previous sequence
    kv_tokens: list[int] = field(default_factory=list)  # the tokens whose KV cells this sequence holds
    pending: int = -1  # the last sampled token, to be decoded next
    completion_tokens: int = 0
    generated: list[int] = field(default_factory=list)  # the sampled tokens (for presence / frequency penalties)
    decoder: Any = None
    trimmer: StopTrimmer | None = None
    grammar: _Grammar | None = None  # the JSON constraint
    processors: Any = None  # GenerationProcessors: the request's generation fields (transformers' processors)
    stop_ids: frozenset[int] = frozenset()  # tokens besides end-of-generation ones that end it (eos_token_id)
    aligner: LogprobAligner = field(default_factory=LogprobAligner)  # logprob entries not yet sent
    emitted: int = 0  # characters of text sent

    @property
    def position(self) -> int:  # position of ``pending`` in the sequence
        return len(self.prompt_ids) + self.completion_tokens - 1


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def adjust_logits(logits: np.ndarray, generated: list[int], params: SamplingParams) -> np.ndarray:
    """OpenAI's presence and frequency penalties (over the tokens generated so far) and ``logit_bias`` on a copy of
    ``logits`` (the transformers engine's rule); ``logits`` itself when there is nothing to apply."""
    penalize = (params.presence_penalty or params.frequency_penalty) and generated
    if not penalize and not params.logit_bias:
        return logits
    out = np.array(logits, dtype=np.float32, copy=True)
    if penalize:
        ids, counts = np.unique(np.asarray(generated, dtype=np.int64), return_counts=True)
        out[ids] -= (counts * params.frequency_penalty + params.presence_penalty).astype(np.float32)
    for token, bias in (params.logit_bias or {}).items():
        out[token] += np.float32(bias)
    return out


def sample_token(logits: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> int:
    """Greedy when ``temperature`` is 0, else temperature + top-k + nucleus (top-p) sampling drawn from ``rng``."""
    if is_greedy(params.temperature):
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / params.temperature
    top_k = getattr(params, "top_k", 0) or 0
    if 0 < top_k < len(scaled):
        scaled[scaled < np.partition(scaled, -top_k)[-top_k]] = -np.inf
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    if params.top_p < 1:  # the smallest set of most likely tokens whose mass reaches top_p (at least one)
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, params.top_p)) + 1]
        kept = probs[keep]
        index = int(np.searchsorted(np.cumsum(kept), rng.random() * kept.sum(), side="right"))
        return int(keep[min(index, len(keep) - 1)])
    cumulative = np.cumsum(probs)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(probs) - 1)


@lru_cache(maxsize=64)
def _grammar_text(schema_json: str) -> str:
    """The GBNF grammar for a JSON schema: llama.cpp's JSON grammar for any object (``json_object``), else the schema
    converted by llama-cpp-python (which, as llama.cpp's, allows at most one space between tokens)."""
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if json.loads(schema_json) == {"type": "object"}:
        return JSON_GBNF
    try:
        return json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter raises whatever it meets (ValueError, KeyError, NotImplementedError)
        raise UnsupportedRequestError(f"the JSON schema cannot be turned into a grammar: {exc!r}",
                                      param="response_format") from exc


class _Grammar:
    """A request's llama.cpp grammar sampler (``llama_sampler_init_grammar``), freed along with the request."""

    def __init__(self, llama: Any, vocab: Any, text: str) -> None:
        self._free = llama.llama_sampler_free
        self.sampler = llama.llama_sampler_init_grammar(vocab, text.encode("utf-8"), b"root")
        if not self.sampler:  # NULL: llama.cpp could not parse it
            raise UnsupportedRequestError("llama.cpp rejected the grammar of the JSON schema")

    def __del__(self) -> None:
        if getattr(self, "sampler", None):
            self._free(self.sampler)
            self.sampler = None


class LlamaCppEngine:
    def __init__(self, model: Any, model_id: str, chat_template: str | None = None, n_ctx: int = 2048,
                 n_parallel: int = 4, n_batch: int = 512, n_threads: int | None = None,
                 flash_attn: bool = False, prompt_cache: bool = True) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if n_parallel < 1 or n_parallel > llama_cpp.llama_max_parallel_sequences():
            raise ValueError(f"n_parallel must be between 1 and {llama_cpp.llama_max_parallel_sequences()}")
        self._llama = llama_cpp
        self.model = model  # a llama_cpp._internals.LlamaModel
        self.model_id = model_id
        self.n_parallel = n_parallel
        self.n_batch = max(n_batch, n_parallel)
        self.metadata = model.metadata()
        template = chat_template or self.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model_id}: the GGUF file has no tokenizer.chat_template; pass chat_template")
        self.chat_template = template
        self.bos_id, self.eos_id = model.token_bos(), model.token_eos()
        bos_text = model.token_get_text(self.bos_id) if self.bos_id >= 0 else ""
        eos_text = model.token_get_text(self.eos_id) if self.eos_id >= 0 else ""
        self.formatter = Jinja2ChatFormatter(template, eos_token=eos_text, bos_token=bos_text,
                                             add_generation_prompt=True)
        self.n_vocab = model.n_vocab()
        vocab = model.vocab
        self._eog = np.array([bool(llama_cpp.llama_vocab_is_eog(vocab, i)) for i in range(self.n_vocab)])
        # control tokens (<|im_start|> …) add no text; the grammar sampler would read their names as text
        self._special = self._eog | np.array([bool(llama_cpp.llama_vocab_is_control(vocab, i))
                                              for i in range(self.n_vocab)])
        self._control = self._special & ~self._eog
        self._token_entries: dict[int, tuple[str, list[int]]] = {}
        self._stop_ids = [int(i) for i in np.flatnonzero(self._eog)]  # the eos list of the generation processors
        self.generation_defaults: dict[str, Any] = {}  # a GGUF file carries no generation_config.json

        cores = os.cpu_count() or 1
        # as llama-cpp-python's Llama(): half the cores for one-token decode steps (the server's own Python threads
        # need the rest), all of them for batches of several tokens
        threads = n_threads or max(cores // 2, 1)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_parallel  # a separate n_ctx-token KV stream per sequence (kv_unified off)
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = n_parallel
        params.kv_unified = False
        params.n_threads = threads
        params.n_threads_batch = n_threads or cores
        params.no_perf = True
        # llama.cpp's default (auto) turns flash attention on, which changes the numerics; off matches Llama()
        params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        self.context = _internals.LlamaContext(model=model, params=params, verbose=False)
        self.ctx = self.context.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.context_length = min(n_ctx, int(llama_cpp.llama_n_ctx_seq(self.ctx)))
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        # candidate arrays for the grammar samplers (the scheduler thread's): the whole vocabulary, and one token
        self._candidates = _internals.LlamaTokenDataArray(n_vocab=self.n_vocab)
        self._single = _internals.LlamaTokenDataArray(n_vocab=1)

        self.stats = SchedulerStats()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._running: list[_Request] = []
        self._free_seqs = list(range(n_parallel - 1, -1, -1))
        self.prompt_cache = prompt_cache
        self._slot_tokens: dict[int, list[int]] = {}  # free slot → the tokens its KV cells still hold
        self._closed = threading.Event()  # no new requests (closed, or the scheduler died)
        self._submit = threading.Lock()
        self._freed = False
        self._error: BaseException | None = None  # what stopped the scheduler, if it died
        self._last_progress = time.monotonic()
        self.stall_after_s = STALL_AFTER_S
        self._thread = threading.Thread(target=self._loop, name=f"llamacpp-{model_id}", daemon=True)
        self._thread.start()

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], model_id: str | None = None, n_ctx: int = 2048,
                  n_parallel: int = 4, **kwargs: Any) -> LlamaCppEngine:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._logger import set_verbose

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        set_verbose(False)  # llama.cpp's log callback is global; keep the server log readable
        model = _internals.LlamaModel(path_model=str(path), params=llama_cpp.llama_model_default_params(),
                                      verbose=False)
        return cls(model, model_id or path.stem, n_ctx=n_ctx, n_parallel=n_parallel, **kwargs)

    # -- the Engine interface ------------------------------------------------------------------------------

    def prompt_text(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The chat prompt, as the transformers engine renders it: tools go through the template when it knows
        ``tools``; otherwise they are described in the system message (Hermes style), and tool calls and results in
        the history become text."""
        import jinja2

        template = self.chat_template
        messages = [template_message(m, template) for m in messages]
        try:
            if tools and "tools" in template:
                return self.formatter(messages=messages, tools=tools).prompt
            if tools:
                messages = describe_tools(messages, tools)
            return self.formatter(messages=messages).prompt
        except (jinja2.TemplateError, ValueError) as exc:  # ValueError: the template's raise_exception
            raise UnsupportedRequestError(f"the chat template rejected the messages: {exc}") from exc

    @cached_property
    def shield(self) -> SpecialTokenShield:
        """Control and user-defined tokens: the ones llama.cpp's tokenizer parses out of text when asked to."""
        kinds = self._llama.LLAMA_TOKEN_ATTR_CONTROL | self._llama.LLAMA_TOKEN_ATTR_USER_DEFINED
        vocab = self.model.vocab
        return SpecialTokenShield(self.model.token_get_text(i) for i in range(self.n_vocab)
                                  if self._llama.llama_vocab_get_attr(vocab, i) & kinds or self._special[i])

    def prompt_ids(self, messages: list[dict[str, Any]], params: SamplingParams) -> list[int]:
        """The chat prompt's token ids: the template's markup with special tokens, message content as text."""
        shielded, literals = self.shield.shield(messages)
        ids = self.shield.tokenize(self.prompt_text(shielded, params.tools), literals,
                                   markup=lambda text: self.model.tokenize(text.encode("utf-8"), False, True),
                                   plain=lambda text: self.model.tokenize(text.encode("utf-8"), False, False))
        return self._check(self._with_bos(ids), params)

    def _with_bos(self, ids: list[int]) -> list[int]:
        if self.model.add_bos_token() and self.bos_id >= 0 and ids[:1] != [self.bos_id]:
            ids = [self.bos_id, *ids]
        return ids

    def _tokenize(self, text: str) -> list[int]:
        return self._with_bos(self.model.tokenize(text.encode("utf-8"), False, True))

    def _check(self, ids: list[int], params: SamplingParams) -> list[int]:
        if not ids:
            raise ValueError("the prompt is empty")
        room = self.context_length - len(ids)
        if params.fit_context and 0 < room < params.max_tokens:
            params = dataclasses.replace(params, max_tokens=room)
        if len(ids) + params.max_tokens > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{len(ids) + params.max_tokens} tokens ({len(ids)} in the messages, {params.max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.")
        return ids

    def generate(self, messages: list[dict[str, Any]], params: SamplingParams) -> Generation:
        return collect(self.stream(messages, params))

    def stream(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[StreamEvent]:
        # a generator: a bad request raises on the first next(), which the API layer turns into a 400
        yield from self._run(lambda: self.prompt_ids(messages, params), params)

    def complete(self, prompt: str | list[int], params: SamplingParams) -> Generation:
        """Raw-text completion: ``prompt`` (text, or token ids) as is, without the chat template."""
        return collect(self.complete_stream(prompt, params))

    def complete_stream(self, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]:
        def ids() -> list[int]:
            tokens = self._tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
            if any(not 0 <= t < self.n_vocab for t in tokens):
                raise ValueError(f"token ids must lie in [0, {self.n_vocab})")
            return self._check(tokens, params)

        yield from self._run(ids, params)

    def _run(self, prompt_ids: Any, params: SamplingParams) -> Iterator[StreamEvent]:
        ids = prompt_ids()
        if params.fit_context:
            params = dataclasses.replace(params, max_tokens=min(params.max_tokens, self.context_length - len(ids)))
        grammar = None
        if params.json_schema is not None:  # a bad schema fails here, on the first next()
            grammar = _Grammar(self._llama, self.model.vocab, _grammar_text(json.dumps(params.json_schema)))
        if params.max_tokens <= 0:
            yield StreamEvent("", Generation("", "length", len(ids), 0, logprobs=[] if params.logprobs else None))
            return
        check_logit_bias(params, self.n_vocab)
        check_generation_fields(params.generation, self.generation_fields, "llama.cpp")
        fields = {**self.generation_defaults, **params.generation}
        check_generation_tokens(fields, self.n_vocab)
        processors, stop_ids = None, frozenset[int]()
        if fields:
            from kaiyuan.serve.engines.generation_processors import generation_processors, stop_ids_with

            stop_list = stop_ids_with(self._stop_ids, fields)
            stop_ids = frozenset(stop_list)
            processors = generation_processors(fields, len(ids), params.max_tokens, stop_list)
        seed = None if params.seed is None else params.seed % 2**64  # numpy takes no negative seeds
        request = _Request(ids, params, np.random.default_rng(seed), grammar=grammar, processors=processors,
                           stop_ids=stop_ids)
        with self._submit:
            if self._closed.is_set():
                raise EngineUnavailableError(f"engine {self.model_id} is closed"
                                             + (f" (its scheduler failed: {self._error!r})" if self._error else ""))
            self._queue.put(request)
        finished = False
        try:
            while True:
                item = request.out.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if item.finish is not None:
                    finished = True
                yield item
                if finished:
                    return
        finally:  # also when the consumer goes away (generator closed): the scheduler drops the sequence
            if not finished:
                self.stats.requests_cancelled += 1
            request.cancelled.set()

    @property
    def fatal(self) -> bool:
        """The scheduler died (a failed decode): this engine serves no more."""
        return self._error is not None

    def health(self) -> str | None:
        if self._error is not None:
            return f"scheduler stopped: {self._error!r}"
        idle_for = time.monotonic() - self._last_progress
        if self._running and idle_for > self.stall_after_s:
            return f"scheduler stalled: no decode ended for {idle_for:.0f} s with sequences running"
        return None

    @property
    def kv_cells_in_use(self) -> int:
        """KV cells held by running sequences (a free slot's cached prefix is not counted)."""
        return sum(len(r.kv_tokens) for r in list(self._running))

    @property
    def active_requests(self) -> int:
        """Sequences the scheduler is decoding right now (not counting those waiting in the queue)."""
        return len(self._running)

    def close(self) -> None:
        """Stop the scheduler (pending and running requests fail) and free the llama.cpp context."""
        if self._freed:
            return
        self._freed = True
        with self._submit:
            self._closed.set()
        self._queue.put(None)
        self._thread.join()
        self._llama.llama_batch_free(self.batch)
        self.context.close()
        self.model.close()

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the scheduler thread ------------------------------------------------------------------------------

    generation_fields = frozenset(GENERATION_FIELDS)  # all of them, as transformers' processors on each row

    def _loop(self) -> None:
        try:
            while not self._closed.is_set():
                self._admit()
                for request in [r for r in self._running if r.cancelled.is_set()]:
                    self._release(request)
                if self._running:
                    self._step()
            error: BaseException = RuntimeError(f"engine {self.model_id} was closed")
        except BaseException as exc:  # a failed decode: every request learns about it
            error = self._error = exc
        with self._submit:
            self._closed.set()
        self._fail_all(error)

    def _admit(self) -> None:
        block = not self._running
        while len(self._running) < self.n_parallel:
            try:
                request = self._queue.get(block=block)
            except queue.Empty:
                return
            block = False
            if request is None:  # close() wakes us up
                return
            if request.cancelled.is_set():
                self.stats.requests_finished += 1
                continue
            self._claim_slot(request)
            request.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            request.trimmer = StopTrimmer(list(request.params.stop))
            self._running.append(request)
            self.stats.max_running = max(self.stats.max_running, len(self._running))

    def _claim_slot(self, request: _Request) -> None:
        """The free slot whose cached tokens share the longest prefix with the prompt (the most recently freed one
        among equals); cells past the shared prefix are dropped. At least one prompt token is always decoded, for
        its logits."""
        best, shared = self._free_seqs[-1], 0
        if self.prompt_cache and request.params.seed is None:  # a seeded request is prefilled afresh: reproducible
            for seq in reversed(self._free_seqs):
                n = common_prefix(self._slot_tokens.get(seq, []), request.prompt_ids)
                if n > shared:
                    best, shared = seq, n
        self._free_seqs.remove(best)
        keep = min(shared, len(request.prompt_ids) - 1)
        self._llama.llama_memory_seq_rm(self.memory, best, keep, -1)
        self._slot_tokens.pop(best, None)
        request.seq_id, request.prefilled, request.cached = best, keep, keep
        request.kv_tokens = request.prompt_ids[:keep]
        self.stats.prompt_tokens_cached += keep

    def _release(self, request: _Request, keep_cache: bool = True) -> None:
        request.grammar = None  # its sampler is freed (the caller's thread may still hold the request)
        if self.prompt_cache and keep_cache:
            self._slot_tokens[request.seq_id] = request.kv_tokens
        else:
            self._llama.llama_memory_seq_rm(self.memory, request.seq_id, -1, -1)
        self._free_seqs.append(request.seq_id)
        self._running.remove(request)
        self.stats.requests_finished += 1

    def _step(self) -> None:
        self._last_progress = time.monotonic()
        llama, batch = self._llama, self.batch
        n = 0
        outputs: list[tuple[_Request, int]] = []
        sequences: set[int] = set()

        def add(token: int, pos: int, seq_id: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq_id
            batch.logits[n] = int(logits)
            n += 1

        for request in self._running:  # one decode token for every sequence past its prompt
            if request.prefilled == len(request.prompt_ids):
                add(request.pending, request.position, request.seq_id, True)
                request.kv_tokens.append(request.pending)
                outputs.append((request, n - 1))
                sequences.add(request.seq_id)
        for request in self._running:  # then prompt chunks of new sequences, as far as the batch allows
            left = len(request.prompt_ids) - request.prefilled
            if left == 0 or n == self.n_batch:
                continue
            take = min(left, self.n_batch - n)
            for i in range(request.prefilled, request.prefilled + take):
                last = i == len(request.prompt_ids) - 1
                add(request.prompt_ids[i], i, request.seq_id, last)
                if last:
                    outputs.append((request, n - 1))
            request.kv_tokens.extend(request.prompt_ids[request.prefilled:request.prefilled + take])
            request.prefilled += take
            sequences.add(request.seq_id)
        batch.n_tokens = n
        status = llama.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} ({n} tokens, {len(sequences)} sequences)")
        self.stats.decode_calls += 1
        self.stats.max_batch_sequences = max(self.stats.max_batch_sequences, len(sequences))
        for request, index in outputs:
            pointer = llama.llama_get_logits_ith(self.ctx, index)
            logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
            token, entry = self._choose(request, logits)
            self._advance(request, token, entry)

    def _choose(self, request: _Request, logits: np.ndarray) -> tuple[int, TokenLogprob | None]:
        """The next token (sampled within the request's grammar, if any) and, when asked for, its logprob entry."""
        params = request.params
        scores = logits
        if request.processors:  # on a copy: the logprob entry below is taken from the raw row
            scores = self._processed(request, logits)
        scores = adjust_logits(scores, request.generated, params)
        if request.grammar is None:
            token = sample_token(scores, params, request.rng)
        else:
            token = self._constrained(request.grammar, scores, params, request.rng)
            if not self._eog[token]:
                self._llama.llama_sampler_accept(request.grammar.sampler, token)
        entry = None
        if params.logprobs and not self._special[token]:  # end-of-turn and control tokens get no entry
            entry = self._logprob_entry(logits, token, params.top_logprobs)
        return token, entry

    @staticmethod
    def _processed(request: _Request, logits: np.ndarray) -> np.ndarray:
        """The request's generation-field processors (transformers' own) applied to a copy of its logits row."""
        import torch

        processors = request.processors
        seen = processors.input_ids(request.prompt_ids, request.generated)
        scores = torch.from_numpy(np.array(logits, dtype=np.float32, copy=True))[None]
        scores = processors.settle(processors.rest(seen, processors.penalty(seen, scores)))
        return scores[0].numpy()

    def _constrained(self, grammar: _Grammar, logits: np.ndarray, params: SamplingParams,
                     rng: np.random.Generator) -> int:
        """``sample_token`` over the tokens the grammar allows next (only end-of-turn ones once the JSON is done)."""
        llama = self._llama
        if is_greedy(params.temperature):  # the best token, if the grammar takes it (as llama.cpp's common does)
            best = int(np.argmax(logits))
            if not self._special[best] or self._eog[best]:
                single = self._single
                single.copy_logits(logits[best: best + 1])
                single.candidates_data.id[0] = best
                llama.llama_sampler_apply(grammar.sampler, ctypes.byref(single.candidates))
                if np.isfinite(single.candidates_data.logit[0]):
                    return best
        candidates = self._candidates
        candidates.copy_logits(logits)
        candidates.candidates_data.logit[self._control] = -np.inf
        llama.llama_sampler_apply(grammar.sampler, ctypes.byref(candidates.candidates))
        size = candidates.candidates.size
        masked = np.full(self.n_vocab, -np.inf, dtype=np.float32)
        masked[candidates.candidates_data.id[:size]] = candidates.candidates_data.logit[:size]
        if not np.isfinite(masked).any():  # the grammar allows nothing (cannot happen with a sound grammar): end
            return self.eos_id if self.eos_id >= 0 else int(np.flatnonzero(self._eog)[0])
        token = sample_token(masked, params, rng)
        # never hand the grammar a token it rejects (llama.cpp aborts the process): a rounding slip takes the best
        return token if np.isfinite(masked[token]) else int(np.argmax(masked))

    def _logprob_entry(self, logits: np.ndarray, token: int, top: int) -> TokenLogprob:
        """``token``'s log-probability under the raw logits row, and the ``top`` most likely tokens'."""
        row = logits.astype(np.float64)
        peak = row.max()
        logprobs = row - (peak + np.log(np.exp(row - peak).sum()))
        entry = self._token_logprob(token, float(logprobs[token]))
        if top > 0:
            top = min(top, self.n_vocab)
            best = np.argpartition(-logprobs, top - 1)[:top]
            best = best[np.lexsort((best, -logprobs[best]))]  # most likely first; ties by token id
            entry.top_logprobs = [self._token_logprob(int(i), float(logprobs[i])) for i in best]
        return entry

    def _token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        """A token's entry: its text as it reads mid-sequence (control tokens: their name) and its bytes."""
        known = self._token_entries.get(token)
        if known is None:
            piece = self._piece(token, special=True)
            known = self._token_entries[token] = (piece.decode("utf-8", errors="replace"), list(piece))
        return TokenLogprob(known[0], logprob, list(known[1]))

    def _advance(self, request: _Request, token: int, entry: TokenLogprob | None = None) -> None:
        assert request.trimmer is not None
        request.completion_tokens += 1
        request.generated.append(token)
        self.stats.tokens_generated += 1
        if self._eog[token] or token in request.stop_ids:
            return self._finish(request, "stop")
        if entry is not None:
            request.aligner.pending.append(entry)
        text = request.decoder.decode(self._piece(token))
        out = request.trimmer.feed(text) if text else ""
        if out:
            request.emitted += len(out)
            logprobs = request.aligner.take(request.emitted) if request.params.logprobs else None
            request.out.put(StreamEvent(out, logprobs=logprobs))
        if request.trimmer.stopped:
            return self._finish(request, "stop")
        if request.completion_tokens >= request.params.max_tokens:
            return self._finish(request, "length")
        request.pending = token

    def _finish(self, request: _Request, reason: str) -> None:
        assert request.trimmer is not None
        tail = request.trimmer.feed(request.decoder.decode(b"", final=True)) + request.trimmer.flush()
        request.emitted += len(tail)
        logprobs = None
        if request.params.logprobs:  # the tokens whose text (or part of it) went out
            logprobs = request.aligner.take(request.emitted, partial=True)
            if not request.trimmer.stopped:  # text the decoder merged (partial characters) still gets its tokens
                logprobs += request.aligner.pending
        finish = Generation("", reason, len(request.prompt_ids), request.completion_tokens,
                            logprobs=[] if request.params.logprobs else None)
        request.out.put(StreamEvent(tail, finish, logprobs=logprobs))
        self._release(request)

    def _fail_all(self, exc: BaseException) -> None:
        for request in list(self._running):
            request.out.put(exc)
            self._release(request, keep_cache=False)  # a failed decode leaves its cells in doubt
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.out.put(exc)

    def _piece(self, token: int, special: bool = False) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._llama.llama_token_to_piece(self.model.vocab, token, buffer, len(buffer), 0, special)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._llama.llama_token_to_piece(self.model.vocab, token, buffer, len(buffer), 0, special)
        return buffer.raw[:size]

