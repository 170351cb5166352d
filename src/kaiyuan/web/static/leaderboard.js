// The leaderboard polls /ui/leaderboard every 2 s and swaps in the server-rendered (autoescaped) table and chart
// when the version (votes-battles) changed: the board follows the arena's votes without a reload.
"use strict";
(() => {
  const board = document.getElementById("board");
  if (!board) return;
  const EVERY_MS = 2000;
  const url = "/ui/leaderboard?source=" + encodeURIComponent(board.dataset.source);
  let failing = false;

  function swap(html) {
    const template = document.createElement("template");
    template.innerHTML = html; // rendered by the server with autoescape: model names are escaped text
    board.replaceChildren(template.content);
  }

  function failed(message) {
    if (!failing) ky.banner(message);
    failing = true;
  }

  async function poll() {
    if (document.hidden) return;
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      failed("Cannot reach the kaiyuan server at " + location.origin + ": the board updates again once it is back.");
      return;
    }
    if (response.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); return;
    }
    if (!response.ok) { failed(await ky.errorText(response)); return; }
    const body = await response.json();
    if (failing) { ky.banner(""); failing = false; }
    if (body.version !== board.dataset.version) {
      swap(body.html);
      board.dataset.version = body.version;
    }
  }

  async function loop() {
    try { await poll(); } finally { setTimeout(loop, EVERY_MS); }
  }
  setTimeout(loop, EVERY_MS);
})();
