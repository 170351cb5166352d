"""The chat page in a real browser and over HTTP: streaming, Stop (the engine's counter), conversations kept per
user, escaping of hostile replies, log-in, CSRF and rate limits."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from kaiyuan.models import create_tiny_llama
from kaiyuan.serve.engines.transformers_engine import TransformersEngine
from kaiyuan.serve.server import BackgroundServer
from kaiyuan.web.store import UIStore
from tests.web.conftest import (
    HOSTILE_REPLY,
    PASSWORDS,
    ScriptedEngine,
    add_users,
    log_in,
    screenshot,
    slow_down,
    ui_app,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """`kaiyuan serve tiny hostile --ui --ui-users` with two users (alice, bob); tiny is slowed to 20 ms a token."""
    import os

    home = tmp_path_factory.mktemp("ui-home")
    os.environ["KAIYUAN_HOME"] = str(home)
    create_tiny_llama()
    add_users(home)
    tiny = slow_down(TransformersEngine.from_reference("tiny-llama", model_id="tiny"))
    engines = {"tiny": tiny, "hostile": ScriptedEngine("hostile", HOSTILE_REPLY)}
    with BackgroundServer(ui_app(home, engines, users=True)) as server:
        server.home, server.engines = home, engines
        yield server


def session(site, name: str) -> tuple[httpx.Client, str]:
    """An HTTP client logged in as ``name`` through the log-in form, and the CSRF token of its session."""
    client = httpx.Client(base_url=site.url, follow_redirects=False, timeout=30)
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', form.text).group(1)
    done = client.post("/login", data={"name": name, "password": PASSWORDS[name], "csrf_token": token,
                                       "next": "/chat"})
    assert done.status_code == 303 and done.headers["location"] == "/chat", done.text
    page = client.get("/chat")
    return client, re.search(r'<meta name="csrf-token" content="([0-9a-f]+)">', page.text).group(1)


def send(page, model: str, text: str) -> None:
    """Pick ``model`` and send ``text`` from the chat page."""
    page.select_option("#model", model)
    page.fill("#prompt", text)
    page.click("#send")


def events(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: {")]


def test_the_ui_without_login_redirects_to_the_login_page(site):
    for path in ("/", "/chat", "/arena", "/leaderboard", "/models", "/compare"):
        response = httpx.get(f"{site.url}{path}", follow_redirects=True)
        assert response.url.path == "/login", path
        assert "Log in to kaiyuan" in response.text
    response = httpx.get(f"{site.url}/chat/abc?x=1", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fchat%2Fabc%3Fx%3D1"


def test_wrong_password_is_refused_and_the_api_still_takes_no_session(site):
    client = httpx.Client(base_url=site.url, follow_redirects=False)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', client.get("/login").text).group(1)
    wrong = client.post("/login", data={"name": "alice", "password": "nope-nope", "csrf_token": token})
    assert wrong.status_code == 401 and "Wrong name or password." in wrong.text
    assert "kaiyuan_session" not in client.cookies
    # the API itself is served beside the UI as before
    assert httpx.get(f"{site.url}/v1/models").json()["data"][0]["id"] == "tiny"


def test_a_post_without_the_csrf_token_is_refused(site):
    client, token = session(site, "alice")
    body = {"model": "hostile", "content": "hi"}
    refused = client.post("/ui/chat", json=body)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == ("The CSRF token of this request is missing or wrong: reload the "
                                                  "page and try again.")
    assert client.post("/ui/chat", json=body, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert client.post("/logout").status_code == 403  # a form without its token, too
    # a token of another session does not work either
    _, bobs = session(site, "bob")
    assert client.post("/ui/chat", json=body, headers={"X-CSRF-Token": bobs}).status_code == 403
    accepted = client.post("/ui/chat", json=body, headers={"X-CSRF-Token": token})
    assert accepted.status_code == 200
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in events(accepted) if c.get("choices"))
    assert text == HOSTILE_REPLY
    assert accepted.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")


def test_fields_are_applied_or_refused_and_other_users_chats_are_not_found(site):
    client, token = session(site, "alice")
    headers = {"X-CSRF-Token": token}
    unknown = client.post("/ui/chat", json={"model": "hostile", "content": "hi", "seed": 3}, headers=headers)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Unrecognized request argument supplied: seed"
    missing = client.post("/ui/chat", json={"model": "gpt-4", "content": "hi"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "The model 'gpt-4' is not served here. Served: tiny, hostile."
    made = client.post("/ui/chat", json={"model": "hostile", "content": "a secret of alice"}, headers=headers)
    conversation = events(made)[0]["kaiyuan"]["conversation_id"]
    bob, bobs = session(site, "bob")
    assert bob.get(f"/chat/{conversation}").status_code == 404
    assert "a secret of alice" not in bob.get("/chat").text
    foreign = bob.post("/ui/chat", json={"conversation_id": conversation, "model": "hostile", "content": "x"},
                       headers={"X-CSRF-Token": bobs})
    assert foreign.status_code == 404
    assert bob.post(f"/ui/conversations/{conversation}/delete", headers={"X-CSRF-Token": bobs}).status_code == 404
    assert UIStore(site.home).conversation("alice", conversation).messages[0].content == "a secret of alice"


def test_chat_streams_stop_cancels_in_the_engine_and_reload_shows_the_conversation(site, page):
    from playwright.sync_api import expect

    stats = site.engines["tiny"].scheduler.stats
    log_in(page, site.url, "alice")
    page.select_option("#model", "tiny")
    page.fill("#max-tokens", "400")
    page.fill("#temperature", "1")
    page.fill("#prompt", "Tell me a long story")
    cancelled_before, generated_before = stats.requests_cancelled, stats.tokens_generated
    page.click("#send")
    reply = page.locator("article.message.assistant .body").last
    expect(reply).not_to_have_text("", timeout=20_000)  # streamed into the page
    expect(page.locator("#stop")).to_be_visible()
    screenshot(page, "chat-streaming")
    page.click("#stop")
    expect(page.locator("article.message.assistant").last).to_have_class(re.compile(r"\bstopped\b"))
    deadline = time.time() + 10
    while stats.requests_cancelled == cancelled_before and time.time() < deadline:
        time.sleep(0.05)
    assert stats.requests_cancelled == cancelled_before + 1  # the engine stopped generating, not just the page
    generated = stats.tokens_generated
    time.sleep(0.5)
    assert stats.tokens_generated == generated < generated_before + 400
    conversation = page.url.rsplit("/", 1)[1]
    kept = UIStore(site.home).conversation("alice", conversation)
    assert [(m.role, m.status) for m in kept.messages] == [("user", "done"), ("assistant", "stopped")]

    page.reload()
    expect(page.locator("article.message.user .body")).to_have_text("Tell me a long story")
    expect(page.locator("#conversations a.active")).to_have_text("Tell me a long story")
    assert page.locator("article.message.assistant .body").inner_text().strip() == kept.messages[1].content.strip()
    screenshot(page, "chat")

    other = page.context.browser.new_context()
    try:
        bobs = other.new_page()
        log_in(bobs, site.url, "bob")
        expect(bobs.locator("#conversations")).not_to_contain_text("Tell me a long story")
        bobs.goto(f"{site.url}/chat/{conversation}")
        expect(bobs.locator("h1")).to_have_text("No such conversation")
    finally:
        other.close()


def test_hostile_model_output_renders_as_text_and_runs_nothing(site, page):
    from playwright.sync_api import expect

    log_in(page, site.url, "alice")
    send(page, "hostile", "say something nasty")
    body = page.locator("article.message.assistant .body").last
    expect(body).to_contain_text("<script>window.__pwned = 1</script>")
    for shown in (page, ):
        assert shown.evaluate("window.__pwned") is None
        assert body.locator("script, img, b").count() == 0
        assert body.locator("a").count() == 0  # markdown-it refuses the javascript: link: it stays text
        expect(body).to_contain_text("[click me](javascript:window.__pwned=3)")
    page.reload()  # rendered by the server this time
    body = page.locator("article.message.assistant .body").last
    expect(body).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    assert page.evaluate("window.__pwned") is None
    assert body.locator("script, img, b, a").count() == 0
    screenshot(page, "chat-hostile")


def test_edit_and_resend_and_regenerate(site, page):
    from playwright.sync_api import expect

    log_in(page, site.url, "alice")
    send(page, "hostile", "first question")
    expect(page.locator("button.regenerate")).to_be_visible()
    page.click("article.message.user button.edit")
    page.fill("textarea.edit-box", "edited question")
    page.click("button.save")
    expect(page.locator("button.regenerate")).to_be_visible()
    page.click("button.regenerate")
    expect(page.locator("button.regenerate")).to_be_visible()
    conversation = page.url.rsplit("/", 1)[1]
    kept = UIStore(site.home).conversation("alice", conversation)
    assert [(m.role, m.content) for m in kept.messages] == [("user", "edited question"),
                                                            ("assistant", HOSTILE_REPLY)]
    page.reload()
    expect(page.locator("article.message")).to_have_count(2)


def test_chat_is_rate_limited_per_user_with_retry_after(tmp_path):
    home = tmp_path / "home"
    add_users(home)
    engines = {"hostile": ScriptedEngine("hostile", "ok")}
    with BackgroundServer(ui_app(home, engines, users=True, chat_per_minute=2)) as server:
        server.home = home
        client, token = session(server, "alice")
        codes = [client.post("/ui/chat", json={"model": "hostile", "content": "hi"},
                             headers={"X-CSRF-Token": token}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        limited = client.post("/ui/chat", json={"model": "hostile", "content": "hi"}, headers={"X-CSRF-Token": token})
        assert 1 <= int(limited.headers["retry-after"]) <= 61
        assert limited.json()["error"]["code"] == "rate_limited"
        bob, bobs = session(server, "bob")  # per user: bob is not limited by alice's messages
        assert bob.post("/ui/chat", json={"model": "hostile", "content": "hi"},
                        headers={"X-CSRF-Token": bobs}).status_code == 200


def test_a_failing_model_and_an_unreachable_server_say_so_in_the_page(tmp_path, page):
    from playwright.sync_api import expect

    class Broken(ScriptedEngine):
        def stream(self, messages, params):
            from kaiyuan.serve.engines.base import StreamEvent

            yield StreamEvent("partial ")
            raise RuntimeError("the GPU caught fire")

    home = tmp_path / "home"
    with BackgroundServer(ui_app(home, {"broken": Broken("broken", "x")})) as server:  # local user, no log-in
        page.goto(f"{server.url}/chat")
        page.fill("#prompt", "hello")
        page.click("#send")
        expect(page.locator("article.message.assistant .body").last).to_contain_text(
            "The model failed: The server had an error while generating (RuntimeError: the GPU caught fire).")
    # the server is gone now
    page.fill("#prompt", "are you there?")
    page.click("#send")
    expect(page.locator("#banner")).to_contain_text(f"Cannot reach the kaiyuan server at {server.url}: is it still "
                                                    "running?")
    expect(page.locator("#prompt")).to_have_value("are you there?")


def test_a_chat_can_be_deleted_from_the_page(site, page):
    from playwright.sync_api import expect

    log_in(page, site.url, "bob")
    send(page, "hostile", "to be deleted")
    expect(page.locator("#delete-chat")).to_be_visible()
    expect(page.locator("#stop")).to_be_hidden()  # the reply is complete
    conversation = page.url.rsplit("/", 1)[1]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-chat")
    page.wait_for_url(f"{site.url}/chat")
    assert UIStore(site.home).conversation("bob", conversation) is None
    expect(page.locator("#conversations")).not_to_contain_text("to be deleted")
