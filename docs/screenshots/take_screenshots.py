"""Take the README's screenshots from a running `kaiyuan demo --serve` (local user, no log-in).

    KAIYUAN_HOME=… kaiyuan demo --serve --port 8765 &      # wait for "web UI at …"
    python docs/screenshots/take_screenshots.py http://127.0.0.1:8765

Drives Debian's Chromium through Playwright exactly as the browser tests do; writes PNGs next to this file.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

HERE = Path(__file__).parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ASK = "Rewrite the date below as YYYY-MM-DD. Answer with the date only.\n\n"
BATTLES = [(ASK + "December 25th, 2024", "2024-12-25"), ("Write a haiku about the sea.", None),
           (ASK + "3 March 1999", "1999-03-03"), ("Name three primary colours.", None),
           (ASK + "July 4th, 1976", "1976-07-04"), ("What is the capital of France?", None),
           (ASK + "the 9th of May, 2031", "2031-05-09"), ("Say hello in Spanish.", None)]


def vote_for(replies: list[str], wanted: str | None) -> str:
    """The vote a careful person would cast: for a date prompt, the exact date wins; for any other prompt, a reply
    that is not a bare date wins (the tuned models answer everything with a date); equal → tie, or both bad."""
    good = [(r == wanted) if wanted else not DATE.match(r) for r in replies]
    if good[0] != good[1]:
        return "leftvote" if good[0] else "rightvote"
    return "tievote" if good[0] else "bothbad_vote"


def main(url: str) -> None:
    models = [m["id"] for m in json.load(urllib.request.urlopen(f"{url}/v1/models"))["data"]]  # noqa: S310
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        page = browser.new_context(viewport={"width": 1280, "height": 760}).new_page()
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)

        page.goto(f"{url}/chat")
        page.select_option("#model", models[-1])
        page.fill("#temperature", "0")
        page.fill("#prompt", "Convert this date to ISO 8601 format (YYYY-MM-DD). Reply with the date only.\n\n"
                             "July 4th, 1976")
        page.click("#send")
        expect(page.locator("#stop")).to_be_hidden()
        page.fill("#prompt", "Write a Python function that returns that date as a `datetime.date`.")
        page.click("#send")
        expect(page.locator("#stop")).to_be_hidden()
        page.screenshot(path=str(HERE / "chat.png"))

        for prompt, wanted in BATTLES:  # anonymous battles, voted by a fixed rule (see vote_for)
            page.goto(f"{url}/arena")
            page.fill("#arena-temperature", "0")
            page.fill("#arena-max-tokens", "24")
            page.fill("#arena-prompt", prompt)
            page.click("#arena-send")
            expect(page.locator("button.vote").first).to_be_enabled()
            replies = [page.locator(f"#side-{side} article.message.assistant .body").inner_text().strip()
                       for side in "ab"]
            page.click(f"button[data-vote={vote_for(replies, wanted)}]")
            expect(page.locator("#reveal")).to_be_visible()
            if prompt == BATTLES[0][0]:
                page.screenshot(path=str(HERE / "arena-revealed.png"))

        page.goto(f"{url}/leaderboard?source=human")
        page.screenshot(path=str(HERE / "leaderboard.png"))

        page.goto(f"{url}/models?kind=model")
        page.click(f"text={models[-1]}")
        page.screenshot(path=str(HERE / "model-page.png"))

        page.goto(f"{url}/compare")
        page.locator("form button[type=submit]").first.click()
        page.screenshot(path=str(HERE / "compare.png"))
        browser.close()
    print("\n".join(str(p) for p in sorted(HERE.glob("*.png"))))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8765")
