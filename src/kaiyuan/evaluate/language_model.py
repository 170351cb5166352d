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
        """(log-prob, greedy) of each continuation; one forward pass per distinct input, longest first."""
        import torch

        inputs: dict[tuple[int, ...], int] = {}  # distinct input → how many last positions are scored
        keyed = []
        for context, continuation in pairs:
            whole = (context + continuation)[-(self.max_length + 1):]
            key = tuple(whole[:-1])
            inputs[key] = max(inputs.get(key, 0), len(continuation))
            keyed.append((key, continuation))
        order = sorted(inputs, key=lambda k: (-len(k), k))
        requests_per_input = Counter(key for key, _ in keyed)
        logprobs: dict[tuple[int, ...], Any] = {}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.prefix_token
        with progress_bar() as progress, torch.inference_mode():
            task = progress.add_task(description, total=len(pairs))
            for start in range(0, len(order), self.batch_size):
                batch = order[start: start + self.batch_size]
                width = len(batch[0])
                keep = max(inputs[k] for k in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, key in enumerate(batch):
                    ids[row, width - len(key):] = torch.tensor(key)
                    mask[row, width - len(key):] = 1
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                out = self.model(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                                 position_ids=positions.to(self.model.device), logits_to_keep=keep, use_cache=False)
                self.forward_passes += 1
                scores = torch.log_softmax(out.logits.float(), dim=-1).cpu()
                for row, key in enumerate(batch):
                    logprobs[key] = scores[row]
                progress.advance(task, sum(requests_per_input[k] for k in batch))
        results = []
        for key, continuation in keyed:
            table = logprobs[key][-len(continuation):]
            target = torch.tensor(continuation)
            token_logprobs = table.gather(-1, target[:, None]).squeeze(-1)
            greedy = bool((table.argmax(-1) == target).all())
            results.append((float(token_logprobs.sum()), greedy))
        return results

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


def perplexity(logprobs: list[float]) -> float:
    """lm-evaluation-harness's ``perplexity`` aggregation: exp of the mean negative log-likelihood."""
    return math.exp(-sum(logprobs) / len(logprobs))
