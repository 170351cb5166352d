"""Real-browser fixtures: Playwright (sync API) driving Debian's Chromium at /usr/bin/chromium.

`playwright install` cannot download browsers here, so ``make install`` apt-installs Debian's ``chromium`` and the
tests launch that binary. Without it (or without the ``playwright`` package) every browser test is skipped, saying why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_MISSING = (
    f"Chromium is not installed at {CHROMIUM} (make install runs apt-get install -y chromium): browser tests skipped"
)
PLAYWRIGHT_MISSING = "playwright is not installed: browser tests skipped"
# Headless, no sandbox (CI runs as root, where Chromium's sandbox refuses to start), no GPU, and nothing that phones
# home: no background networking, component updates or sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]


def chromium_path() -> str | None:
    """The Chromium binary the browser tests launch, or None where it is not installed."""
    return CHROMIUM if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK) else None


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session. Playwright's ``launch`` gives it a fresh temporary user-data dir
    (``--user-data-dir`` in ``args`` is refused by Playwright), removed again when the browser closes."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(PLAYWRIGHT_MISSING)
    executable = chromium_path()
    if executable is None:
        pytest.skip(CHROMIUM_MISSING)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A page in a context of its own (no cookies or storage shared between tests): 1280x800, 20 s timeouts."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``<name>.png`` in $KAIYUAN_SCREENSHOTS, else in <repo>/build/screenshots;
    returns its path."""
    env = os.environ.get("KAIYUAN_SCREENSHOTS")
    folder = Path(env) if env else REPO / "build" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# ------------------------------------------------------------------------------------- a UI server for the tests

HOSTILE_REPLY = ('Look: <script>window.__pwned = 1</script> <img src=x onerror="window.__pwned = 2"> '
                 '[click me](javascript:window.__pwned=3) and <b>bold?</b>')
PASSWORDS = {"alice": "alice-password", "bob": "bob-password-2"}


class ScriptedEngine:
    """An engine whose every reply is ``reply`` (what a model might write), streamed word by word: the page's
    escaping is tested against exactly this text."""

    def __init__(self, model_id: str, reply: str, context_length: int = 4096) -> None:
        self.model_id, self.reply, self.context_length = model_id, reply, context_length

    def _words(self) -> list[str]:
        import re

        return re.findall(r"\S+\s*", self.reply)

    def generate(self, messages, params):
        from kaiyuan.serve.engines.base import Generation

        return Generation(self.reply, "stop", 3, len(self._words()))

    def stream(self, messages, params):
        from kaiyuan.serve.engines.base import Generation, StreamEvent

        words = self._words()
        for word in words[:-1]:
            yield StreamEvent(word)
        yield StreamEvent(words[-1], Generation("", "stop", 3, len(words)))


def slow_down(engine, seconds: float = 0.02):
    """Make every forward pass of a transformers engine's model take ``seconds`` longer (so that a test can press
    Stop while it is still generating)."""
    import time

    engine.model.register_forward_hook(lambda *args: time.sleep(seconds))
    return engine


def ui_app(home, engines, **options):
    """The API app with the web UI mounted, as `kaiyuan serve --ui` builds it."""
    from kaiyuan.serve.operations import ServerLimits, with_operations
    from kaiyuan.serve.routes import create_app
    from kaiyuan.web.app import UIOptions, mount_ui

    api = create_app(engines, with_ui=True, default_max_tokens=64)
    mount_ui(api, engines, UIOptions(**options), home=home, default_max_tokens=64)
    return with_operations(api, ServerLimits())


def add_users(home):
    from kaiyuan.serve.users import UserStore

    store = UserStore(home)
    for name, password in PASSWORDS.items():
        store.add(name, password, admin=name == "alice")


def log_in(page, url: str, name: str) -> None:
    """Log ``name`` in through the log-in form, in the browser."""
    page.goto(f"{url}/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/chat")
