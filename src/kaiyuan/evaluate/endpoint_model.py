"""Generation requests against any OpenAI-compatible endpoint (``/v1/completions``, greedy)."""

from __future__ import annotations

from typing import Any

from kaiyuan.evaluate.request_cache import RequestCache
from kaiyuan.progress import progress_bar


class EndpointLM:
    """Only ``generate_until``: an endpoint gives no log-likelihood of a given continuation."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, cache: bool = True) -> None:
        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or "unused")
        self.model = model
        self.cache = RequestCache(f"endpoint:{base_url}#{model}") if cache else None

    def generate_until(self, requests: list[tuple[str, list[str]]], max_new_tokens: int = 256,
                       description: str = "generating") -> list[str]:
        kind = f"generate:{max_new_tokens}"
        results: list[Any] = self.cache.get_many(kind, requests) if self.cache else [None] * len(requests)
        todo = [i for i, r in enumerate(results) if r is None]
        with progress_bar() as progress:
            task = progress.add_task(description, total=len(todo))
            for i in todo:
                context, until = requests[i]
                reply = self.client.completions.create(model=self.model, prompt=context, max_tokens=max_new_tokens,
                                                       temperature=0, stop=[s for s in until if s][:4] or None)
                text = reply.choices[0].text
                for stop in until:
                    if stop and stop in text:
                        text = text.split(stop)[0]
                results[i] = text
                progress.advance(task)
        if self.cache and todo:
            self.cache.put_many(kind, [requests[i] for i in todo], [results[i] for i in todo])
        return [str(r) for r in results]

    def loglikelihood(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("an OpenAI-compatible endpoint cannot score continuations")

    loglikelihood_rolling = loglikelihood
