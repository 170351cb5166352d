"""A transformers engine for any HF model or adapter, with batching.

Besides chat (``generate``/``stream``) it does raw-text completion (``complete``/``complete_stream``),
embeddings (``embed``: the mean of the last hidden state over the input's tokens, L2-normalized), token
log-probabilities and JSON-schema-constrained decoding.

Generation runs on a :class:`~kaiyuan.serve.engines.transformers_batching.BatchScheduler`: concurrent requests share
forward passes (up to ``max_batch_size`` sequences; newcomers join a running batch). The caller's thread turns the
token ids it sends into text, cuts it at stop strings and lines log-probabilities up with the text.

The model's generation_config fields that shape the output (``GENERATION_FIELDS`` of
:mod:`~kaiyuan.serve.engines.base`: repetition penalty, no-repeat n-grams, minimum length, suppressed and banned
tokens, …) apply to every request, through transformers' own logits processors; a request may set them too.

Log-probabilities are ``log_softmax`` of the logits the model returns (after the repetition penalty the model's
generation config or the request asks for, if any), taken before the other generation-config processors, the JSON
constraint and temperature / top-k / top-p, so they are the model's own distribution, as OpenAI reports them,
whatever the sampling settings.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from kaiyuan.data.templates import chat_template_of, end_of_turn_token_ids, prompt_text
from kaiyuan.models import load_model
from kaiyuan.serve.engines.base import (
    GENERATION_FIELDS,
    STALL_AFTER_S,
    ContextLengthError,
    Embedding,
    Generation,
    SamplingParams,
    StreamEvent,
    TokenLogprob,
    UnsupportedRequestError,
    check_generation_fields,
    check_generation_tokens,
    check_logit_bias,
    split_generation_config,
    unapplied_warning,
)
from kaiyuan.serve.engines.chat_messages import (
    LogprobAligner,
    SpecialTokenShield,
    StopTrimmer,
    collect,
    describe_tools,
    template_message,
)
from kaiyuan.serve.engines.json_constraint import JsonLogitsProcessor, JsonTokenIndex, compiled_schema

if TYPE_CHECKING:  # the scheduler module imports torch: loaded when an engine is made
    from kaiyuan.serve.engines.transformers_batching import BatchRequest, BatchScheduler, TokenLogprobs


@dataclass
class Piece:
    """New text of a reply, the number of tokens generated so far, and the new tokens' logprobs."""

    text: str
    tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)


# --- the vocabulary as text and bytes ---------------------------------------------------------------------------

def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


