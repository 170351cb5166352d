"""Web UI: time to first token through the chat page against straight to the API, and the chat page's load time,
on `tiny-llama`, in one run, on one in-process server built as `kaiyuan serve tiny-llama --ui` builds it.

- API TTFT: ``POST /v1/chat/completions`` with ``stream: true`` (httpx, a fresh connection per request), from
  sending to the first server-sent chunk whose ``choices[0].delta.content`` is non-empty.
- Browser TTFT: Playwright driving Chromium (/usr/bin/chromium, headless) on a freshly loaded ``/chat``: max tokens
  and temperature set, the prompt typed, then in the page ``performance.now()``, a click on Send, and a
  MutationObserver on ``#messages`` that stops the clock when text first goes into the reply's body.
- Chat page load: ``loadEventEnd - startTime`` of the navigation entry of that fresh ``/chat`` (a new browser
  context each time: empty cache, so the CSS and JS are fetched too, all from this server).

Same prompt every time, max_tokens 16, temperature 0; 3 warm-up runs of each, then ``--runs`` of each, API and
browser interleaved (API, browser, API, …) so that machine noise hits both alike.

Where the time goes, from the same runs: the server is wrapped in a pass-through ASGI timer (request in → first
event with text sent out) and the page's own ``/ui/chat`` fetch is read from Resource Timing, so each TTFT splits
into the page's JavaScript before its request, the server (for the UI: CSRF check, the conversation and message
stored, the relay), and the rest (the transport; in the browser also reading the stream and updating the DOM).
``--breakdown`` adds a second interleaved series with two raw in-page probes: a ``fetch`` of
``/v1/chat/completions`` and of ``/ui/chat`` from ``page.evaluate`` that read the stream without touching the DOM.

Each request (and each page load) starts at least 0.5 s after the previous reply ended, as a person's next message
would: on this 2-core machine a request that comes within ~0.25 s of the previous generation's end waits ~240 ms more
for its first token whichever way it arrives (evidently OpenMP threads still spin-waiting from that generation crowd
the cores: ``OMP_WAIT_POLICY=PASSIVE`` or one torch thread removes it). Back to back, that stall would fall on
whichever probe follows another more closely, not on the UI. The UI's per-user message limit (30 a minute by
default) is raised for the run so that no send is refused; otherwise the server is the CLI's.

    python benchmarks/ui_ttft.py [--runs 20] [--breakdown]

Writes the tables to benchmarks/RESULTS.md (section "Web UI: time to first token").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from results import write_section  # noqa: E402

HEADING = "## Web UI: time to first token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MODEL = "tiny-llama"
PROMPT = "Write one sentence about the sea."
MAX_TOKENS, TEMPERATURE, WARMUP = 16, 0.0, 3
RATIO_TARGET, LOAD_TARGET_MS = 1.2, 300.0
SETTLE_S = 0.5  # each probe starts this long after the previous reply ended (see the module docstring)
TEXT_EVENT = re.compile(rb'"delta": \{[^}]*"content": "[^"]')  # an SSE chunk with non-empty delta.content

# Resolves with [click time, time of the first text put into the reply's body] (performance.now(), ms; before
# paint: a MutationObserver callback runs as a microtask after the DOM change). It reads the mutation records, not
# the body's final state: tiny-llama's replies are newlines, which the page streams in as text and then replaces
# with the server's rendered HTML (empty), in one task when the whole stream comes in one read.
BROWSER_TTFT_JS = """async () => {
  const list = document.getElementById("messages");
  const REPLY = "article.message.assistant .body";
  return await new Promise((resolve, reject) => {
    let start = 0;
    const observer = new MutationObserver((records) => {
      for (const record of records) {
        const el = record.target.nodeType === Node.TEXT_NODE ? record.target.parentElement : record.target;
        const body = el && el.closest(REPLY);
        if (!body) continue;
        const text = record.type === "characterData" ? record.target.data
          : [...record.addedNodes].map((node) => node.textContent).join("");
        if (!text.length) continue;
        observer.disconnect();
        if (body.closest("article").classList.contains("error")) reject(new Error(text));
        else resolve([start, performance.now()]);
        return;
      }
    });
    observer.observe(list, { subtree: true, characterData: true, childList: true });
    setTimeout(() => { observer.disconnect(); reject(new Error("no text within 60 s")); }, 60000);
    start = performance.now();
    document.getElementById("send").click();
  });
}"""

# Resource Timing of the page's /ui/chat request (read once its stream has ended): [startTime, requestStart].
UI_FETCH_JS = """() => { const e = performance.getEntriesByType("resource").filter((r) => r.name.endsWith("/ui/chat"));
  return e.length ? [e[0].startTime, e[0].requestStart] : null; }"""

# A raw streamed fetch from the page, no DOM work: ms to the first non-empty delta.content, then read to the end.
FETCH_TTFT_JS = """async ([url, body]) => {
  const start = performance.now();
  const response = await fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json",
               "X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content } });
  if (!response.ok) throw new Error(url + " answered " + response.status);
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = "", first = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while (first === null && (cut = buffer.indexOf("\\n\\n")) >= 0) {
      const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const chunk = JSON.parse(event.slice(6));
      if ((chunk.choices || []).some((c) => c.delta && c.delta.content)) first = performance.now() - start;
    }
  }
  if (first === null) throw new Error(url + ": the stream ended without text");
  return first;
}"""

LOAD_JS = """() => { const nav = performance.getEntriesByType("navigation")[0];
  return [nav.loadEventEnd - nav.startTime, performance.getEntriesByType("resource").length]; }"""

_last_end = [0.0]  # perf_counter() when the previous reply finished streaming


def settle() -> None:
    time.sleep(max(0.0, SETTLE_S - (time.perf_counter() - _last_end[0])))


def ended() -> None:
    _last_end[0] = time.perf_counter()


class ServerTimer:
    """Pass-through ASGI wrapper: for the last POST, ms from its arrival to the send of its first event with text."""

    def __init__(self, app: Any) -> None:
        self.app, self.last = app, None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        arrived, self.last = time.perf_counter(), None

        async def timed_send(message: dict[str, Any]) -> None:
            if (self.last is None and message["type"] == "http.response.body"
                    and TEXT_EVENT.search(message.get("body", b""))):
                self.last = (time.perf_counter() - arrived) * 1000
            await send(message)

        await self.app(scope, receive, timed_send)

    def take(self) -> float:
        value, self.last = self.last, None
        if value is None:
            raise RuntimeError("the server sent no event with text")
        return value


def build_app(home: Path):
    """The app of `kaiyuan serve tiny-llama --ui` (local user, no log-in), on a fresh tiny-llama in ``home``."""
    os.environ["KAIYUAN_HOME"] = str(home)
    from kaiyuan.models import create_tiny_llama
    from kaiyuan.serve.engines.transformers_engine import TransformersEngine
    from kaiyuan.serve.operations import with_operations
    from kaiyuan.serve.routes import create_app
    from kaiyuan.web.app import UIOptions, mount_ui

    create_tiny_llama()
    engine = TransformersEngine.from_reference(MODEL, model_id=MODEL)
    api = create_app({MODEL: engine}, with_ui=True)
    mount_ui(api, {MODEL: engine}, UIOptions(chat_per_minute=100_000), home=home)
    return with_operations(api)


def api_ttft(base_url: str) -> float:
    """ms from sending a streamed chat completion to its first chunk with text, read to the end. A new client (so
    a fresh connection) each time, made before the clock starts: making one costs ~25 ms (its TLS context)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
            "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE}
    first = None
    with httpx.Client(timeout=60) as client:
        settle()
        start = time.perf_counter()
        with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if first is None and line.startswith("data: ") and line != "data: [DONE]":
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        first = (time.perf_counter() - start) * 1000
        ended()
    if first is None:
        raise RuntimeError("the API stream ended without text")
    return first


