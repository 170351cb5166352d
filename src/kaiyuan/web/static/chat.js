// The chat page: send, stream, Stop (aborts the request: the server cancels the generation in the engine),
// regenerate, edit-and-resend. Model text enters the page as textContent while streaming, then as the server's
// rendered HTML (raw HTML escaped).
"use strict";
(() => {
  const root = document.getElementById("chat");
  const list = document.getElementById("messages");
  const prompt = document.getElementById("prompt");
  const send = document.getElementById("send");
  const stop = document.getElementById("stop");
  let controller = null;

  const settings = () => ({
    conversation_id: root.dataset.conversationId || null,
    model: document.getElementById("model").value,
    system: document.getElementById("system").value,
    temperature: parseFloat(document.getElementById("temperature").value || "0.7"),
    max_tokens: parseInt(document.getElementById("max-tokens").value || "0", 10) || null,
  });

  function article(role, label) {
    const el = document.createElement("article");
    el.className = "message " + role;
    el.dataset.role = role;
    const meta = document.createElement("div"); meta.className = "meta";
    const who = document.createElement("strong"); who.textContent = label; meta.appendChild(who);
    const actions = document.createElement("span"); actions.className = "actions"; meta.appendChild(actions);
    const body = document.createElement("div"); body.className = "body markdown";
    el.append(meta, body);
    const empty = document.getElementById("empty"); if (empty) empty.remove();
    list.appendChild(el);
    return el;
  }

  function renumber() {
    [...list.querySelectorAll("article.message")].forEach((el, i) => { el.dataset.position = String(i); });
    list.querySelectorAll("button.regenerate").forEach((b) => b.remove());
    const last = list.querySelector("article.message:last-of-type");
    if (last && last.dataset.role === "assistant" && !controller) {
      const b = document.createElement("button"); b.type = "button"; b.className = "link regenerate";
      b.textContent = "Regenerate"; last.querySelector(".actions").appendChild(b);
    }
  }

  function addToSidebar(id, title) {
    const ul = document.getElementById("conversations");
    const none = document.getElementById("no-conversations"); if (none) none.remove();
    const li = document.createElement("li"); const a = document.createElement("a");
    a.href = "/chat/" + id; a.dataset.id = id; a.textContent = title; a.title = title; a.className = "active";
    li.appendChild(a); ul.prepend(li);
  }

  function busy(on) {
    send.disabled = on; stop.hidden = !on; prompt.disabled = false;
    list.querySelectorAll("button.edit, button.regenerate").forEach((b) => { b.disabled = on; });
  }

  async function ask(extra) {
    ky.banner("");
    const body = Object.assign(settings(), extra);
    const reply = article("assistant", body.model);
    const out = reply.querySelector(".body"); out.classList.add("pending");
    let text = "", finalized = false, lastError = "";
    controller = new AbortController();
    busy(true);
    const outcome = await ky.stream("/ui/chat", body, {
      onText(delta) { text += delta; out.textContent = text; list.scrollTop = list.scrollHeight; },
      onMeta(meta) {
        if (meta.conversation_id && !root.dataset.conversationId) {
          root.dataset.conversationId = meta.conversation_id;
          history.replaceState(null, "", "/chat/" + meta.conversation_id);
          document.getElementById("delete-chat").hidden = false;
          addToSidebar(meta.conversation_id, meta.title);
        }
        if (meta.html !== undefined) {
          finalized = true;
          out.classList.remove("pending"); out.innerHTML = meta.html;  // server-rendered, raw HTML escaped
          reply.classList.add(meta.status);
        }
      },
      onError(message) {
        lastError = message; reply.classList.add("error"); out.classList.remove("pending"); out.textContent = message;
      },
    }, controller.signal);
    if (outcome === "stopped") reply.classList.add("stopped");
    controller = null;
    busy(false);
    if (outcome === "error" && !finalized) {  // no reply was kept: say why, and let the message be sent again
      reply.remove(); ky.banner(lastError); renumber(); return "failed";
    }
    renumber();
    return outcome;
  }

  document.getElementById("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = prompt.value;
    if (!content.trim() || controller) return;
    const mine = article("user", "You");
    mine.querySelector(".body").textContent = content;
    const edit = document.createElement("button"); edit.type = "button"; edit.className = "link edit";
    edit.textContent = "Edit"; mine.querySelector(".actions").appendChild(edit);
    const source = document.createElement("template"); source.className = "source"; source.content.textContent = content;
    mine.appendChild(source);
    prompt.value = "";
    renumber();
    const outcome = await ask({ content });
    if (outcome === "failed") { prompt.value = content; mine.remove(); renumber(); }
  });

  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault(); document.getElementById("composer").requestSubmit();
    }
  });

  stop.addEventListener("click", () => { if (controller) controller.abort(); });

  document.getElementById("delete-chat").addEventListener("click", async () => {
    const id = root.dataset.conversationId;
    if (!id || controller || !confirm("Delete this chat? It cannot be undone.")) return;
    try { await ky.post("/ui/conversations/" + id + "/delete", {}); location.href = "/chat"; }
    catch (e) { ky.banner(e.message); }
  });

  list.addEventListener("click", async (event) => {
    const button = event.target.closest("button"); if (!button || controller) return;
    const message = button.closest("article.message");
    const position = parseInt(message.dataset.position, 10);
    if (button.classList.contains("regenerate")) {
      message.remove();
      await ask({ regenerate: true });
    } else if (button.classList.contains("edit")) {
      const source = message.querySelector("template.source");
      const box = document.createElement("textarea"); box.className = "edit-box";
      box.value = source ? source.content.textContent : message.querySelector(".body").textContent;
      const save = document.createElement("button"); save.type = "button"; save.className = "primary save";
      save.textContent = "Save & send";
      const body = message.querySelector(".body"); body.replaceChildren(box, save); box.focus();
      save.addEventListener("click", async () => {
        const content = box.value; if (!content.trim()) return;
        body.textContent = content;
        if (source) source.content.textContent = content;
        [...list.querySelectorAll("article.message")].slice(position + 1).forEach((el) => el.remove());
        await ask({ content, edit: position });
      });
    }
  });
  renumber();
})();