class Vocabulary:
    """Each token id's text (as it reads in the middle of a decoded sequence) and bytes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        added = getattr(tokenizer, "added_tokens_decoder", {})
        self.special_ids = set(tokenizer.all_special_ids) | {i for i, t in added.items() if getattr(t, "special", 0)}
        # decode after an anchor token, so SentencePiece-style leading spaces survive
        self.anchor = tokenizer.encode("a", add_special_tokens=False)[-1:]
        self.anchor_text = self._decode(self.anchor)
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = "ByteLevel" in str(decoder)
        self.byte_decoder = _byte_level_decoder()
        self.text = lru_cache(maxsize=None)(self._text)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _text(self, token_id: int) -> str:
        if token_id in self.special_ids:
            return self._decode([token_id])
        text = self._decode(self.anchor + [token_id])
        return text[len(self.anchor_text):] if text.startswith(self.anchor_text) else self._decode([token_id])

    def bytes(self, token_id: int) -> list[int]:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if self.byte_level and token_id not in self.special_ids and isinstance(piece, str) \
                and all(ch in self.byte_decoder for ch in piece):
            return [self.byte_decoder[ch] for ch in piece]
        if isinstance(piece, str) and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            return [int(piece[3:5], 16)]  # SentencePiece byte fallback
        return list(self.text(token_id).encode("utf-8"))

    @cached_property
    def texts(self) -> dict[int, str]:
        """The text of every ordinary (non-special) token that has any."""
        ids = [i for i in range(len(self.tokenizer)) if i not in self.special_ids]
        decoded = self.tokenizer.batch_decode([self.anchor + [i] for i in ids], skip_special_tokens=False,
                                              clean_up_tokenization_spaces=False)
        out = {}
        for token_id, text in zip(ids, decoded, strict=True):
            text = text[len(self.anchor_text):] if text.startswith(self.anchor_text) else self._text(token_id)
            if text:
                out[token_id] = text
        return out

    def entry(self, token_id: int, logprob: float) -> TokenLogprob:
        return TokenLogprob(self.text(token_id), logprob, self.bytes(token_id))


# --- the engine ---------------------------------------------------------------------------------------------------

class TransformersEngine:
    """Chat, completions and embeddings over a transformers model.

    Generation goes through ``scheduler``: by default one of the engine's own, batching up to ``max_batch_size``
    sequences, whose forward passes hold the engine's lock (as ``embed`` does). Engines over one shared model
    (LoRA adapters, see :mod:`kaiyuan.serve.engines.adapters`) pass the same scheduler and each its ``adapter``: the
    group their requests are batched in, which the scheduler's ``select`` activates around each forward pass.
    """

    def __init__(self, model: Any, tokenizer: Any, model_id: str, max_batch_size: int = 8,
                 scheduler: BatchScheduler | None = None, adapter: str | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        self.stop_token_ids = end_of_turn_token_ids(tokenizer)
        # the model's generation_config fields applied to every request (GENERATION_FIELDS); the others it sets are
        # applied by no engine: warned about once, here
        self.generation_defaults, unapplied = split_generation_config(getattr(model, "generation_config", None))
        if unapplied:
            warnings.warn(unapplied_warning(model_id, unapplied), UserWarning, stacklevel=2)
        self.adapter = adapter
        self._lock = threading.Lock()
        from kaiyuan.serve.engines.transformers_batching import BatchScheduler

        self.scheduler = scheduler or BatchScheduler(model, max_batch_size, select=lambda group: self._lock,
                                                     name=model_id)

    stall_after_s = STALL_AFTER_S
    generation_fields = frozenset(GENERATION_FIELDS)  # all of them, as transformers' processors in the decode loop

    def health(self) -> str | None:
        return self.scheduler.health(self.stall_after_s)

    @property
    def active_requests(self) -> int:
        return self.scheduler.active_requests

    @property
    def kv_cells_in_use(self) -> int:
        return self.scheduler.kv_cells_in_use

    @classmethod
    def from_reference(cls, ref: str, model_id: str | None = None, max_batch_size: int = 8) -> TransformersEngine:

        loaded = load_model(ref)
        return cls(loaded.model, loaded.tokenizer, model_id or loaded.artifact.name, max_batch_size)

    @cached_property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.tokenizer)

    @cached_property
    def json_index(self) -> JsonTokenIndex:
        return JsonTokenIndex(self.vocab.texts)

    # prompts

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
        """The chat prompt. Tools go through the template when it knows ``tools``; otherwise they are described in
        the system message (Hermes style), and tool calls and results in the history become text."""
        import jinja2

        template = chat_template_of(self.tokenizer)
        try:
            if tools and "tools" in template:
                return self.tokenizer.apply_chat_template(
                    [template_message(m, template) for m in messages], tools=tools, tokenize=False,
                    add_generation_prompt=True, chat_template=template)
            messages = [template_message(m, template) for m in messages]
            if tools:
                messages = describe_tools(messages, tools)
            return prompt_text(self.tokenizer, messages)
        except jinja2.TemplateError as exc:
            raise UnsupportedRequestError(f"the chat template rejected the messages: {exc}") from exc

    def _fit(self, prompt_ids: list[int], params: SamplingParams, chat: bool = True) -> SamplingParams:
        """``params`` with max_tokens that fit the context (shrunk with ``fit_context``), or ContextLengthError."""
        room = self.context_length - len(prompt_ids)
        if params.fit_context and room > 0:
            return dataclasses.replace(params, max_tokens=min(params.max_tokens, room))
        if len(prompt_ids) + params.max_tokens > self.context_length:
            total = len(prompt_ids) + params.max_tokens
            if chat:
                raise ContextLengthError(
                    f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                    f"{total} tokens ({len(prompt_ids)} in the messages, {params.max_tokens} in the "
                    "completion). Please reduce the length of the messages or completion.")
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens, however you requested "
                f"{total} tokens ({len(prompt_ids)} in your prompt; {params.max_tokens} for the completion). "
                "Please reduce your prompt; or completion length.")
        return params

    @cached_property
    def shield(self) -> SpecialTokenShield:
        added = getattr(self.tokenizer, "added_tokens_decoder", {})
        return SpecialTokenShield([*self.tokenizer.all_special_tokens, *(t.content for t in added.values())])

    def prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        """The chat prompt's token ids: the template's markup with special tokens, message content as text."""
        shielded, literals = self.shield.shield(messages)
        return self.shield.tokenize(
            self.render(shielded, tools), literals,
            markup=lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"],
            plain=lambda text: self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def _prompt_ids(self, messages: list[dict[str, Any]], params: SamplingParams) -> list[int]:
        ids = self.prompt_ids(messages, params.tools)
        self._fit(ids, params)
        return ids

    def _completion_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            ids = list(self.tokenizer(prompt)["input_ids"])
        else:
            vocab_size = self.model.get_input_embeddings().weight.shape[0]
            if any(not isinstance(t, int) or not 0 <= t < vocab_size for t in prompt):
                raise UnsupportedRequestError(f"prompt token ids must be integers in [0, {vocab_size})")
            ids = list(prompt)
        if not ids:  # an empty prompt starts from the beginning-of-text token, as OpenAI's does
            start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.stop_token_ids[0]
            ids = [start]
        return ids

    # generation

    def generate(self, messages: list[dict[str, Any]], params: SamplingParams) -> Generation:
        return collect(self.stream(messages, params))

    def stream(self, messages: list[dict[str, Any]], params: SamplingParams) -> Iterator[StreamEvent]:
        prompt_ids = self._prompt_ids(messages, params)
        yield from self._run(prompt_ids, self._fit(prompt_ids, params))

    def complete(self, prompt: str | list[int], params: SamplingParams) -> Generation:
        return collect(self.complete_stream(prompt, params))

    def complete_stream(self, prompt: str | list[int], params: SamplingParams) -> Iterator[StreamEvent]:
        prompt_ids = self._completion_ids(prompt)
        yield from self._run(prompt_ids, self._fit(prompt_ids, params, chat=False))

    def _describe(self, token_id: int, logprobs: TokenLogprobs | None) -> TokenLogprob | None:
        if token_id in self.vocab.special_ids or logprobs is None:
            return None  # end-of-turn and other special tokens add no text, and get no entry
        entry = self.vocab.entry(token_id, logprobs.logprob)
        entry.top_logprobs = [self.vocab.entry(i, value) for i, value in logprobs.top]
        return entry

    def _pieces(self, request: BatchRequest) -> Iterator[Piece]:
        """The request's text as its tokens arrive (not word by word), with their logprob entries.

        The generated ids are decoded as a whole each time and the new suffix goes out, so multi-token characters
        come out whole; a trailing replacement character waits for the token that completes it."""
        ids: list[int] = []
        entries: list[TokenLogprob] = []
        sent = 0
        for token_id, logprobs in request.tokens():
            ids.append(token_id)
            if (entry := self._describe(token_id, logprobs)) is not None:
                entries.append(entry)
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if len(text) > sent and not text.endswith("\ufffd"):
                yield Piece(text[sent:], len(ids), entries)
                sent, entries = len(text), []
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if len(text) > sent or entries:
            yield Piece(text[sent:], len(ids), entries)

    def _run(self, prompt_ids: list[int], params: SamplingParams) -> Iterator[StreamEvent]:
        from kaiyuan.serve.engines.generation_processors import generation_processors, stop_ids_with
        from kaiyuan.serve.engines.transformers_batching import BatchRequest

        if params.max_tokens <= 0:
            yield StreamEvent("", Generation("", "length", len(prompt_ids), 0,
                                             logprobs=[] if params.logprobs else None))
            return
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        check_logit_bias(params, vocab_size)
        check_generation_fields(params.generation, self.generation_fields, "transformers")
        fields = {**self.generation_defaults, **params.generation}
        check_generation_tokens(fields, vocab_size)
        stop_ids = stop_ids_with(self.stop_token_ids, fields)
        node = compiled_schema(params.json_schema) if params.json_schema is not None else None
        constraint = None if node is None else JsonLogitsProcessor(
            self.json_index, self.vocab.texts, node, 0, params.max_tokens, stop_ids)
        processors = generation_processors(fields, len(prompt_ids), params.max_tokens, stop_ids) if fields else None
        request = BatchRequest(prompt_ids, params, set(stop_ids), group=self.adapter, constraint=constraint,
                               processors=processors)
        trimmer = StopTrimmer(params.stop)
        aligner = LogprobAligner()
        emitted = tokens = 0
        self.scheduler.submit(request)
        try:
            for piece in self._pieces(request):
                tokens = piece.tokens
                aligner.pending.extend(piece.logprobs)
                out = trimmer.feed(piece.text)
                emitted += len(out)
                if trimmer.stopped:  # the rest would be cut anyway: stop generating
                    break
                if out:
                    yield StreamEvent(out, logprobs=aligner.take(emitted) if params.logprobs else None)
        finally:  # also when the consumer stops early (client disconnected): stop generating
            self.scheduler.cancel(request)
        tail = trimmer.flush()
        emitted += len(tail)
        logprobs = aligner.take(emitted, partial=True) if params.logprobs else None
        if trimmer.stopped:
            finish_reason = "stop"
        else:
            assert request.finish_reason is not None
            finish_reason, tokens = request.finish_reason, len(request.generated)
            if logprobs is not None:
                logprobs += aligner.pending  # text the decoder merged (partial characters) still gets its tokens
        yield StreamEvent(tail, Generation("", finish_reason, len(prompt_ids), tokens,
                                           logprobs=[] if params.logprobs else None), logprobs=logprobs)

    # embeddings

    def embed(self, inputs: list[str] | list[list[int]]) -> list[Embedding]:
        """Mean of the last hidden state over each input's tokens, L2-normalized (one forward pass per input)."""
        import torch

        encoded = [self._embedding_ids(item) for item in inputs]
        out = []
        with self._lock, torch.inference_mode():
            for ids in encoded:
                hidden = self.model(input_ids=torch.tensor([ids], device=self.model.device),
                                    output_hidden_states=True).hidden_states[-1][0].float()
                vector = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0)
                out.append(Embedding(vector.cpu().tolist(), len(ids)))
        return out

    def _embedding_ids(self, item: str | list[int]) -> list[int]:
        if isinstance(item, str):
            ids = list(self.tokenizer(item)["input_ids"])
        else:
            vocab_size = self.model.get_input_embeddings().weight.shape[0]
            if any(not isinstance(t, int) or not 0 <= t < vocab_size for t in item):
                raise UnsupportedRequestError(f"input token ids must be integers in [0, {vocab_size})")
            ids = list(item)
        if not ids:
            raise UnsupportedRequestError("an input to embed is empty")
        if len(ids) > self.context_length:
            raise ContextLengthError(
                f"This model's maximum context length is {self.context_length} tokens, however you requested "
                f"{len(ids)} tokens in the input. Please reduce your input.")
        return ids
