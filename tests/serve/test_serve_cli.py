"""`kaiyuan serve` itself: its help lists every route the server answers, a busy port is a clear error before the
server says it is serving, and its flags are the fields of ServeConfig."""

from __future__ import annotations

import re
import socket

import pytest

from tests.conftest import run_cli


def _answered_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the server answers: the app's own routes, and /metrics around it."""
    from fastapi.testclient import TestClient

    from kaiyuan.serve.operations import with_operations
    from kaiyuan.serve.routes import create_app

    api = create_app({})
    answered = {(method, route.path) for route in api.routes for method in route.methods - {"HEAD"}}
    with TestClient(with_operations(api)) as client:
        assert client.get("/metrics").status_code == 200  # answered by the operations layer, not an app route
        assert client.get("/no-such-route").status_code == 404
    return answered | {("GET", "/metrics")}


def test_serve_help_lists_every_route_the_app_answers(monkeypatch, capsys):
    from kaiyuan.serve.config import ROUTES

    code, out, err = run_cli(monkeypatch, capsys, "serve", "--help")
    assert code == 0
    text = " ".join((out + err).split())  # unwrapped
    listed = set(re.findall(r"\b(GET|POST) (/[\w./-]*) \(", text))
    answered = _answered_routes()
    assert {("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
            ("POST", "/v1/embeddings"), ("GET", "/health"), ("GET", "/metrics")} <= answered
    assert listed == answered, (sorted(answered - listed), sorted(listed - answered))
    assert {(method, path) for method, path, _ in ROUTES} == answered


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_busy_port_is_refused_before_any_model_loads(monkeypatch, capsys, home):
    from kaiyuan.serve import engine_set

    def build_engines(*args, **kwargs):
        raise AssertionError("the models must not load when the port is taken")

    monkeypatch.setattr(engine_set, "build_engines", build_engines)
    with _listening_socket() as holder:
        port = holder.getsockname()[1]
        code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", "--port", port)
    assert code == 2
    assert (f"error: port {port} on 127.0.0.1 is in use: stop the server holding it or give another --port"
            in err)
    assert "serving" not in out + err


def test_a_port_taken_while_the_models_load_is_refused_before_serving(monkeypatch, capsys, home):
    from kaiyuan.serve import engine_set, server

    holders: list[socket.socket] = []
    port = server.free_port()

    def build_engines(*args, **kwargs):  # meanwhile, another server takes the port
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen()
        holders.append(holder)
        return {"tiny-llama": object()}

    def run_until_signalled(*args, **kwargs):
        raise AssertionError("the server must not start on a port in use")

    monkeypatch.setattr(engine_set, "build_engines", build_engines)
    monkeypatch.setattr(server, "run_until_signalled", run_until_signalled)
    try:
        code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", "--port", port)
    finally:
        for holder in holders:
            holder.close()
    assert holders, "the models were loaded"
    assert code == 2
    assert (f"error: port {port} on 127.0.0.1 is in use: stop the server holding it or give another --port"
            in err)
    assert "serving" not in out + err


def test_serve_flags_are_the_serve_config_fields(monkeypatch, capsys):
    import dataclasses

    from kaiyuan.serve.config import ServeConfig
    from kaiyuan.serve.operations import ServerLimits

    code, out, err = run_cli(monkeypatch, capsys, "serve", "--help")
    text = out + err
    for f in dataclasses.fields(ServeConfig):
        if f.name != "models":
            assert f"--{f.name.replace('_', '-')}" in text, f.name
    for flag in ("--ray", "--insecure-no-auth", "--no-prompt-cache", "--config", "--json"):
        assert flag in text
    for flag in ("--no-ray", "--no-insecure-no-auth"):  # the switches are spelt as they always were
        code, out, err = run_cli(monkeypatch, capsys, "serve", "m", flag)
        assert code == 2 and "No such option" in out + err, flag
    cfg = ServeConfig(models=["m"])
    assert cfg.limits() == ServerLimits()  # the defaults of the flags are the server's
    assert cfg.llamacpp_options() == {"n_ctx": 2048, "n_parallel": 8, "prompt_cache": True}


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0"], "--host 0.0.0.0 serves beyond this machine"),
    (["--ray", "--replicas", "0"], "--replicas must be at least 1"),
])
def test_serve_refusals_still_come_first(monkeypatch, capsys, home, args, message):
    code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", *args)
    assert code == 2 and message in err
