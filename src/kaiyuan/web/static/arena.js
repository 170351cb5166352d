// The arena page: one prompt streamed to two models side by side; votes; names revealed after the vote.
"use strict";
(() => {
  const root = document.getElementById("arena");
  const form = document.getElementById("arena-composer");
  if (!form) return;
  const mode = root.dataset.mode, maxTurns = parseInt(root.dataset.maxTurns, 10);
  const promptBox = document.getElementById("arena-prompt");
  const sendButton = document.getElementById("arena-send");
  const votes = [...document.querySelectorAll("button.vote")];
  let battle = null, busy = false;

  function bubble(side, role, text) {
    const list = document.querySelector("#side-" + side + " .messages");
    const el = document.createElement("article"); el.className = "message " + role; el.dataset.role = role;
    const body = document.createElement("div"); body.className = "body markdown" + (role === "assistant" ? " pending" : "");
    body.textContent = text; el.appendChild(body); list.appendChild(el);
    return body;
  }

  function setNames(models) {
    document.getElementById("name-a").textContent = models[0];
    document.getElementById("name-b").textContent = models[1];
  }

  function reset() {
    battle = null;
    document.querySelectorAll(".side .messages").forEach((el) => el.replaceChildren());
    setNames(mode === "named" ? [document.getElementById("model-a").value, document.getElementById("model-b").value]
      : ["Model A", "Model B"]);
    votes.forEach((b) => { b.disabled = true; });
    document.getElementById("reveal").hidden = true;
    promptBox.disabled = false; sendButton.disabled = false;
    document.getElementById("turns").textContent = "";
    ky.banner("");
  }

  async function reply(side) {
    const out = bubble(side, "assistant", "");
    let text = "";
    const outcome = await ky.stream("/ui/arena/battles/" + battle.battle_id + "/reply/" + side, {}, {
      onText(delta) { text += delta; out.textContent = text; },
      onMeta(meta) { if (meta.html !== undefined) { out.classList.remove("pending"); out.innerHTML = meta.html; } },
      onError(message) { out.classList.remove("pending"); out.classList.add("error"); out.textContent = message; },
    });
    return outcome;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const content = promptBox.value;
    if (!content.trim() || busy) return;
    busy = true; sendButton.disabled = true; votes.forEach((b) => { b.disabled = true; }); ky.banner("");
    try {
      if (!battle) {
        const body = { mode };
        if (mode === "named") {
          body.model_a = document.getElementById("model-a").value; body.model_b = document.getElementById("model-b").value;
        }
        battle = await ky.post("/ui/arena/battles", body);
        setNames(battle.models);
      }
      const maxTokens = parseInt(document.getElementById("arena-max-tokens").value || "0", 10) || null;
      const state = await ky.post("/ui/arena/battles/" + battle.battle_id + "/prompt", {
        content, temperature: parseFloat(document.getElementById("arena-temperature").value || "0.7"),
        max_tokens: maxTokens });
      promptBox.value = "";
      bubble("a", "user", content); bubble("b", "user", content);
      await Promise.all([reply("a"), reply("b")]);
      votes.forEach((b) => { b.disabled = false; });
      const left = maxTurns - state.turns;
      document.getElementById("turns").textContent = left > 0 ? `Prompt ${state.turns} of ${maxTurns}: vote now, or ` +
        "ask a follow-up." : `That was the last of ${maxTurns} prompts: vote.`;
      if (left <= 0) promptBox.disabled = true;
    } catch (e) {
      ky.banner(e.message);
    } finally {
      busy = false; sendButton.disabled = promptBox.disabled;
    }
  });

  promptBox.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
  });

  votes.forEach((button) => button.addEventListener("click", async () => {
    if (!battle || busy) return;
    votes.forEach((b) => { b.disabled = true; });
    try {
      const result = await ky.post("/ui/arena/battles/" + battle.battle_id + "/vote", { type: button.dataset.vote });
      setNames(result.models);
      const reveal = document.getElementById("reveal");
      reveal.textContent = `Model A: ${result.models[0]} · Model B: ${result.models[1]} — thanks for your vote!` +
        (result.leaked_identity ? " (A reply named a model, so this vote is kept but left out of the ratings.)" : "");
      reveal.hidden = false;
      promptBox.disabled = true; sendButton.disabled = true;
      document.getElementById("turns").textContent = "Press New battle for another round.";
    } catch (e) {
      ky.banner(e.message); votes.forEach((b) => { b.disabled = false; });
    }
  }));

  document.getElementById("new-battle").addEventListener("click", reset);
  document.querySelectorAll("#model-a, #model-b").forEach((el) => el.addEventListener("change", () => { if (!battle) reset(); }));
})();
