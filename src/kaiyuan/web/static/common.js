// kaiyuan web UI: what every page shares. No framework, no CDN; model output only ever enters the page as
// textContent, or as HTML the server rendered with raw HTML escaped.
"use strict";
const ky = {
  csrf() { return document.querySelector('meta[name="csrf-token"]').content; },
  banner(message) {
    const el = document.getElementById("banner");
    if (!message) { el.hidden = true; el.textContent = ""; return; }
    el.textContent = message; el.hidden = false;
  },
  unreachable() {
    return "Cannot reach the kaiyuan server at " + location.origin + ": is it still running? (Your message is " +
      "kept in the box below; send it again once the server is back.)";
  },
  async errorText(response) {
    try { const body = await response.json(); if (body && body.error) return body.error.message; } catch (e) {}
    return "The server answered " + response.status + " " + response.statusText + ".";
  },
  // POST JSON with the CSRF header; resolves to the parsed body or throws Error(message)
  async post(url, body) {
    let response;
    try {
      response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json",
        "X-CSRF-Token": ky.csrf() }, body: JSON.stringify(body || {}), credentials: "same-origin" });
    } catch (e) { throw new Error(ky.unreachable()); }
    if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
    if (!response.ok) throw new Error(await ky.errorText(response));
    return response.json();
  },
  // POST to a streaming endpoint and feed its server-sent events to handlers:
  // onText(delta), onMeta(kaiyuanObject), onError(message); resolves when the stream ends.
  async stream(url, body, handlers, signal) {
    let response;
    try {
      response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json",
        "X-CSRF-Token": ky.csrf() }, body: JSON.stringify(body), signal, credentials: "same-origin" });
    } catch (e) {
      if (e.name === "AbortError") return "stopped";
      handlers.onError(ky.unreachable()); return "error";
    }
    if (response.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname); }
    if (!response.ok) { handlers.onError(await ky.errorText(response)); return "error"; }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", outcome = "done";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          if (!event.startsWith("data: ")) continue;
          const data = event.slice(6);
          if (data === "[DONE]") continue;
          let chunk; try { chunk = JSON.parse(data); } catch (e) { continue; }
          if (chunk.kaiyuan) { handlers.onMeta && handlers.onMeta(chunk.kaiyuan); continue; }
          if (chunk.error) { outcome = "error"; handlers.onError("The model failed: " + chunk.error.message); continue; }
          for (const choice of chunk.choices || []) {
            if (choice.delta && choice.delta.content) handlers.onText(choice.delta.content);
          }
        }
      }
    } catch (e) {
      if (e.name === "AbortError") return "stopped";
      handlers.onError("The connection to the server broke off: " + ky.unreachable()); return "error";
    }
    return outcome;
  },
};
window.addEventListener("error", (e) => ky.banner("Something went wrong in this page: " + e.message));
