"""Serving anchors: kaiyuan serve beside the reference servers, in one run, against the memory-bandwidth limit.

CPU suite (default), two phases, each with its servers started together by this script:
  GGUF (SmolLM2-135M-Instruct Q4_1, kaiyuan.models.smollm2_gguf_path()):
    - ``kaiyuan serve GGUF --parallel 16 --max-concurrent 16`` (llama.cpp engine, continuous batching)
    - llama.cpp's C++ ``llama-server -m GGUF --parallel 16 -cb`` (built by benchmarks/llama_server.py from the
      llama.cpp inside llama-cpp-python's sdist; otherwise its defaults)
    - ``python -m llama_cpp.server --n_ctx 2048 --interrupt_requests False`` (llama-cpp-python's own server)
  transformers (the same model as safetensors: ``smollm2-135m-instruct``, which kaiyuan imports once by
  dequantizing the GGUF to float32):
    - ``kaiyuan serve smollm2-135m-instruct --engine transformers --parallel 16 --max-concurrent 16``
    - ``transformers serve DIR --continuous-batching --device cpu``
    - a LoRA adapter (r=8 on q_proj/v_proj, PEFT's default init) served by kaiyuan as ``<base>:<adapter>``; and
      whether ``transformers serve`` can serve that adapter directory at all (probed, reported).
For every server and level (concurrency 1 / 4 / 16) the same prompts go out as streamed chat completions
(temperature 0, max_tokens 32); each phase is measured twice, the servers alternating (A B C, A B C), and only
the server being measured runs: the others are stopped with SIGSTOP meanwhile. The client opens a new connection
per request to llama-server (it closes a connection after a streamed reply); keep-alive elsewhere. Peak RSS is
each server's process tree, sampled with psutil (and its VmHWM). The physical limit: a STREAM-like numpy copy
(best of 5, 1 and N threads) gives memory bandwidth; divided by the bytes read per decoded token (weight bytes +
KV bytes at the mean context) it is the decode rate one stream could reach at most; each server's per-stream
decode rate (1 / median TPOT) is printed as a fraction of it.

GPU suite (``--suite gpu``, run by benchmarks/gpu_check.sh): ``kaiyuan serve --engine vllm`` on the safetensors
model and its LoRA adapter vs ``vllm serve`` of the same, one server at a time (each takes most of the GPU's
memory), two runs each.

Writes benchmarks/RESULTS.md, section "anchors: serving on the CPU" ("anchors, quick: …" with ``--quick``; the GPU
suite: "anchors: serving on the GPU (vLLM)"). Usage:
    python benchmarks/serve_anchors.py [--quick] [--suite cpu|gpu] [--phases gguf transformers]
    python benchmarks/serve_anchors.py --prepare     # import SmolLM2 + create the adapter; print their paths
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402
from serve_bench import RequestResult, default_prompts, summarize  # noqa: E402

ADAPTER = "smollm2-lora-anchor"
PORTS = iter(range(8951, 8999))
LOGS = Path(os.environ.get("KAIYUAN_BENCH_LOGS", "/tmp/kaiyuan-serve-anchors"))


# --- servers ----------------------------------------------------------------------------------------------------------

@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    health: str = "/health"
    keepalive: bool = True
    model: str | None = None  # the model id to request (default: the first of /v1/models)
    note: str = ""
    error: str = ""
    process: subprocess.Popen | None = None
    peak_rss: int = 0
    runs: dict[int, list[tuple[float, list[RequestResult]]]] = field(default_factory=dict)
    _sampler: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = (LOGS / f"{self.name.replace(' ', '_').replace('/', '_')}.log").open("w")
        self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                        start_new_session=True)
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def log_tail(self, lines: int = 15) -> str:
        path = LOGS / f"{self.name.replace(' ', '_').replace('/', '_')}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""

    def wait_healthy(self, timeout: float = 600) -> None:
        assert self.process is not None
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}{self.health}", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{self.name} did not come up in {timeout:.0f} s:\n{self.log_tail()}")
        if self.model is None:
            self.model = httpx.get(f"{self.url}/v1/models", timeout=30).json()["data"][0]["id"]

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except (psutil.Error, AttributeError):
            return []

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._tree_rss())
            self._stop.wait(0.2)

    def _tree_rss(self) -> int:
        total = 0
        for proc in self.tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _tree_hwm(self) -> int:
        total = 0
        for proc in self.tree():
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
            except (OSError, ValueError):
                pass
        return total

    def suspend(self) -> None:
        for proc in self.tree():
            try:
                proc.suspend()
            except psutil.Error:
                pass

    def resume(self) -> None:
        for proc in self.tree():
            try:
                proc.resume()
            except psutil.Error:
                pass

    def stop(self) -> None:
        if self.process is None:
            return
        self.resume()
        self.peak_rss = max(self.peak_rss, self._tree_hwm(), self._tree_rss())
        self._stop.set()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=30)

    # --- measurement
    def measure(self, prompts: list[str], levels: list[int], max_tokens: int, warm: bool) -> None:
        assert self.model is not None
        if warm:
            asyncio.run(run_level(self.url, self.model, prompts[:2], 1, 4, self.keepalive))
        for level in levels:
            seconds, results = asyncio.run(run_level(self.url, self.model, prompts, level, max_tokens,
                                                     self.keepalive))
            self.runs.setdefault(level, []).append((seconds, results))
            summary = summarize(seconds, results)
            print(f"  {self.name} c={level} run {len(self.runs[level])}: {summary['output_tokens_per_s']:.1f} tok/s, "
                  f"median TTFT {summary['ttft_median']:.0f} ms, median TPOT {summary['tpot_median']:.1f} ms, "
                  f"max TTFT {max(r.ttft for r in results) * 1000:.0f} ms, max E2E {summary['e2e_p99']:.0f} ms, "
                  f"{summary['output_tokens']} tokens in {seconds:.1f} s",
                  flush=True)


async def one_request(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int
                      ) -> RequestResult:
    """One streamed chat completion, as serve_bench's, except that the output tokens are the server's own count
    when its last chunk reports usage (transformers serve does, unasked; it may put several tokens in one chunk),
    else the number of content chunks (one token each on the other servers)."""
    started = time.perf_counter()
    first = last = None
    gaps, chunks, reported = [], 0, None
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())[:300]!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"stream error: {chunk['error']}")
            if (chunk.get("usage") or {}).get("completion_tokens"):
                reported = int(chunk["usage"]["completion_tokens"])
            if not chunk.get("choices") or not chunk["choices"][0].get("delta", {}).get("content"):
                continue
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
            chunks += 1
    end = time.perf_counter()
    return RequestResult(ttft=(first or end) - started, e2e=(last or end) - started, itl=gaps,
                         tokens=reported or chunks)


async def run_level(url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int, keepalive: bool
                    ) -> tuple[float, list[RequestResult]]:
    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=None if keepalive else 0)
    async with httpx.AsyncClient(limits=limits) as client:
        async def limited(prompt: str) -> RequestResult:
            async with semaphore:
                return await one_request(client, url, model, prompt, max_tokens)

        started = time.perf_counter()
        results = await asyncio.gather(*(limited(p) for p in prompts))
        return time.perf_counter() - started, list(results)


def run_phase(servers: list[Server], prompts: list[str], levels: list[int], max_tokens: int, runs: int,
              together: bool = True) -> None:
    """Measure ``servers`` ``runs`` times each, alternating. ``together``: all are started first and the idle ones
    are SIGSTOPped while one is measured; otherwise each is started, measured ``runs`` times and stopped in turn."""
    try:
        if together:
            for server in servers:
                server.start()
            for server in servers:
                _guard(server, server.wait_healthy)
                server.suspend()
            for run in range(runs):
                for server in servers:
                    if server.error:
                        continue
                    print(f"{server.name} (run {run + 1})", flush=True)
                    server.resume()
                    _guard(server, lambda s=server, r=run: s.measure(prompts, levels, max_tokens, warm=r == 0))
                    server.suspend()
        else:
            for server in servers:
                server.start()
                _guard(server, server.wait_healthy)
                for run in range(runs):
                    if not server.error:
                        _guard(server, lambda s=server, r=run: s.measure(prompts, levels, max_tokens, warm=r == 0))
                server.stop()
    finally:
        for server in servers:
            server.stop()


def _guard(server: Server, action) -> None:
    """Run ``action``; a failure marks the server as failed (reported in its table row) instead of ending the run."""
    try:
        action()
    except (RuntimeError, httpx.HTTPError, OSError, KeyError, ValueError) as exc:
        server.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        print(f"  {server.name} failed: {exc}", flush=True)


# --- the physical limit -----------------------------------------------------------------------------------------------

def stream_copy_bandwidth(mib: int = 512, repeats: int = 5) -> dict[str, float]:
    """Bytes/s of a STREAM-like copy ``b[:] = a`` of two ``mib``-MiB float64 arrays, counted as STREAM does (read a +
    write b), best of ``repeats``; with 1 thread and with one thread per core (numpy releases the GIL while copying)."""
    import numpy as np

    n = mib * 1024 * 1024 // 8
    a = np.ones(n)
    b = np.zeros(n)
    np.copyto(b, a)  # fault the pages in
    out = {}
    for threads in sorted({1, os.cpu_count() or 1}):
        chunks = np.array_split(np.arange(n), threads)
        bounds = [(c[0], c[-1] + 1) for c in chunks]
        best = float("inf")
        for _ in range(repeats):
            workers = [threading.Thread(target=np.copyto, args=(b[lo:hi], a[lo:hi])) for lo, hi in bounds]
            started = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            best = min(best, time.perf_counter() - started)
        out[f"{threads} thread{'s' if threads > 1 else ''}"] = 2 * a.nbytes / best
    del a, b
    return out


@dataclass
class ModelBytes:
    weights: int  # bytes of weights read per decode step
    kv_per_token: int  # KV-cache bytes per context token
    context: float  # mean context tokens during decoding

    @property
    def per_token(self) -> float:
        return self.weights + self.kv_per_token * self.context


def gguf_bytes(path: Path, context: float) -> ModelBytes:
    """Weight bytes of a GGUF (its tensors' data) and f16 KV bytes per token (llama.cpp's default cache type)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    arch = str(reader.fields["general.architecture"].contents())

    def value(key: str) -> int:
        return int(reader.fields[f"{arch}.{key}"].contents())

    layers, heads, embed = value("block_count"), value("attention.head_count"), value("embedding_length")
    kv_heads = value("attention.head_count_kv") if f"{arch}.attention.head_count_kv" in reader.fields else heads
    weights = sum(int(t.n_bytes) for t in reader.tensors)
    return ModelBytes(weights, 2 * layers * kv_heads * (embed // heads) * 2, context)


def safetensors_bytes(directory: Path, context: float) -> ModelBytes:
    """Weight bytes of a safetensors model (its tensors) and KV bytes per token in its dtype."""
    from safetensors import safe_open

    weights, element = 0, 4
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(file, "pt") as f:
            for key in f.keys():
                tensor = f.get_slice(key)
                shape = tensor.get_shape()
                element = {"F32": 4, "F16": 2, "BF16": 2}.get(tensor.get_dtype(), 4)
                count = 1
                for dim in shape:
                    count *= dim
                weights += count * element
    config = json.loads((directory / "config.json").read_text())
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv = 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head_dim * element
    return ModelBytes(weights, kv, context)


def mean_prompt_tokens(model_dir: Path, prompts: list[str]) -> float:
    from kaiyuan.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    counts = [len(tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                tokenize=True, return_dict=False)) for p in prompts]
    return statistics.mean(counts)


# --- models -----------------------------------------------------------------------------------------------------------

def prepare_models():
    """The SmolLM2 safetensors artifact (imported once from the GGUF) and a LoRA adapter on it (created once)."""
    from kaiyuan.hub.manifest import Parent
    from kaiyuan.hub.registry import ArtifactWriter, Registry
    from kaiyuan.models import load_model, resolve_model

    registry = Registry()
    base = resolve_model("smollm2-135m-instruct", registry)
    adapter = registry.find(ADAPTER, kind="adapter")
    if adapter is None:
        import torch
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(0)
        model = load_model(base, registry).model
        # PEFT's default init (B = 0): the adapter's output equals the base's, so every server generates the same
        # tokens, while the LoRA matmuls still run on every step
        peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
        with ArtifactWriter("adapter", ADAPTER, license=base.license, source="benchmarks/serve_anchors.py (LoRA r=8)",
                            parents=[Parent(base.id, "adapter")], seed=0, registry=registry) as writer:
            peft_model.save_pretrained(writer.path, safe_serialization=True)
        adapter = writer.artifact
    return base, adapter


# --- suites -----------------------------------------------------------------------------------------------------------

def kaiyuan_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kaiyuan.cli", "serve", *args]


def gguf_servers(gguf: Path, parallel: int) -> list[Server]:
    sys.path.insert(0, str(Path(__file__).parent))
    import llama_server

    binary, seconds = llama_server.build()
    if seconds is not None:
        print(f"built {binary} in {seconds:.0f} s", flush=True)
    servers = [Server("kaiyuan serve (llama.cpp)", kaiyuan_command(str(gguf), "--port", str(port := next(PORTS)),
                      "--parallel", str(parallel), "--max-concurrent", str(parallel)), port),
               Server("llama-server (C++)", [str(binary), "-m", str(gguf), "--host", "127.0.0.1",
                                             "--port", str(port := next(PORTS)), "--parallel", str(parallel), "-cb"],
                      port, keepalive=False, note=llama_server.version()),
               Server("llama-cpp-python server", [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
                                                  "--port", str(port := next(PORTS)), "--n_ctx", "2048",
                                                  "--interrupt_requests", "False"], port, health="/v1/models")]
    return servers


def transformers_servers(base, adapter, parallel: int) -> list[Server]:
    transformers_cli = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    return [Server("kaiyuan serve (transformers)", kaiyuan_command(base.name, "--engine", "transformers", "--port",
                   str(port := next(PORTS)), "--parallel", str(parallel), "--max-concurrent", str(parallel)), port,
                   model=base.name),
            Server("transformers serve --continuous-batching",
                   [transformers_cli, "serve", str(base.path), "--continuous-batching", "--device", "cpu",
                    "--host", "127.0.0.1", "--port", str(port := next(PORTS))], port, model=str(base.path)),
            Server("kaiyuan serve (transformers) + LoRA", kaiyuan_command(base.name, ADAPTER, "--engine",
                   "transformers", "--port", str(port := next(PORTS)), "--parallel", str(parallel),
                   "--max-concurrent", str(parallel)), port, model=f"{base.name}:{adapter.name}")]


def probe_transformers_serve_adapter(base, adapter) -> str:
    """Whether ``transformers serve`` serves a PEFT adapter directory: start it on one (a copy of the adapter with the
    base's tokenizer files beside it, so that only the adapter itself can be the problem), ask once, say what
    happened."""
    import tempfile

    transformers_cli = shutil.which("transformers") or str(Path(sys.executable).with_name("transformers"))
    directory = Path(tempfile.mkdtemp(prefix="adapter-probe-")) / adapter.name
    shutil.copytree(adapter.path, directory, ignore=shutil.ignore_patterns("manifest.json"))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        if (base.path / name).is_file():
            shutil.copy2(base.path / name, directory / name)
    server = Server("transformers serve (adapter probe)", [transformers_cli, "serve", str(directory), "--device",
                    "cpu", "--host", "127.0.0.1", "--port", str(port := next(PORTS))], port, model=str(directory))
    server.start()
    try:
        server.wait_healthy(timeout=180)
        body = {"model": str(directory), "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=300)
        if response.status_code == 200:
            return "answered a request for the adapter directory (200)"
        return f"was refused (HTTP {response.status_code}: {response.text[:200]})"
    except (RuntimeError, httpx.HTTPError) as exc:
        lines = [line for line in str(exc).splitlines() if "Error" in line or "error" in line]
        return f"failed: `{(lines[-1] if lines else str(exc).splitlines()[0])[:300].strip()}`"
    finally:
        server.stop()
        shutil.rmtree(directory.parent, ignore_errors=True)


def fmt_limit(limit: float) -> str:
    return f"{limit:.0f} tok/s"


def table(servers: list[Server], levels: list[int], limit: dict[str, float]) -> list[str]:
    lines = ["| server | concurrency | output tok/s (run 1 / run 2) | median TTFT ms | median TPOT ms "
             "| per-stream decode tok/s | of the limit | peak RSS MiB |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for server in servers:
        if server.error:
            lines.append(f"| {server.name} | – | failed: {server.error.replace('|', '/')} | | | | | "
                         f"{server.peak_rss / 2**20:.0f} |")
        for level in levels:
            runs = server.runs.get(level, [])
            if not runs:
                continue
            rates = [summarize(s, r)["output_tokens_per_s"] for s, r in runs]
            everything = [r for _, rs in runs for r in rs]
            ttft = statistics.median(r.ttft for r in everything) * 1000
            tpots = [r.tpot for r in everything if r.tpot]
            tpot = statistics.median(tpots) * 1000 if tpots else float("nan")
            per_stream = 1000 / tpot if tpots else float("nan")
            of_limit = f"{per_stream / limit[server.name]:.0%}" if server.name in limit else "–"
            lines.append(f"| {server.name} | {level} | {' / '.join(f'{x:.1f}' for x in rates)} | {ttft:.0f} | "
                         f"{tpot:.1f} | {per_stream:.1f} | {of_limit} | "
                         f"{server.peak_rss / 2**20:.0f} |")
    return lines


def cpu_suite(args: argparse.Namespace, prompts: list[str]) -> list[str]:
    from kaiyuan.models import smollm2_gguf_path

    gguf = Path(args.gguf) if args.gguf else smollm2_gguf_path()
    parallel = 16
    print("measuring memory bandwidth (STREAM-like copy)", flush=True)
    bandwidth = stream_copy_bandwidth()
    best_bw = max(bandwidth.values())
    print("  " + ", ".join(f"{k}: {v / 1e9:.1f} GB/s" for k, v in bandwidth.items()), flush=True)
    base, adapter = prepare_models()
    context = mean_prompt_tokens(base.path, prompts) + args.max_tokens / 2
    gguf_b, st_b = gguf_bytes(gguf, context), safetensors_bytes(base.path, context)
    limits = {"gguf": best_bw / gguf_b.per_token, "safetensors": best_bw / st_b.per_token}
    out, limit_by_server = [], {}
    servers_done: list[tuple[str, list[Server]]] = []
    if "gguf" in args.phases:
        servers = gguf_servers(gguf, parallel)
        run_phase(servers, prompts, args.concurrency, args.max_tokens, args.runs)
        servers_done.append(("gguf", servers))
        limit_by_server.update({s.name: limits["gguf"] for s in servers})
    probe = ""
    if "transformers" in args.phases:
        servers = transformers_servers(base, adapter, parallel)
        run_phase(servers, prompts, args.concurrency, args.max_tokens, args.runs)
        servers_done.append(("transformers", servers))
        limit_by_server.update({s.name: limits["safetensors"] for s in servers})
        probe = probe_transformers_serve_adapter(base, adapter)
        print(f"transformers serve on the adapter directory: {probe}", flush=True)

    import llama_cpp
    import llama_server
    import transformers

    built = llama_server.recorded_build_seconds()
    cores = os.cpu_count()
    out += [f"Same prompts ({len(prompts)} short-story requests, seed {args.seed}) streamed as chat completions, "
            f"temperature 0, max_tokens {args.max_tokens}, concurrency {' / '.join(map(str, args.concurrency))}; "
            f"{args.runs} runs per server, alternating (only the measured server runs: the others are SIGSTOPped); "
            f"{platform.machine()} CPU with **{cores} cores** (every server shares them with this client), "
            f"{date.today()}. Per-stream decode = 1 / median TPOT; \"of the limit\" = that / the one-stream limit "
            "below (at concurrency c the weights are read once per step for all c streams, so the fraction per "
            "stream falls while the total rises). Peak RSS: the server's process tree (psutil samples and VmHWM).", "",
            "**Physical limit.** STREAM-like copy (numpy, 2 × 512 MiB float64, best of 5, read + write counted): "
            + ", ".join(f"{k} {v / 1e9:.1f} GB/s" for k, v in bandwidth.items())
            + f"; using {best_bw / 1e9:.1f} GB/s. Mean context while decoding {context:.0f} tokens (templated prompt "
            f"+ half of max_tokens). GGUF `{gguf.name}`: {gguf_b.weights / 1e6:.1f} MB of tensor data + "
            f"{gguf_b.kv_per_token} B/token f16 KV × {context:.0f} = {gguf_b.per_token / 1e6:.1f} MB per decoded token "
            f"→ **{fmt_limit(limits['gguf'])} per stream**. Safetensors (float32, as kaiyuan imports it): "
            f"{st_b.weights / 1e6:.1f} MB + {st_b.kv_per_token} B/token f32 KV × {context:.0f} = "
            f"{st_b.per_token / 1e6:.1f} MB → **{fmt_limit(limits['safetensors'])} per stream**.", ""]
    for phase, servers in servers_done:
        if phase == "gguf":
            out += [f"GGUF servers (`{gguf.name}`). kaiyuan: `kaiyuan serve GGUF --parallel {parallel} "
                    f"--max-concurrent {parallel}` (llama.cpp engine via llama-cpp-python "
                    f"{llama_cpp.__version__}). llama.cpp: "
                    f"`llama-server -m GGUF --host 127.0.0.1 --port P --parallel {parallel} -cb`, otherwise defaults "
                    f"({servers[1].note}; built from the sdist's vendor/llama.cpp with AVX2, no native tuning, "
                    f"Release{f', in {built:.0f} s with -j2' if built else ''}); the client opens a new connection per "
                    "request to it. llama-cpp-python: `python -m llama_cpp.server --model GGUF --n_ctx 2048 "
                    "--interrupt_requests False` (one request at a time).", ""]
        else:
            out += [f"transformers servers (SmolLM2-135M-Instruct as float32 safetensors: `kaiyuan` imports "
                    f"`smollm2-135m-instruct` by dequantizing the GGUF). kaiyuan: `kaiyuan serve smollm2-135m-instruct "
                    f"--engine transformers --parallel {parallel} --max-concurrent {parallel}`; + LoRA: the same with "
                    f"the adapter `{ADAPTER}` (r=8, q_proj/v_proj, B=0 init), requests to "
                    f"`smollm2-135m-instruct:{ADAPTER}`. transformers {transformers.__version__}: `transformers serve "
                    f"DIR --continuous-batching --device cpu` (defaults otherwise). LoRA on transformers serve: it has "
                    f"no adapter option, and started on the adapter's directory (with the base's tokenizer files "
                    f"copied in) it {probe}.", ""]
        out += table(servers, args.concurrency, limit_by_server) + [""]
    return out


def gpu_smoke() -> None:
    """SmolLM2 and its LoRA adapter through ``kaiyuan serve --engine vllm``, asked through the official openai client
    (plain and streamed); the adapter (B = 0) must answer as the base does. Raises SystemExit on a failure."""
    import openai

    base, adapter = prepare_models()
    lora_id = f"{base.name}:{adapter.name}"
    server = Server("kaiyuan serve (vLLM) smoke", kaiyuan_command(base.name, adapter.name, "--engine", "vllm",
                    "--port", str(port := next(PORTS))), port, model=base.name)
    server.start()
    try:
        server.wait_healthy()
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        served = sorted(m.id for m in client.models.list().data)
        messages = [{"role": "user", "content": "Write a haiku about the sea."}]
        replies = {}
        for model in (base.name, lora_id):
            reply = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
                model=model, messages=messages, max_tokens=24, temperature=0, stream=True) if chunk.choices)
            replies[model] = reply.choices[0].message.content
            print(f"{model}: {replies[model]!r} (streamed: {streamed!r})", flush=True)
            if not replies[model] or streamed != replies[model]:
                raise SystemExit(f"smoke: {model} answered {replies[model]!r}, streamed {streamed!r}")
        if replies[base.name] != replies[lora_id]:
            raise SystemExit("smoke: the adapter (B = 0) answered differently from its base")
        print(f"smoke: ok, served {served}", flush=True)
    finally:
        server.stop()


def gpu_suite(args: argparse.Namespace, prompts: list[str]) -> list[str]:
    base, adapter = prepare_models()
    vllm_cli = shutil.which("vllm") or str(Path(sys.executable).with_name("vllm"))
    lora_id = f"{base.name}:{adapter.name}"
    servers = [Server("kaiyuan serve (vLLM)", kaiyuan_command(base.name, adapter.name, "--engine", "vllm", "--port",
                      str(port := next(PORTS)), "--max-concurrent", "16"), port, model=base.name),
               Server("vllm serve", [vllm_cli, "serve", str(base.path), "--host", "127.0.0.1", "--port",
                                     str(port := next(PORTS)), "--served-model-name", base.name, "--enable-lora",
                                     "--lora-modules", f"{lora_id}={adapter.path}"], port, model=base.name)]
    run_phase(servers, prompts, args.concurrency, args.max_tokens, args.runs, together=False)
    lora = [Server(f"{s.name} + LoRA", s.command, s.port, model=lora_id) for s in servers]  # restarted, same flags
    run_phase(lora, prompts, args.concurrency, args.max_tokens, args.runs, together=False)
    import vllm

    out = [f"vLLM {vllm.__version__} on the GPU, SmolLM2-135M-Instruct safetensors and a LoRA adapter; "
           f"{len(prompts)} streamed chat requests per level, max_tokens {args.max_tokens}, one server at a time, "
           f"{args.runs} runs each, {date.today()}.", ""]
    return out + table(servers + lora, args.concurrency, {}) + [""]


def heading_for(suite: str, quick: bool) -> str:
    """The RESULTS.md section: results.write_section finds a section by its heading as a substring, so none of these
    starts with another heading ("## serving" is serve_bench's) nor contains another of them."""
    return f"## anchors{', quick' if quick else ''}: serving on the {'GPU (vLLM)' if suite == 'gpu' else 'CPU'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Concurrency 1 and 4, 8 requests per level.")
    parser.add_argument("--suite", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--phases", nargs="+", choices=["gguf", "transformers"], default=["gguf", "transformers"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--requests", type=int, default=None, help="Requests per level (default 16; --quick 8).")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gguf", default=None)
    parser.add_argument("--prepare", action="store_true", help="Import SmolLM2, create the adapter, print paths.")
    parser.add_argument("--no-write", action="store_true", help="Print the tables only.")
    parser.add_argument("--smoke", action="store_true", help="With --suite gpu: the openai-client smoke test only.")
    args = parser.parse_args()
    if args.smoke:
        gpu_smoke()
        return
    if args.prepare:
        base, adapter = prepare_models()
        print(f"base {base.name} {base.path}\nadapter {adapter.name} {adapter.path}")
        return
    args.concurrency = args.concurrency or ([1, 4] if args.quick else [1, 4, 16])
    requests = args.requests or (8 if args.quick else 16)
    prompts = default_prompts(requests, args.seed)
    lines = cpu_suite(args, prompts) if args.suite == "cpu" else gpu_suite(args, prompts)
    heading = heading_for(args.suite, args.quick)
    text = "\n".join([heading, "", *lines])
    print(text)
    if not args.no_write:
        write_section(heading, text)


if __name__ == "__main__":
    main()
