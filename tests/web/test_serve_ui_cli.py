"""`kaiyuan serve … --ui`: the UI is mounted beside /v1 in the same process; the settings that would open it to the
network without log-in are refused before any model loads."""

from __future__ import annotations

import json

import httpx
import pytest

from kaiyuan.serve.server import BackgroundServer
from kaiyuan.serve.users import UserStore
from tests.conftest import run_cli


@pytest.mark.parametrize("args, message", [
    (["--ui", "--host", "0.0.0.0", "--api-key", "sk-1"],
     "error: --ui on --host 0.0.0.0 would open the UI to the network without log-in: add --ui-users (people log in "
     "with the accounts of `kaiyuan users add NAME`)"),
    (["--ui", "--ui-users"], "error: --ui-users: nobody can log in yet: add a user first with `kaiyuan users add "
                             "NAME`"),
    (["--ui-users"], "error: --ui-users needs --ui"),
    (["--ui", "--arena-weight", "tiny"], "error: --arena-weight 'tiny': expected NAME=WEIGHT with a weight ≥ 0, "
                                         "e.g. tiny=2"),
    (["--ui", "--arena-weight", "tiny=-1"], "expected NAME=WEIGHT with a weight ≥ 0"),
    (["--ui", "--arena-turns", "0"], "error: --arena-turns must be at least 1"),
    (["--ui", "--ray"], "error: --ui is served by the single-process server: leave out --ray"),
])
def test_ui_settings_that_make_no_sense_are_refused_before_loading(monkeypatch, capsys, home, args, message):
    from kaiyuan.serve import engine_set

    def build_engines(*args, **kwargs):
        raise AssertionError("the models must not load")

    monkeypatch.setattr(engine_set, "build_engines", build_engines)
    code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", *args)
    assert code == 2 and message in err, err


def test_an_arena_weight_for_a_model_not_served_is_refused(monkeypatch, capsys, home):
    from kaiyuan.serve import engine_set

    monkeypatch.setattr(engine_set, "build_engines", lambda *a, **k: {"tiny-llama": object()})
    code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", "--ui", "--arena-weight", "gpt=2")
    assert code == 2
    assert "error: --arena-weight names gpt, which is not served (served: tiny-llama)" in err


def test_serve_ui_mounts_the_pages_beside_the_api_which_keeps_its_key(monkeypatch, capsys, home):
    from kaiyuan.serve import server

    started = {}

    def run_until_signalled(app, drain, host, port, grace_s, engines):
        started.update(app=app, port=port)

    monkeypatch.setattr(server, "run_until_signalled", run_until_signalled)
    UserStore(home).add("alice", "alice-password")
    code, out, err = run_cli(monkeypatch, capsys, "serve", "tiny-llama", "--ui", "--ui-users", "--api-key", "sk-1",
                             "--port", "8123", "--json")
    assert code == 0, err
    assert json.loads(out) == {"models": ["tiny-llama"], "url": "http://127.0.0.1:8123/v1", "api_key_required": True,
                               "replicas": 1, "ui": "http://127.0.0.1:8123/"}
    assert "web UI at http://127.0.0.1:8123/ (log in with a `kaiyuan users` account)" in err
    with BackgroundServer(started["app"]) as running:
        assert httpx.get(f"{running.url}/v1/models").status_code == 401  # the API still wants its key
        models = httpx.get(f"{running.url}/v1/models", headers={"Authorization": "Bearer sk-1"}).json()
        assert [m["id"] for m in models["data"]] == ["tiny-llama"]
        page = httpx.get(f"{running.url}/", follow_redirects=True)  # the UI wants a log-in, not a key
        assert page.url.path == "/login" and page.status_code == 200
        css = httpx.get(f"{running.url}/static/app.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert httpx.get(f"{running.url}/metrics").status_code == 200


def test_demo_serve_refuses_a_public_host_before_any_work(monkeypatch, capsys, home):
    code, out, err = run_cli(monkeypatch, capsys, "demo", "--serve", "--host", "0.0.0.0")
    assert code == 2
    assert ("error: --serve on --host 0.0.0.0 would open the demo's UI to the network without log-in: serve on "
            "127.0.0.1, or serve the models with `kaiyuan serve MODEL… --ui --ui-users`") in err
    assert not (home / "registry.sqlite").exists()


def test_demo_keeps_serving_its_models_with_the_ui(monkeypatch, home):
    import uvicorn

    from kaiyuan.models import create_tiny_llama
    from kaiyuan.pipeline.demo import DemoConfig, PlainReporter, keep_serving

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: served.update(app=app, port=port))
    base, other = create_tiny_llama(), create_tiny_llama(seed=1)
    keep_serving([(base.id, "base"), (other.id, "tuned")], DemoConfig(), PlainReporter())
    assert served["port"] == 8000
    with BackgroundServer(served["app"]) as running:
        arena = httpx.get(f"{running.url}/arena?mode=named")  # the local user: no log-in
        assert arena.status_code == 200
        assert '<option selected>base</option>' in arena.text and "<option selected>tuned</option>" in arena.text
        models = httpx.get(f"{running.url}/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["base", "tuned"]