def open_chat(browser, url: str):
    """A new context (empty cache and cookies) on a freshly loaded /chat: (context, page, load ms, resources)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(60_000)
    page = context.new_page()
    settle()
    page.goto(f"{url}/chat", wait_until="load")
    load_ms, resources = page.evaluate(LOAD_JS)
    return context, page, load_ms, resources


def browser_ttft(browser, url: str) -> dict[str, float]:
    """One send through the chat page: its TTFT, the page's JavaScript before its request, its load time and the
    files it fetched (ms); waits for the stream to finish."""
    context, page, load_ms, resources = open_chat(browser, url)
    try:
        page.fill("#max-tokens", str(MAX_TOKENS))
        page.fill("#temperature", str(TEMPERATURE))
        page.fill("#prompt", PROMPT)
        settle()
        try:
            start, text = page.evaluate(BROWSER_TTFT_JS)
        except Exception as exc:
            raise RuntimeError(f"the chat page showed no reply ({exc}); banner: {page.inner_text('#banner')!r}; "
                               f"messages: {page.inner_html('#messages')[:2000]!r}") from exc
        page.wait_for_selector("#stop", state="hidden")
        ended()
        timing = page.evaluate(UI_FETCH_JS)
        before = timing[1] - start if timing and timing[1] else float("nan")
        return {"ttft": text - start, "js": before, "load": load_ms, "resources": resources}
    finally:
        context.close()


def fetch_ttft(browser, url: str, path: str) -> float:
    """TTFT ms of a raw in-page fetch of ``path`` (no DOM work), from a freshly loaded /chat."""
    context, page, _load, _resources = open_chat(browser, url)
    messages = [{"role": "user", "content": PROMPT}]
    body = ({"model": MODEL, "messages": messages, "stream": True, "max_tokens": MAX_TOKENS,
             "temperature": TEMPERATURE} if path.startswith("/v1/")
            else {"model": MODEL, "content": PROMPT, "max_tokens": MAX_TOKENS, "temperature": TEMPERATURE})
    try:
        settle()
        ttft = page.evaluate(FETCH_TTFT_JS, [path, body])
        ended()
        return ttft
    finally:
        context.close()


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="Measured runs of each (after 3 warm-up runs).")
    parser.add_argument("--breakdown", action="store_true",
                        help="Add a series with raw in-page fetches of /v1/chat/completions and /ui/chat.")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from kaiyuan.serve.server import BackgroundServer

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        timer = ServerTimer(build_app(Path(tmp)))
        with BackgroundServer(timer) as server:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            version = browser.version
            print(f"Chromium {version} ({CHROMIUM})")
            url = server.url
            times: dict[str, list[float]] = {name: [] for name in (
                "api", "api_server", "browser", "browser_js", "browser_server", "load", "resources")}
            for run in range(WARMUP + args.runs):
                api = api_ttft(server.base_url)
                api_server = timer.take()
                page = browser_ttft(browser, url)
                page_server = timer.take()
                if run >= WARMUP:
                    for name, value in (("api", api), ("api_server", api_server), ("browser", page["ttft"]),
                                        ("browser_js", page["js"]), ("browser_server", page_server),
                                        ("load", page["load"]), ("resources", page["resources"])):
                        times[name].append(value)
            second: dict[str, list[float]] = {name: [] for name in ("api", "fetch_v1", "fetch_ui", "browser")}
            if args.breakdown:  # a second interleaved series: the API, both raw fetches and the chat page
                probes = {"api": lambda: api_ttft(server.base_url),
                          "fetch_v1": lambda: fetch_ttft(browser, url, "/v1/chat/completions"),
                          "fetch_ui": lambda: fetch_ttft(browser, url, "/ui/chat"),
                          "browser": lambda: browser_ttft(browser, url)["ttft"]}
                for run in range(WARMUP + args.runs):
                    for name, probe in probes.items():
                        value = probe()
                        if run >= WARMUP:
                            second[name].append(value)
            browser.close()
    elapsed, load_after = time.perf_counter() - started, os.getloadavg()[0]

    med = {name: statistics.median(values) for name, values in times.items()}
    nine = {name: p90(values) for name, values in times.items()}
    ratio = med["browser"] / med["api"]
    ratio_ok, load_ok = ratio <= RATIO_TARGET, med["load"] <= LOAD_TARGET_MS
    table = ["| measured | median (ms) | p90 (ms) | |", "|---|---:|---:|---|",
             f"| API TTFT (`POST /v1/chat/completions`, httpx) | {med['api']:.1f} | {nine['api']:.1f} | |",
             f"| browser TTFT (chat page: click Send → first text in the reply) | {med['browser']:.1f} | "
             f"{nine['browser']:.1f} | {ratio:.2f}× the API's median (target ≤ {RATIO_TARGET}×: "
             f"{verdict(ratio_ok)}) |",
             f"| chat page load (`loadEventEnd - startTime`, empty cache) | {med['load']:.1f} | {nine['load']:.1f} | "
             f"target ≤ {LOAD_TARGET_MS:.0f} ms: {verdict(load_ok)} |"]
    api_rest, page_rest = (med["api"] - med["api_server"],
                           med["browser"] - med["browser_js"] - med["browser_server"])
    split = ["| median (ms) | API | chat page |", "|---|---:|---:|",
             f"| the page's JavaScript, click → its request starts | – | {med['browser_js']:.1f} |",
             f"| server: request in → first event with text out | {med['api_server']:.1f} | "
             f"{med['browser_server']:.1f} |",
             f"| the rest: transport; in the browser also reading the stream and the DOM update | {api_rest:.1f} | "
             f"{page_rest:.1f} |",
             f"| TTFT | {med['api']:.1f} | {med['browser']:.1f} |"]
    for line in [*table, "", *split]:
        print(line)
    extra: list[str] = []
    if args.breakdown:
        api2 = statistics.median(second["api"])
        steps = [("API TTFT (httpx)", "api"), ("raw in-page `fetch` of `/v1/chat/completions`", "fetch_v1"),
                 ("raw in-page `fetch` of `/ui/chat` (the UI's relay, no DOM work)", "fetch_ui"),
                 ("chat page (click Send → first text in the reply)", "browser")]
        extra = ["", f"`--breakdown`: a second series in the same run, {args.runs} runs of each after {WARMUP} "
                 f"warm-ups, the four interleaved:", "",
                 "| measured | median (ms) | p90 (ms) | vs API |", "|---|---:|---:|---:|",
                 *[f"| {label} | {statistics.median(second[name]):.1f} | {p90(second[name]):.1f} | "
                   f"{statistics.median(second[name]) / api2:.2f}× |" for label, name in steps]]
        for line in extra[3:]:
            print(line)
    print(f"{elapsed:.0f} s in all; 1-minute load average {load_before:.1f} before, {load_after:.1f} after")
    write_section(HEADING, "\n".join([
        HEADING, "",
        f"Time to first token on `{MODEL}` (prompt {PROMPT!r}, max_tokens {MAX_TOKENS}, temperature 0): straight to "
        f"the API (streamed `POST /v1/chat/completions` over httpx, a fresh connection each, until the first chunk "
        f"with non-empty `delta.content`) against through the web UI's chat page in headless Chromium {version} "
        f"(Playwright; in the page: `performance.now()`, click Send, until a MutationObserver sees the first text "
        f"go into the reply). {args.runs} measured runs of each after {WARMUP} warm-ups, API and browser "
        f"interleaved, one in-process server built as `kaiyuan serve {MODEL} --ui` builds it (local user; the UI's "
        f"message limit raised so that no send is refused); each request and page load starts ≥ {SETTLE_S} s after "
        f"the previous reply ended (see below). Page load: `loadEventEnd - startTime` of each fresh `/chat` (a new "
        f"browser context, so its CSS and JS, {med['resources']:.0f} files all served by the same server, are "
        f"fetched too). x86_64 CPU, 2 cores, CPU only; the browser, the server and the model share them (1-minute "
        f"load average {load_before:.1f} before the run, {load_after:.1f} after). {date.today().isoformat()}. "
        f"`python benchmarks/ui_ttft.py`.", "",
        *table, "",
        f"Targets (issue 13): browser TTFT ≤ {RATIO_TARGET}× the API's (ratio of medians): "
        f"{verdict(ratio_ok)} ({ratio:.2f}×); chat page load ≤ {LOAD_TARGET_MS:.0f} ms: {verdict(load_ok)} "
        f"({med['load']:.0f} ms).", "",
        "Where the time goes, from the same runs: the server's share timed by a pass-through ASGI wrapper (request "
        "in → the send of the first event with text; for the UI that includes the CSRF check, storing the new "
        "conversation and the message, and the relay), the page's share from Resource Timing of its own "
        "`/ui/chat` request; medians, the last part the TTFT's median less the other two:", "",
        *split, "",
        "Why the pause between requests: on this machine a request that arrives within ~0.25 s of the previous "
        "generation's end waits ~240 ms more for its first token, through the API or the UI alike: evidently "
        "OpenMP threads still spin-waiting from that generation crowd the 2 cores (`OMP_WAIT_POLICY=PASSIVE` or "
        "`torch.set_num_threads(1)` removes the stall). Back to back, that stall lands on whichever probe follows "
        "another more closely, which says nothing about the UI.", *extra]))


if __name__ == "__main__":
    main()
