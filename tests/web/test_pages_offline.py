"""Every page works offline: each request a page makes goes to the kaiyuan server itself (no CDN, fonts or
analytics), nothing breaks the Content-Security-Policy, and no page logs a script error."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from tests.web.conftest import log_in
from tests.web.test_chat_ui import session, site  # noqa: F401 (the fixture)

PAGES = ("/chat", "/arena", "/arena?mode=named", "/leaderboard", "/models", "/compare")


def test_every_page_loads_only_from_this_server_and_runs_cleanly(site, page):  # noqa: F811
    origin = urlsplit(site.url).netloc
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page, site.url, "alice")
    for path in PAGES:
        response = page.goto(f"{site.url}{path}")
        assert response.status == 200, path
        assert page.locator("header.topbar nav a.active").count() == 1, path
    foreign = [url for url in requested if urlsplit(url).netloc != origin and not url.startswith("data:")]
    assert foreign == []
    assert any(url.endswith("/static/app.css") for url in requested)
    assert problems == []  # no script errors, no CSP violations (Chromium reports them as console errors)


def test_logging_out_ends_the_session_on_the_server(site):  # noqa: F811
    client, token = session(site, "alice")
    cookie = client.cookies["kaiyuan_session"]
    assert client.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
    replay = httpx.get(f"{site.url}/chat", cookies={"kaiyuan_session": cookie}, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    forged = httpx.get(f"{site.url}/chat", cookies={"kaiyuan_session": cookie[:-2] + "xx"}, follow_redirects=False)
    assert forged.status_code == 303


def test_session_cookie_is_httponly_and_samesite(site):  # noqa: F811
    client, _ = session(site, "alice")
    fresh = httpx.Client(base_url=site.url, follow_redirects=False)
    import re

    form = fresh.get("/login")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
    done = fresh.post("/login", data={"name": "alice", "password": "alice-password", "csrf_token": token})
    header = [v for k, v in done.headers.multi_items() if k == "set-cookie" and v.startswith("kaiyuan_session=")][0]
    assert "HttpOnly" in header and "SameSite=lax" in header and "Max-Age=604800" in header
