"""Serving benchmark with vLLM's serving metrics: kaiyuan serve vs llama-cpp-python's own OpenAI server.

Both serve the same GGUF (SmolLM2-135M-Instruct Q4_1) on this machine, one after the other, in this run. For each
concurrency level a fixed set of prompts (from a file; seed fixed) is sent as streamed chat completions with
temperature 0 and a fixed max_tokens; measured per request: time to first token (TTFT), time per output token after
the first (TPOT), inter-token latency (ITL, every gap between streamed tokens), end-to-end latency; per level:
request and output-token throughput. Writes benchmarks/RESULTS.md, section "serving". Usage:
    python benchmarks/serve_bench.py [--concurrency 1 4 16] [--requests 16] [--max-tokens 32] [--prompts FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SECTION = "## serving"
TOPICS = ["a lighthouse keeper", "a lost umbrella", "the first snow", "a robot gardener", "a night train",
          "an old map", "a quiet library", "a kite festival", "a river crossing", "a market at dawn"]


@dataclass
class RequestResult:
    ttft: float
    e2e: float
    itl: list[float] = field(default_factory=list)
    tokens: int = 0

    @property
    def tpot(self) -> float | None:
        return (self.e2e - self.ttft) / (self.tokens - 1) if self.tokens > 1 else None


def default_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"Write a short story about {rng.choice(TOPICS)}." for _ in range(n)]


async def one_request(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int) -> RequestResult:
    started = time.perf_counter()
    first = last = None
    gaps, tokens = [], 0
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if not chunk.get("choices") or not chunk["choices"][0].get("delta", {}).get("content"):
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
            tokens += 1
    end = time.perf_counter()
    return RequestResult(ttft=(first or end) - started, e2e=end - started, itl=gaps, tokens=tokens)


async def run_level(url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int
                    ) -> tuple[float, list[RequestResult]]:
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def limited(prompt: str) -> RequestResult:
            async with semaphore:
                return await one_request(client, url, model, prompt, max_tokens)

        started = time.perf_counter()
        results = await asyncio.gather(*(limited(p) for p in prompts))
        return time.perf_counter() - started, list(results)


def summarize(seconds: float, results: list[RequestResult]) -> dict[str, float]:
    def ms(values: list[float]) -> tuple[float, float, float]:
        values = sorted(values)
        p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
        return statistics.mean(values) * 1000, statistics.median(values) * 1000, p99 * 1000

    out: dict[str, float] = {"seconds": seconds, "requests_per_s": len(results) / seconds,
                             "output_tokens_per_s": sum(r.tokens for r in results) / seconds,
                             "output_tokens": sum(r.tokens for r in results)}
    for name, values in (("ttft", [r.ttft for r in results]), ("tpot", [r.tpot for r in results if r.tpot]),
                         ("itl", [g for r in results for g in r.itl]), ("e2e", [r.e2e for r in results])):
        out[f"{name}_mean"], out[f"{name}_median"], out[f"{name}_p99"] = ms(values)
    return out


def wait_healthy(url: str, process: subprocess.Popen, path: str) -> None:
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up")


def bench_server(name: str, command: list[str], port: int, health: str, prompts: list[str], levels: list[int],
                 max_tokens: int) -> dict[int, dict[str, float]]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, health)
        model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
        asyncio.run(run_level(url, model, prompts[:2], 1, 4))  # warm-up
        out = {}
        for level in levels:
            seconds, results = asyncio.run(run_level(url, model, prompts, level, max_tokens))
            out[level] = summarize(seconds, results)
            print(f"{name} c={level}: {out[level]['output_tokens_per_s']:.1f} tok/s, "
                  f"median TTFT {out[level]['ttft_median']:.0f} ms", flush=True)
        return out
    finally:
        process.terminate()
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gguf", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1).")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=16, help="Requests per concurrency level.")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--prompts", type=Path, default=None, help="One prompt per line.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from kaiyuan.models import smollm2_gguf_path

    gguf = args.gguf or str(smollm2_gguf_path())
    prompts = (args.prompts.read_text().splitlines() if args.prompts else default_prompts(args.requests, args.seed))
    prompts = [p for p in prompts if p.strip()][: args.requests]
    parallel = max(args.concurrency)
    kaiyuan = bench_server("kaiyuan", [sys.executable, "-m", "kaiyuan.cli", "serve", gguf, "--port", "8931",
                                       "--parallel", str(parallel), "--max-concurrent", str(parallel)],
                           8931, "/health", prompts, args.concurrency, args.max_tokens)
    llama = bench_server("llama-cpp-python", [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--port",
                                              "8932", "--n_ctx", "2048", "--interrupt_requests", "False"],
                         8932, "/v1/models", prompts, args.concurrency, args.max_tokens)

    import llama_cpp

    lines = [
        SECTION, "",
        f"Same GGUF (`{Path(gguf).name}`), {len(prompts)} streamed chat requests per level (prompts: "
        f"{args.prompts or 'short-story requests, seed ' + str(args.seed)}), temperature 0, max_tokens "
        f"{args.max_tokens}; {platform.machine()} CPU, 2 cores, {date.today()}; both servers started by this "
        f"script one after the other. Baseline: `python -m llama_cpp.server` (llama-cpp-python "
        f"{llama_cpp.__version__}, defaults except `--interrupt_requests False`: by default a new request cuts the "
        f"stream in progress). kaiyuan: `kaiyuan serve GGUF --parallel {parallel}` (llama.cpp "
        "engine, continuous batching). Latencies in ms (mean / median / p99).", "",
        "| server | concurrency | req/s | output tok/s | vs baseline | TTFT | TPOT | ITL | E2E |",
        "|---|---:|---:|---:|---:|---|---|---|---|",
    ]
    for level in args.concurrency:
        base = llama[level]["output_tokens_per_s"]
        for name, result in (("llama-cpp-python server (baseline)", llama[level]), ("kaiyuan serve", kaiyuan[level])):
            cells = [f"{result[f'{m}_mean']:.0f} / {result[f'{m}_median']:.0f} / {result[f'{m}_p99']:.0f}"
                     for m in ("ttft", "tpot", "itl", "e2e")]
            lines.append(f"| {name} | {level} | {result['requests_per_s']:.2f} | {result['output_tokens_per_s']:.1f} "
                         f"| {result['output_tokens_per_s'] / base:.2f}× | " + " | ".join(cells) + " |")
    write_section(SECTION, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
