"""Team hub: download and push throughput of a ~270 MB model over loopback, against a static file server serving the
same bytes from disk, and metadata latency on SQLite against PostgreSQL, all measured in one run on this machine.

- The hub runs as the CLI runs it, a subprocess ``python -m kaiyuan hub serve --port P --storage DIR`` (its own
  interpreter, so client and server do not share a GIL). The model (a random ``--mb`` MiB ``model.safetensors``
  and a few small files) is pushed into it with ``huggingface_hub.upload_folder`` (``HF_HUB_DISABLE_XET=1``, a write
  token): the push figure is that first ``upload_folder`` into a fresh repo (MB/s, hashing included), then a second,
  identical one, which the hub deduplicates (seconds).
- The static server serves the model folder itself: nginx (Debian's ``nginx-light``, ``sendfile on``, ``worker_processes
  auto``, run in the foreground with a minimal config) when it is installed, else ``python -m http.server``; the
  table says which.
- Downloads: plain streaming GETs (httpx, 1 MiB chunks, bytes counted and discarded) of
  ``/{repo}/resolve/main/model.safetensors`` against the static URL of the same file, with 1 and with 8 concurrent
  clients, each client its own process (httpx's parsing holds the GIL, so threads would measure the client), all
  started together; aggregate MB/s (10^6 bytes/s) = bytes of all clients / (last end - first start). One warm-up GET
  of each first (page cache); then ``--rounds`` rounds, hub and static interleaved; medians and hub/static ratio.
  Target: ≥ 0.8× with 1 and 8 clients. The CPU seconds the server processes spent per GB are read from /proc too.
  Then one ``snapshot_download`` of the repo into an empty cache, for a real client's figure.
- Metadata latency: ``GET /api/models/{repo}/revision/main`` and ``HEAD /{repo}/resolve/main/config.json``,
  ``--requests`` each over one keep-alive client (after 10 warm-up requests), median and p90, on the hub above
  (SQLite) and on a second hub subprocess with ``--database postgresql://…`` (a PostgreSQL 15 of its own, started
  from /usr/lib/postgresql/15/bin as the postgres user as tests/teamhub/conftest.py does, the same folder seeded
  straight into it with tests/teamhub/seed.py).
- ``--profile``: where the hub's download time goes, from the route's pieces timed in this process: the blob
  store's chunked read alone, and the whole ASGI app (routing, metadata lookup, StreamingResponse, thread hops)
  driven in-process with a ``send`` that discards the bytes, i.e. everything but the socket.

    apt-get install -y nginx-light   # optional: else the static server is python -m http.server
    python benchmarks/hub_throughput.py [--mb 256] [--rounds 3] [--requests 200] [--profile]

Writes the tables to benchmarks/RESULTS.md (section "Team hub: throughput").
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

HEADING = "## Team hub: throughput"
ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("KAIYUAN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
REPO = "bench/tiny-model"
CHUNK = 1 << 20
RATIO_TARGET = 0.8
SMALL_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32}\n',
    "generation_config.json": b'{"do_sample": false, "max_new_tokens": 64}\n',
    "tokenizer_config.json": b'{"model_max_length": 4096, "tokenizer_class": "PreTrainedTokenizerFast"}\n',
    "README.md": b"---\nlicense: apache-2.0\n---\n# tiny-model\n\nRandom bytes for a throughput benchmark.\n",
}


# -- helpers ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url}: no answer after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (nginx's workers)."""
    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def make_model(folder: Path, mib: int) -> None:
    folder.mkdir(parents=True)
    with (folder / "model.safetensors").open("wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(CHUNK))
    for name, content in SMALL_FILES.items():
        (folder / name).write_bytes(content)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- servers ---------------------------------------------------------------------------------------------------


def start_hub(storage: Path, env: dict[str, str], database: str | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = storage.with_suffix(".log")
    command = [sys.executable, "-m", "kaiyuan", "hub", "serve", "--port", str(port), "--storage", str(storage)]
    if database:
        command += ["--database", database]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc, log)
    return proc, url


NGINX_CONF = """daemon off;
user root;
worker_processes auto;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-body;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def start_static(folder: Path, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    log = tmp / "static.log"
    if NGINX:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=folder))
        version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
        proc = subprocess.Popen([NGINX, "-e", str(tmp / "nginx-error.log"), "-p", str(tmp), "-c", str(conf)],
                                stdout=subprocess.DEVNULL, stderr=log.open("w"))
        name = f"nginx {version} (sendfile, worker_processes auto)"
    else:
        proc = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                 str(folder), str(port)], stdout=subprocess.DEVNULL, stderr=log.open("w"))
        name = "python -m http.server (nginx not installed)"
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/config.json", proc, log)
    return proc, url, name


PG_PROCS: list[Path] = []


def as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


def start_postgres() -> str | None:
    """A PostgreSQL 15 of its own on a temp dir, as tests/teamhub/conftest.py starts it; its URL, or None."""
    if not all((PG_BIN / tool).is_file() for tool in ("initdb", "pg_ctl", "createdb")):
        return None
    root = Path(tempfile.mkdtemp(prefix="kaiyuan-bench-pg-"))
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", free_port()
    PG_PROCS.append(root)
    run = {"check": True, "capture_output": True, "timeout": 120}
    subprocess.run(as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                               "--no-sync", "-E", "UTF8"), **run)
    subprocess.run(as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
                               "-t", "60", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off",
                               "start"), **run)
    subprocess.run(as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                               "kaiyuan_bench"), **run)
    return f"postgresql://postgres@127.0.0.1:{port}/kaiyuan_bench"


def stop_postgres() -> None:
    for root in PG_PROCS:
        subprocess.run(as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(root / "data"), "stop", "-m", "fast"),
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# -- download clients (each in its own process) ----------------------------------------------------------------


def fetch(url: str, start_at: float) -> tuple[float, float, int]:
    """One streaming GET from ``start_at`` (wall clock, shared by all clients): (start, end, bytes)."""
    with httpx.Client(timeout=120) as client:
        time.sleep(max(0.0, start_at - time.time()))
        start, size = time.time(), 0
        with client.stream("GET", url) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(CHUNK):
                size += len(chunk)
        return start, time.time(), size


def ready() -> int:
    return os.getpid()


def aggregate(pool: ProcessPoolExecutor, url: str, clients: int, expected: int,
              server_pid: int) -> tuple[float, float]:
    """Aggregate MB/s of ``clients`` concurrent GETs of ``url``, and the server's CPU seconds per GB moved."""
    cpu = cpu_seconds(server_pid)
    start_at = time.time() + 0.3
    results = [f.result() for f in [pool.submit(fetch, url, start_at) for _ in range(clients)]]
    cpu = cpu_seconds(server_pid) - cpu
    if any(size != expected for _, _, size in results):
        raise RuntimeError(f"{url}: got {[size for _, _, size in results]} bytes, expected {expected}")
    total = sum(size for _, _, size in results)
    wall = max(end for _, end, _ in results) - min(start for start, _, _ in results)
    return total / wall / 1e6, cpu / (total / 1e9)


# -- metadata latency ------------------------------------------------------------------------------------------


def latencies(url: str, requests: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"info": [], "head": []}
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(10):
            client.get(f"/api/models/{REPO}/revision/main").raise_for_status()
            client.head(f"/{REPO}/resolve/main/config.json").raise_for_status()
        for key, method, path in (("info", "GET", f"/api/models/{REPO}/revision/main"),
                                  ("head", "HEAD", f"/{REPO}/resolve/main/config.json")):
            for _ in range(requests):
                start = time.perf_counter()
                client.request(method, path).raise_for_status()
                out[key].append((time.perf_counter() - start) * 1e3)
    return out


# -- profile: the route's pieces, in this process ---------------------------------------------------------------


def profile_route(storage: Path, blob_mb: float) -> list[str]:
    """MB/s of the blob store's read alone, and of the whole ASGI app with no socket (send discards)."""
    from kaiyuan.teamhub.app import create_hub_app

    app = create_hub_app(storage)
    hub = app.state.hub
    from starlette.concurrency import iterate_in_threadpool

    oid = None
    for folder in sorted((storage / "blobs").iterdir()):
        if folder.is_dir() and len(folder.name) == 2:
            for blob in folder.iterdir():
                if blob.stat().st_size > CHUNK:
                    oid = folder.name + blob.name
    assert oid is not None
    start = time.perf_counter()
    size = sum(len(chunk) for chunk in hub.blobs.read(oid))
    read_mbs = size / (time.perf_counter() - start) / 1e6

    async def hops() -> float:
        start, size = time.perf_counter(), 0
        async for chunk in iterate_in_threadpool(hub.blobs.read(oid)):
            size += len(chunk)
        return size / (time.perf_counter() - start) / 1e6

    hop_mbs = max(asyncio.run(hops()) for _ in range(3))

    async def asgi_once(method: str = "GET") -> tuple[int, float, int]:
        path = f"/{REPO}/resolve/main/model.safetensors"
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn sends it
                 "http_version": "1.1", "method": method, "scheme": "http",
                 "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        got, sends = 0, 0

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal got, sends
            if message["type"] == "http.response.body":
                got += len(message.get("body", b""))
                sends += 1

        start = time.perf_counter()
        await app(scope, receive, send)
        return got, time.perf_counter() - start, sends

    asyncio.run(asgi_once())  # warm-up
    runs = [asyncio.run(asgi_once()) for _ in range(3)]
    got, seconds, sends = min(runs, key=lambda r: r[1])
    asgi_mbs = got / seconds / 1e6
    head_ms = statistics.median(asyncio.run(asgi_once("HEAD"))[1] for _ in range(20)) * 1e3
    hub.db.engine.dispose()
    return [f"| blob store read alone (1 MiB chunks, page cache) | {read_mbs:,.0f} |",
            f"| the same read, each chunk fetched from a worker thread (iterate_in_threadpool) | {hop_mbs:,.0f} |",
            f"| the route's lookups before the first byte (HEAD through the app) | {head_ms:.1f} ms |",
            f"| whole ASGI app in-process, no socket ({sends} body sends) | {asgi_mbs:,.0f} |",
            f"| → per 1 MiB chunk in the app | {seconds / max(sends, 1) * 1e6:,.0f} µs |"]


# -- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=256, help="Size of model.safetensors in MiB (256: ~268 MB).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of each download measurement.")
    parser.add_argument("--requests", type=int, default=200, help="Requests of each metadata measurement.")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="Concurrent download clients.")
    parser.add_argument("--profile", action="store_true", help="Also time the hub's download route's pieces.")
    parser.add_argument("--no-write", action="store_true", help="Print the tables, leave RESULTS.md alone.")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="kaiyuan-hub-bench-"))
    env = {**os.environ, "KAIYUAN_HOME": str(tmp / "home"), "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    os.environ.update({k: env[k] for k in ("HF_HOME", "HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_TELEMETRY",
                                           "HF_HUB_DISABLE_PROGRESS_BARS")})
    os.environ.pop("HF_TOKEN", None)
    procs: list[subprocess.Popen] = []
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPUs ({psutil.cpu_count(logical=False)} physical), Python {sys.version.split()[0]}, "
          f"httpx {httpx.__version__}")
    try:
        folder = tmp / "model"
        make_model(folder, args.mb)
        total_bytes = sum(p.stat().st_size for p in folder.iterdir())
        model_bytes = (folder / "model.safetensors").stat().st_size
        print(f"model: {total_bytes / 1e6:.0f} MB ({model_bytes / 1e6:.0f} MB model.safetensors + "
              f"{len(SMALL_FILES)} small files)")

        storage = tmp / "hub-sqlite"
        from kaiyuan.teamhub.config import HubLocation

        db = HubLocation(str(storage)).open_db()
        token = db.create_token("bench", "write")
        db.engine.dispose()
        hub, hub_url = start_hub(storage, env)
        procs.append(hub)
        os.environ["HF_ENDPOINT"] = hub_url
        import huggingface_hub

        api = huggingface_hub.HfApi(endpoint=hub_url, token=token)
        api.create_repo(REPO, exist_ok=True)
        start = time.perf_counter()
        api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="push 1")
        push_s = time.perf_counter() - start
        start = time.perf_counter()
        api.upload_folder(repo_id=REPO, folder_path=folder, commit_message="push 2")
        repush_s = time.perf_counter() - start
        print(f"push: {total_bytes / push_s / 1e6:.0f} MB/s ({push_s:.2f} s); identical push again: {repush_s:.2f} s")

        static, static_url, static_name = start_static(folder, tmp)
        procs.append(static)
        print(f"static server: {static_name}")
        urls = {"hub": (f"{hub_url}/{REPO}/resolve/main/model.safetensors", hub.pid),
                "static": (f"{static_url}/model.safetensors", static.pid)}

        ctx = multiprocessing.get_context("spawn")
        rows = []
        ratios_ok = True
        with ProcessPoolExecutor(max_workers=max(args.clients), mp_context=ctx) as pool:
            for f in [pool.submit(ready) for _ in range(max(args.clients) * 2)]:
                f.result()
            for url, pid in urls.values():  # warm-up: page cache, connections, code paths
                aggregate(pool, url, 1, model_bytes, pid)
            for clients in args.clients:
                speeds: dict[str, list[float]] = {"hub": [], "static": []}
                cpu: dict[str, list[float]] = {"hub": [], "static": []}
                for _ in range(args.rounds):
                    for which, (url, pid) in urls.items():
                        mbs, cpu_gb = aggregate(pool, url, clients, model_bytes, pid)
                        speeds[which].append(mbs)
                        cpu[which].append(cpu_gb)
                        print(f"  {clients} client(s), {which}: {mbs:,.0f} MB/s (server {cpu_gb:.2f} CPU s/GB)")
                hub_mbs, static_mbs = statistics.median(speeds["hub"]), statistics.median(speeds["static"])
                ratio = hub_mbs / static_mbs
                met = ratio >= RATIO_TARGET
                ratios_ok &= met
                rows.append(f"| {clients} | {hub_mbs:,.0f} | {static_mbs:,.0f} | {ratio:.2f}× | "
                            f"{'met' if met else 'missed'} | {statistics.median(cpu['hub']):.2f} | "
                            f"{statistics.median(cpu['static']):.2f} |")
                print(rows[-1])

        cache = tmp / "snapshot-cache"
        start = time.perf_counter()
        huggingface_hub.snapshot_download(REPO, cache_dir=cache, endpoint=hub_url, token=False)
        snap_s = time.perf_counter() - start
        print(f"snapshot_download (cold cache): {total_bytes / snap_s / 1e6:.0f} MB/s ({snap_s:.2f} s)")

        profile_rows: list[str] = []
        if args.profile:
            stop(hub)  # SQLite: one process at a time is simplest for the in-process app
            profile_rows = profile_route(storage, model_bytes / 1e6)
            for row in profile_rows:
                print(row)
            hub, hub_url = start_hub(storage, env)
            procs.append(hub)

        meta = {"SQLite": latencies(hub_url, args.requests)}
        pg_url = start_postgres()
        if pg_url:
            sys.path.insert(0, str(ROOT))
            from kaiyuan.teamhub.app import create_hub_app
            from tests.teamhub.seed import seed_folder

            pg_storage = tmp / "hub-postgres"
            app = create_hub_app(pg_storage, pg_url)
            seed_folder(app.state.hub, REPO, folder)
            app.state.hub.db.engine.dispose()
            pg_hub, pg_hub_url = start_hub(pg_storage, env, pg_url)
            procs.append(pg_hub)
            meta["PostgreSQL 15"] = latencies(pg_hub_url, args.requests)
        meta_rows = []
        for name, values in meta.items():
            meta_rows.append(f"| {name} | {statistics.median(values['info']):.2f} | {pct(values['info'], 0.9):.2f} | "
                             f"{statistics.median(values['head']):.2f} | {pct(values['head'], 0.9):.2f} |")
            print(meta_rows[-1])
    finally:
        for proc in procs:
            stop(proc)
        stop_postgres()
        shutil.rmtree(tmp, ignore_errors=True)

    command = "python benchmarks/hub_throughput.py" + (f" --mb {args.mb}" if args.mb != 256 else "") + (
        " --profile" if args.profile else "")
    text = [
        HEADING, "",
        f"{date.today().isoformat()}, this machine ({cpus} CPUs), loopback, one run: a {total_bytes / 1e6:.0f} MB "
        f"model ({model_bytes / 1e6:.0f} MB random model.safetensors + {len(SMALL_FILES)} small files). The hub is "
        f"`kaiyuan hub serve` (one uvicorn process, SQLite) in a subprocess; the static server is {static_name}, "
        f"serving the same bytes from the model folder. Clients: streaming httpx GETs, 1 MiB chunks, each client its "
        f"own process, all started together; aggregate MB/s (10^6 B/s), median of {args.rounds} rounds, hub and "
        f"static interleaved; server CPU s/GB from /proc. Target hub/static ≥ {RATIO_TARGET}×: "
        f"{'met' if ratios_ok else 'missed'}. `{command}`.", "",
        "| clients | hub (MB/s) | static (MB/s) | hub/static | ≥ 0.8× | hub CPU s/GB | static CPU s/GB |",
        "|---|---|---|---|---|---|---|", *rows, "",
        f"Real clients: `snapshot_download` into an empty cache {total_bytes / snap_s / 1e6:,.0f} MB/s "
        f"({snap_s:.2f} s); `upload_folder` into a fresh repo {total_bytes / push_s / 1e6:,.0f} MB/s "
        f"({push_s:.2f} s, hashing included); the identical push again (deduplicated) {repush_s:.2f} s.", "",
    ]
    if profile_rows:
        text += ["Where the hub's download time goes (the route's pieces, in-process):", "",
                 "| piece | MB/s |", "|---|---|", *profile_rows, ""]
    text += [f"Metadata latency, one keep-alive httpx client, {args.requests} requests each after 10 warm-up (ms):",
             "", "| database | GET /api/models/{repo}/revision/main median | p90 | HEAD resolve config.json median | "
             "p90 |", "|---|---|---|---|---|", *meta_rows]
    if args.no_write:
        print("\n".join(text))
    else:
        write_section(HEADING, "\n".join(text))


if __name__ == "__main__":
    main()
