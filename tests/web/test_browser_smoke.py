"""The browser-test plumbing works: Chromium loads a page from a live server, runs its script, and screenshots it."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from kaiyuan.serve.server import BackgroundServer
from tests.web.conftest import screenshot

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>smoke</title></head>
<body><p id="out">not yet</p>
<script>document.getElementById("out").textContent = "written by " + "the script";</script>
</body></html>"""


def smoke_app() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE

    return app


def test_chromium_runs_the_pages_script_and_screenshots_it(page, tmp_path, monkeypatch):
    from playwright.sync_api import expect  # here, not at the top: without playwright the `browser` fixture skips

    monkeypatch.setenv("KAIYUAN_SCREENSHOTS", str(tmp_path))
    with BackgroundServer(smoke_app()) as server:
        page.goto(f"{server.url}/")
        expect(page.locator("#out")).to_have_text("written by the script")
        assert page.evaluate("1+1") == 2
        path = screenshot(page, "smoke")
    assert path == tmp_path / "smoke.png"
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
