"""Admission limits, Prometheus metrics and graceful shutdown of the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from kaiyuan.serve.engines.base import Generation, SamplingParams, StreamEvent


class BlockingEngine:
    """Answers "hello" once ``release`` is set (to hold requests in flight)."""

    model_id = "blocking"
    context_length = 512

    def __init__(self) -> None:
        self.release = threading.Event()

    def generate(self, messages: list[dict[str, str]], params: SamplingParams) -> Generation:
        self.release.wait(3)
        return Generation("hello", "stop", 3, 2)

    def stream(self, messages: list[dict[str, str]], params: SamplingParams):
        yield StreamEvent("hel")
        yield StreamEvent("lo", finish=Generation("hello", "stop", 3, 2))


def serve(engine, **limits):
    from kaiyuan.serve.guard import hash_api_key
    from kaiyuan.serve.operations import ServerLimits, with_operations
    from kaiyuan.serve.routes import create_app
    from kaiyuan.serve.server import BackgroundServer

    app = with_operations(create_app({"blocking": engine}, [hash_api_key("secret")]), ServerLimits(**limits))
    return BackgroundServer(app), app


def chat(url: str, stream: bool = False, **extra) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", headers={"Authorization": "Bearer secret"}, timeout=30,
                      json={"model": "blocking", "messages": [{"role": "user", "content": "hi"}], "stream": stream,
                            **extra})


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{") and line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_busy_server_queues_then_answers_503_with_retry_after_and_counts_it_all():
    engine = BlockingEngine()
    server, app = serve(engine, max_concurrent=1, max_queue=1, retry_after_s=2)
    with server:
        results: list[httpx.Response] = []
        first = threading.Thread(target=lambda: results.append(chat(server.url)))
        first.start()
        wait_until(lambda: app.running == 1)
        second = threading.Thread(target=lambda: results.append(chat(server.url)))
        second.start()
        wait_until(lambda: app.waiting == 1)

        busy = chat(server.url)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert busy.json() == {"error": {"message": "Server busy: 1 requests running and 1 waiting; retry later.",
                                         "type": "server_busy_error", "param": None, "code": "server_busy"}}
        gauges = httpx.get(f"{server.url}/metrics").text  # public, no API key
        assert metric(gauges, "kaiyuan_running_requests") == 1 and metric(gauges, "kaiyuan_queue_depth") == 1

        engine.release.set()
        first.join()
        second.join()
        assert [r.status_code for r in results] == [200, 200]
        streamed = chat(server.url, stream=True, stream_options={"include_usage": True})
        assert streamed.status_code == 200 and "data: [DONE]" in streamed.text

        text = httpx.get(f"{server.url}/metrics").text
    assert 'kaiyuan_requests_total{route="/v1/chat/completions",status="200"} 3.0' in text
    assert 'kaiyuan_requests_total{route="/v1/chat/completions",status="503"} 1.0' in text
    assert metric(text, "kaiyuan_completion_tokens_total") == 2 + 2 + 2  # usage of the two answers + the stream's
    assert metric(text, "kaiyuan_prompt_tokens_total") == 3 + 3 + 3
    assert metric(text, "kaiyuan_time_to_first_token_seconds_count") == 1
    assert metric(text, "kaiyuan_inter_token_latency_seconds_count") == 1  # two text chunks → one gap
    assert metric(text, "kaiyuan_running_requests") == 0 and metric(text, "kaiyuan_queue_depth") == 0


def test_oversized_body_gets_413_and_slow_request_504():
    engine = BlockingEngine()
    server, _ = serve(engine, max_body_bytes=200, request_timeout_s=0.5)
    with server:
        big = chat(server.url, stop=["x" * 300])
        assert big.status_code == 413
        assert big.json()["error"]["message"].endswith("is over the limit of 200 bytes.")
        slow = chat(server.url)
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "request_timeout"
        engine.release.set()


def test_sigterm_finishes_the_request_in_flight_then_exits(home, tiny, tmp_path):
    from kaiyuan.serve.server import free_port

    port = free_port()
    env = {**os.environ, "KAIYUAN_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "kaiyuan.cli", "serve", "tiny-llama", "--port", str(port),
                                "--grace-period", "20"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url), timeout=60)
        chunks: list[dict] = []
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60, json={
                "model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "max_tokens": 200, "temperature": 0}) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    chunks.append(json.loads(line[6:]))
                    if len(chunks) == 2:
                        process.send_signal(signal.SIGTERM)
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")  # the stream was finished
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
        assert b"Finished server process" in process.stderr.read()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
