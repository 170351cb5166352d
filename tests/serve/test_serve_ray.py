"""`kaiyuan serve --ray --replicas N`: the OpenAI-compatible app as Ray Serve replicas on a local Ray instance."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("ray.serve")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_ray_replicas_share_the_chat_completions(home, tiny, tmp_path):
    from openai import OpenAI

    from kaiyuan.serve.server import free_port

    port = free_port()
    # the replicas get KAIYUAN_HOME (and the HF offline switches) through Ray's runtime_env
    env = {**os.environ, "KAIYUAN_HOME": str(home), "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    log = (tmp_path / "serve.log").open("w+b")
    process = subprocess.Popen([sys.executable, "-m", "kaiyuan.cli", "serve", "tiny-llama", "--ray", "--replicas", "2",
                                "--ray-cpus", "2", "--port", str(port), "--api-key", "secret", "--grace-period", "5"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = time.time()
    url = f"http://127.0.0.1:{port}"
    try:
        while not _healthy(url):
            assert process.poll() is None, f"server exited:\n{log.seek(0) or log.read().decode()[-4000:]}"
            assert time.time() - started < 75, f"not up in 75 s:\n{log.seek(0) or log.read().decode()[-4000:]}"
            time.sleep(0.5)
        client = OpenAI(base_url=f"{url}/v1", api_key="secret", max_retries=0, timeout=60)

        def ask(i: int):
            return client.chat.completions.with_raw_response.create(
                model="tiny-llama", messages=[{"role": "user", "content": f"hello {i}"}], max_tokens=4, seed=i)

        # the proxy's router learns of each replica as it comes up: send rounds until both answered (at most 5)
        replicas: set[str] = set()
        for round_ in range(5):
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(ask, range(20 * round_, 20 * round_ + 20)))
            assert all(r.http_response.status_code == 200 for r in responses)
            assert all(r.parse().choices[0].message.role == "assistant" for r in responses)
            replicas |= {r.headers["x-kaiyuan-replica"] for r in responses}
            if len(replicas) == 2:
                break
            time.sleep(2)
        assert len(replicas) == 2, replicas
        assert all("kaiyuan#" in tag for tag in replicas), replicas  # e.g. SERVE_REPLICA::kaiyuan#kaiyuan#ab12
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401  # the API key holds on every replica
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
    assert process.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
