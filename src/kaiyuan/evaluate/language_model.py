"""The three request types of a benchmark harness, computed by a transformers model.

* ``loglikelihood(context, continuation)`` → (sum of the continuation's token log-probs, is greedy): tokenized
  as lm-evaluation-harness does (trailing spaces of the context move to the continuation; the whole string is
  encoded and split at the context's length), so the numbers are the same.
* ``loglikelihood_rolling(text)`` → the text's total log-prob, in windows of the model's context.
* ``generate_until(context, until)`` → greedy text cut at the first stop string.

Fast on a CPU: requests sharing their input (the choices of a multiple-choice question with one-token
answers) are one forward pass; inputs are sorted by length and batched with left padding, and the LM head
runs only at the positions that are scored; every result is cached in SQLite under the model's hash.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from kaiyuan.evaluate.request_cache import RequestCache
from kaiyuan.progress import progress_bar


def rolling_windows(tokens: list[int], prefix_token: int, max_len: int) -> Iterator[tuple[list[int], list[int]]]:
    """Disjoint (context, continuation) windows covering ``tokens`` (lm-evaluation-harness, context_len=1)."""
    if not tokens:
        return
    first = min(max_len, len(tokens))
    windows = [([prefix_token] + tokens[: first - 1], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, max_len)
        end = predicted + n
        windows.append((tokens[end - max_len - 1: end - 1], tokens[end - n: end]))
        predicted += n
    for context, continuation in windows:
        yield context[: len(context) - (len(continuation) - 1)], continuation


class TransformersLM:
    """Loglikelihood / rolling / generation requests on a loaded causal LM."""

    def __init__(self, model: Any, tokenizer: Any, model_hash: str, batch_size: int = 32,
                 max_length: int | None = None, cache: bool = True) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", 2048)
        self.cache = RequestCache(model_hash) if cache else None
        bos = tokenizer.bos_token_id
        self.prefix_token = bos if bos is not None else tokenizer.eos_token_id
        self.forward_passes = 0

    # ------------------------------------------------------------------------------------------- tokenization

    def encode(self, text: str) -> list[int]:
        bos = self.tokenizer.bos_token
        special = not (bos and text.startswith(bos))
        return self.tokenizer.encode(text, add_special_tokens=special)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if not context:
            return [self.prefix_token], self.encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.encode(context + continuation)
        context_tokens = self.encode(context)
        return context_tokens, whole[len(context_tokens):]

    # ------------------------------------------------------------------------------------------- requests

    def loglikelihood(self, requests: list[tuple[str, str]], description: str = "loglikelihood"
                      ) -> list[tuple[float, bool]]:
        cached = self.cache.get_many("loglikelihood", requests) if self.cache else [None] * len(requests)
        todo = [i for i, c in enumerate(cached) if c is None]
        pairs = [self.encode_pair(*requests[i]) for i in todo]
        scored = self.score_tokens(pairs, description)
        if self.cache and todo:
            self.cache.put_many("loglikelihood", [requests[i] for i in todo], scored)
        results = list(cached)
        for i, value in zip(todo, scored, strict=True):
            results[i] = value
        return [(float(r[0]), bool(r[1])) for r in results]

    def loglikelihood_rolling(self, texts: list[str], description: str = "perplexity") -> list[float]:
        cached = self.cache.get_many("rolling", texts) if self.cache else [None] * len(texts)
        todo = [i for i, c in enumerate(cached) if c is None]
        windows, owner = [], []
        for i in todo:
            for window in rolling_windows(self.encode(texts[i]), self.prefix_token, self.max_length):
                windows.append(window)
                owner.append(i)
        scored = self.score_tokens(windows, description)
        totals = {i: 0.0 for i in todo}
        for i, (logprob, _) in zip(owner, scored, strict=True):
            totals[i] += logprob
        if self.cache and todo:
            self.cache.put_many("rolling", [texts[i] for i in todo], [totals[i] for i in todo])
        results = list(cached)
        for i in todo:
            results[i] = totals[i]
        return [float(r) for r in results]

    def score_tokens(self, pairs: list[tuple[list[int], list[int]]], description: str) -> list[tuple[float, bool]]:
        """(log-prob, greedy) of each continuation; one forward pass per distinct input, longest first; inputs
        that share a long prefix (a few-shot prompt) compute it once."""
        import torch

        inputs: dict[tuple[int, ...], int] = {}  # distinct input → how many last positions are scored
        keyed = []
        for context, continuation in pairs:
            whole = (context + continuation)[-(self.max_length + 1):]
            key = tuple(whole[:-1])
            inputs[key] = max(inputs.get(key, 0), len(continuation))
            keyed.append((key, continuation))
        requests_per_input = Counter(key for key, _ in keyed)
        logprobs: dict[tuple[int, ...], Any] = {}
        with progress_bar() as progress, torch.inference_mode():
            task = progress.add_task(description, total=len(pairs))
            alone = []
            for prefix_len, group in prefix_groups(inputs, self.min_shared_prefix):
                if prefix_len == 0:
                    alone += group
                    continue
                self._score_with_shared_prefix(group, prefix_len, inputs, logprobs)
                progress.advance(task, sum(requests_per_input[k] for k in group))
            alone.sort(key=lambda k: (-len(k), k))
            for start in range(0, len(alone), self.batch_size):
                batch = alone[start: start + self.batch_size]
                self._score_batch(batch, [], max(inputs[k] for k in batch), logprobs)
                progress.advance(task, sum(requests_per_input[k] for k in batch))
        results = []
        for key, continuation in keyed:
            table = logprobs[key][-len(continuation):]
            target = torch.tensor(continuation)
            token_logprobs = table.gather(-1, target[:, None]).squeeze(-1)
            greedy = bool((table.argmax(-1) == target).all())
            results.append((float(token_logprobs.sum()), greedy))
        return results

    min_shared_prefix = 32

    def _score_batch(self, batch: list[tuple[int, ...]], prefix: list[int], keep: int,
                     logprobs: dict[tuple[int, ...], Any], cache: Any = None) -> None:
        """One forward pass over ``batch`` (left-padded), after an optional cached ``prefix`` they all share."""
        import copy

        import torch

        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.prefix_token
        suffixes = [key[len(prefix):] for key in batch]
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), len(prefix) + width), dtype=torch.long)
        mask[:, : len(prefix)] = 1
        for row, suffix in enumerate(suffixes):
            ids[row, width - len(suffix):] = torch.tensor(suffix)
            mask[row, len(prefix) + width - len(suffix):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, len(prefix):]
        extra: dict[str, Any] = {"use_cache": False}
        if cache is not None:
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(batch))
            extra = {"past_key_values": past, "use_cache": True}
        device = self.model.device
        out = self.model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                         logits_to_keep=keep, **extra)
        self.forward_passes += 1
        scores = torch.log_softmax(out.logits.float(), dim=-1).cpu()
        for row, key in enumerate(batch):
            logprobs[key] = scores[row]

    def _score_with_shared_prefix(self, group: list[tuple[int, ...]], prefix_len: int,
                                  inputs: dict[tuple[int, ...], int], logprobs: dict[tuple[int, ...], Any]) -> None:
        import torch

        prefix = list(group[0][:prefix_len])
        out = self.model(input_ids=torch.tensor([prefix], device=self.model.device), use_cache=True, logits_to_keep=1)
        self.forward_passes += 1
        group = sorted(group, key=lambda k: (-len(k), k))
        for start in range(0, len(group), self.batch_size):
            batch = group[start: start + self.batch_size]
            self._score_batch(batch, prefix, max(inputs[k] for k in batch), logprobs, cache=out.past_key_values)

    def generate_until(self, requests: list[tuple[str, list[str]]], max_new_tokens: int = 256,
                       description: str = "generating") -> list[str]:
        cached = self.cache.get_many(f"generate:{max_new_tokens}", requests) if self.cache else [None] * len(requests)
        todo = [i for i, c in enumerate(cached) if c is None]
        texts = self._generate([requests[i] for i in todo], max_new_tokens, description)
        if self.cache and todo:
            self.cache.put_many(f"generate:{max_new_tokens}", [requests[i] for i in todo], texts)
        results = list(cached)
        for i, text in zip(todo, texts, strict=True):
            results[i] = text
        return [str(r) for r in results]

    def _generate(self, requests: list[tuple[str, list[str]]], max_new_tokens: int, description: str) -> list[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer = self.tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
        outputs = [""] * len(requests)

        class UntilStop(StoppingCriteria):
            def __init__(self, start: int, stops: list[list[str]]) -> None:
                self.start, self.stops = start, stops

            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                done = [any(s in tokenizer.decode(row[self.start:]) for s in stops)
                        for row, stops in zip(input_ids, self.stops, strict=True)]
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        with progress_bar() as progress, torch.inference_mode():
            task = progress.add_task(description, total=len(requests))
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                contexts = [self.encode(requests[i][0])[-(self.max_length - max_new_tokens):] for i in batch]
                width = max(len(c) for c in contexts)
                ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for row, tokens in enumerate(contexts):
                    ids[row, width - len(tokens):] = torch.tensor(tokens)
                    mask[row, width - len(tokens):] = 1
                stops = [list(requests[i][1]) for i in batch]
                generated = self.model.generate(
                    input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device), do_sample=False,
                    max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, temperature=None, top_p=None, top_k=None,
                    stopping_criteria=StoppingCriteriaList([UntilStop(width, stops)]))
                for row, i in enumerate(batch):
                    text = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
                    for stop in requests[i][1]:
                        if stop and stop in text:
                            text = text.split(stop)[0]
                    outputs[i] = text
                progress.advance(task, len(batch))
        return outputs


def prefix_groups(inputs: dict[tuple[int, ...], int], min_prefix: int
                  ) -> list[tuple[int, list[tuple[int, ...]]]]:
    """Inputs grouped by a shared token prefix of at least ``min_prefix`` tokens (0: no shared prefix). Every
    input keeps at least its scored positions (``inputs[key]``) after the prefix."""
    groups: list[tuple[int, list[tuple[int, ...]]]] = []
    current: list[tuple[int, ...]] = []
    shared = 0
    for key in sorted(inputs):
        if current:
            common = _common_prefix(current[0], key, shared)
            limit = min(common, len(key) - inputs[key])
            if limit >= min_prefix:
                current.append(key)
                shared = limit
                continue
            groups.append((shared if len(current) > 1 else 0, current))
        current, shared = [key], len(key) - inputs[key]
    if current:
        groups.append((shared if len(current) > 1 else 0, current))
    return groups


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b[:limit], strict=False):
        if x != y:
            break
        n += 1
    return n


def perplexity(logprobs: list[float]) -> float:
    """lm-evaluation-harness's ``perplexity`` aggregation: exp of the mean negative log-likelihood."""
    return math.exp(-sum(logprobs) / len(logprobs))
