"""Soak test of `kaiyuan serve`: both engines in one server, hostile traffic for a long time.

One server process serves two models: the transformers engine (tiny-llama, so the run measures the engine's code
paths rather than a big model's FLOPs) and the llama.cpp engine (the real SmolLM2-135M-Instruct Q4_1 GGUF).
``--clients`` concurrent clients (16) send, for ``--minutes`` (20), a fixed-seed mix per request: 30 % streamed
chat, 25 % plain chat, 15 % JSON mode, 10 % tools, 10 % streams the client drops after a few events, 5 % text
completions and 5 % invalid requests (bad JSON, an unknown field, a lone surrogate, a context overflow); every
``--burst-every`` seconds a burst of ``--burst`` extra requests at once goes over the queue limit (503 expected).

Measured: requests served by outcome, 5xx other than the bursts' 503 server_busy (target 0), p50 / p99 latency per
window, the server's RSS over time (growth from the first window to the last; target < 5 %), and at the end the
engines' running sequences and KV cells (target 0) from /metrics. Writes benchmarks/RESULTS.md, section "soak".

    python benchmarks/soak.py [--minutes 20] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

SECTION = "## soak"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]
PROMPTS = ["Convert March 3, 1999 to ISO.", "What is the capital of France?", "Name three colors.",
           "Write a haiku about rain.", "Tell me about cats.", "What is 2+2?"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric_values(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[len(name):]] = float(value)
    return out


class Soak:
    def __init__(self, url: str, models: list[str], seed: int) -> None:
        self.url, self.models = url, models
        self.rng = random.Random(seed)
        self.outcomes: Counter[str] = Counter()
        self.latencies: list[tuple[float, float]] = []  # (time since start, seconds)
        self.unexpected: list[str] = []
        self.started = time.monotonic()

    def body(self, kind: str) -> dict | bytes:
        model = self.rng.choice(self.models)
        messages = [{"role": "user", "content": self.rng.choice(PROMPTS)}]
        base = {"model": model, "messages": messages, "max_tokens": self.rng.choice([8, 16, 32]),
                "temperature": self.rng.choice([0, 0.7, 1.0])}
        if kind == "json":
            return {**base, "response_format": {"type": "json_object"}}
        if kind == "tools":
            return {**base, "tools": TOOLS, "tool_choice": self.rng.choice(["auto", "required"])}
        if kind == "completion":
            return {"model": model, "prompt": self.rng.choice(PROMPTS), "max_tokens": 16}
        if kind == "invalid":
            return self.rng.choice([b'{"model": "x", "messages": [', b'{"model": "' + model.encode() +
                                    b'", "messages": [{"role": "user", "content": "\\ud800"}]}',
                                    json.dumps({**base, "frobnicate": 1}).encode(),
                                    json.dumps({**base, "max_tokens": 100_000}).encode()])
        return {**base, "stream": kind in ("stream", "drop")}

    async def one(self, client: httpx.AsyncClient, kind: str) -> None:
        body = self.body(kind)
        route = "completions" if kind == "completion" else "chat/completions"
        started = time.monotonic()
        try:
            if isinstance(body, bytes):
                response = await client.post(f"{self.url}/v1/{route}", content=body,
                                             headers={"content-type": "application/json"})
                status = response.status_code
            elif body.get("stream"):
                async with client.stream("POST", f"{self.url}/v1/{route}", json=body) as response:
                    status, events = response.status_code, 0
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            events += 1
                            if '"error"' in line and '"server_shutdown"' not in line:
                                self.unexpected.append(line[:200])
                            if kind == "drop" and events == 3:
                                break  # the client goes away mid-stream
            else:
                response = await client.post(f"{self.url}/v1/{route}", json=body)
                status = response.status_code
        except httpx.HTTPError as exc:
            self.outcomes["transport error"] += 1
            self.unexpected.append(f"{kind}: {exc!r}")
            return
        elapsed = time.monotonic() - started
        if status == 200:
            self.latencies.append((started - self.started, elapsed))
        label = f"{status}" if kind != "invalid" else f"invalid → {status}"
        self.outcomes[label] += 1
        if status >= 500 and status != 503:
            self.unexpected.append(f"{kind}: {status}")
        if kind == "invalid" and status not in (400, 503):  # a busy server turns it away before reading it
            self.unexpected.append(f"invalid request answered {status}")

    async def client(self, deadline: float) -> None:
        kinds = ["stream"] * 30 + ["chat"] * 25 + ["json"] * 15 + ["tools"] * 10 + ["drop"] * 10 + \
                ["completion"] * 5 + ["invalid"] * 5
        async with httpx.AsyncClient(timeout=300) as client:
            while time.monotonic() < deadline:
                await self.one(client, self.rng.choice(kinds))

    async def bursts(self, deadline: float, every: float, size: int) -> None:
        async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=size)) as client:
            while time.monotonic() + every < deadline:
                await asyncio.sleep(every)
                await asyncio.gather(*(self.one(client, "chat") for _ in range(size)))


async def run(args: argparse.Namespace, url: str, models: list[str], pid: int) -> dict:
    soak = Soak(url, models, args.seed)
    deadline = time.monotonic() + args.minutes * 60
    rss: list[tuple[float, int]] = []

    async def sample_rss() -> None:
        while time.monotonic() < deadline:
            rss.append((time.monotonic() - soak.started, rss_kb(pid)))
            await asyncio.sleep(10)

    await asyncio.gather(*(soak.client(deadline) for _ in range(args.clients)), sample_rss(),
                         soak.bursts(deadline, args.burst_every, args.burst))
    await asyncio.sleep(2)
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{url}/metrics")).text
    return {"soak": soak, "rss": rss, "running": metric_values(metrics, "kaiyuan_engine_running_sequences"),
            "kv": metric_values(metrics, "kaiyuan_engine_kv_cells")}


def report(args: argparse.Namespace, result: dict, models: list[str]) -> str:
    soak, rss = result["soak"], result["rss"]
    window = args.window * 60
    rows = []
    n_windows = int(args.minutes * 60 // window)
    for w in range(n_windows):
        lat = [s for t, s in soak.latencies if w * window <= t < (w + 1) * window]
        mem = [kb for t, kb in rss if w * window <= t < (w + 1) * window]
        if not lat:
            continue
        p99 = statistics.quantiles(lat, n=100)[98] if len(lat) >= 2 else lat[0]
        rows.append(f"| {w * args.window:g}–{(w + 1) * args.window:g} min | {len(lat)} | "
                    f"{statistics.median(lat) * 1000:.0f} | {p99 * 1000:.0f} | {max(mem) / 1024:.0f} |")
    first = [kb for t, kb in rss if t < window] or [rss[0][1]]
    last = [kb for t, kb in rss if t >= (n_windows - 1) * window] or [rss[-1][1]]
    growth = (max(last) - max(first)) / max(first) * 100
    served = sum(soak.outcomes.values())
    five = sum(n for k, n in soak.outcomes.items() if k.split()[-1].startswith("5") and not k.endswith("503"))
    lines = [
        SECTION, "",
        f"`python benchmarks/soak.py --minutes {args.minutes:g} --clients {args.clients}` ({date.today()}, "
        f"{os.cpu_count()} CPU cores): one `kaiyuan serve` with {' and '.join(models)} (transformers and llama.cpp "
        f"engines; OMP_NUM_THREADS={args.torch_threads}); {args.clients} clients, a "
        "request mix of 30 % streamed chat, 25 % chat, 15 % JSON mode, 10 % tools, 10 % streams dropped after 3 "
        f"events, 5 % text completions, 5 % invalid; a burst of {args.burst} requests every {args.burst_every:g} s "
        "(over --max-queue: 503 expected).", "",
        f"- requests: {served}; outcomes: " + ", ".join(f"{k}: {n}" for k, n in sorted(soak.outcomes.items())),
        f"- 5xx other than 503 server_busy: {five} (target 0); unexpected answers: {len(soak.unexpected)}"
        + (f" — first: {soak.unexpected[0]}" if soak.unexpected else ""),
        f"- server RSS: {max(first) / 1024:.0f} MB in the first window, {max(last) / 1024:.0f} MB in the last "
        f"({growth:+.1f} %; target < 5 %)",
        f"- at the end: running sequences {result['running']}, KV cells {result['kv']} (target 0)", "",
        "| window | requests served (200) | p50 latency ms | p99 latency ms | RSS MB (max) |",
        "|---|---:|---:|---:|---:|", *rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--burst", type=int, default=120)
    parser.add_argument("--burst-every", type=float, default=120)
    parser.add_argument("--window", type=float, default=2, help="minutes per row of the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()

    from kaiyuan.models import smollm2_gguf_path
    from kaiyuan.serve.server import free_port

    home = tempfile.mkdtemp(prefix="kaiyuan-soak-")
    # torch gets one thread, so the two engines in one process do not oversubscribe a small box's cores (llama.cpp's
    # threads spin at their barriers and slow down many times over when descheduled)
    env = {**os.environ, "KAIYUAN_HOME": home, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(args.torch_threads)}
    gguf = str(smollm2_gguf_path())
    port = free_port()
    command = [sys.executable, "-m", "kaiyuan.cli", "serve", "tiny-llama", gguf, "--port", str(port),
               "--max-concurrent", "16", "--max-queue", "32", "--parallel", "8", "--context", "1024"]
    log = open(Path(home) / "server.log", "wb")  # noqa: SIM115 — open for the server's whole life
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                models = [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=2).json()["data"]]
                break
            except (httpx.HTTPError, KeyError, ValueError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"the server did not start; see {home}/server.log") from None
                time.sleep(1)
        result = asyncio.run(run(args, url, models, server.pid))
    finally:
        server.terminate()
        server.wait(60)
    text = report(args, result, models)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
