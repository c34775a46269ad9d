/*
 * The Chat page: a conversation streamed from POST /api/chat ("stream": true, the whole history each time).
 *
 * The conversation is a list of turns {role: "user"|"assistant", content, status, error, model}; status is
 * "streaming" while an answer arrives, "stopped" after Stop (the partial answer stays and is sent as history),
 * "error" when the answer failed (shown inline with Retry; never sent as history). An answer whose `done` event
 * says finish_reason "length" (cut at max tokens) is marked truncated and shown with "(truncated)". It is kept in sessionStorage,
 * so a reload keeps it; "New chat" clears it. Every string goes into the page with textContent.
 */
(function () {
  "use strict";
  const root = document.getElementById("chat");
  if (!root || !window.flowbridge || !window.fetch) return;

  const KEY = "flowbridge.chat.v1";
  const $ = (id) => document.getElementById(id);
  const log = $("chat-log"), empty = $("chat-empty"), form = $("chat-form"), input = $("chat-message");
  const sendButton = $("chat-send"), stopButton = $("chat-stop"), newButton = $("chat-new");
  const settings = $("chat-settings"), system = $("chat-system");
  const numbers = [
    {el: $("chat-temperature"), error: $("chat-temperature-error"), key: "temperature", label: "Temperature"},
    {el: $("chat-max-tokens"), error: $("chat-max-tokens-error"), key: "max_tokens", label: "Max tokens",
     integer: true},
  ];
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  let turns = [];
  const views = new Map();   // turn -> its <article>
  let controller = null;     // the AbortController of the answer being streamed
  let streaming = null;      // the turn being streamed

  // -- storage ------------------------------------------------------------------------------

  function save() {
    try {
      sessionStorage.setItem(KEY, JSON.stringify({
        turns: turns.map((t) => ({role: t.role, content: t.content, status: t.status, error: t.error,
                                  model: t.model, truncated: t.truncated})),
        system: system.value, temperature: numbers[0].el.value, max_tokens: numbers[1].el.value}));
    } catch (ignored) { /* storage full or disabled: the page still works */ }
  }

  function load() {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (ignored) { return; }
    if (!saved || typeof saved !== "object") return;
    if (typeof saved.system === "string") system.value = saved.system;
    for (const n of numbers) if (typeof saved[n.key] === "string") n.el.value = saved[n.key];
    if (!Array.isArray(saved.turns)) return;
    for (const t of saved.turns) {
      if (!t || (t.role !== "user" && t.role !== "assistant") || typeof t.content !== "string") continue;
      const turn = {role: t.role, content: t.content};
      // an answer still streaming when the page went away is what arrived of it
      if (["stopped", "error", "streaming"].includes(t.status)) {
        turn.status = t.status === "streaming" ? "stopped" : t.status;
      }
      if (typeof t.error === "string") turn.error = t.error;
      if (typeof t.model === "string") turn.model = t.model;
      if (t.truncated === true) turn.truncated = true;
      turns.push(turn);
    }
  }

  // -- rendering ----------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function render(turn) {
    const view = el("article", "msg msg-" + turn.role);
    const who = el("div", "msg-who", turn.role === "user" ? "You" : "Assistant");
    view.append(who, el("div", "msg-text"));
    if (turn.role === "assistant") {
      who.append(" ", el("span", "msg-model", ""));
      const retry = el("button", "secondary msg-retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => retryLast());
      view.append(el("div", "msg-status"), retry);
    }
    views.set(turn, view);
    log.append(view);
    update(turn);
    return view;
  }

  function update(turn) {
    const view = views.get(turn);
    if (!view) return;
    view.querySelector(".msg-text").textContent = turn.content;
    if (turn.role !== "assistant") return;
    view.classList.toggle("streaming", turn.status === "streaming");
    view.classList.toggle("stopped", turn.status === "stopped");
    view.classList.toggle("failed", turn.status === "error");
    view.querySelector(".msg-model").textContent = turn.model || root.dataset.model || "";
    // "(stopped)", "(truncated)" (cut at max tokens) or the error, created only when there is one
    const status = view.querySelector(".msg-status");
    status.replaceChildren();
    if (turn.status === "stopped") status.append(el("span", "msg-note", "(stopped)"));
    if (turn.truncated && !turn.status) status.append(el("span", "msg-note msg-truncated", "(truncated)"));
    if (turn.status === "error") {
      const error = el("div", "msg-error", turn.error || "the answer failed");
      error.setAttribute("role", "alert");
      status.append(error);
    }
  }

  function controls() {
    const busy = controller !== null;
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
    const last = turns[turns.length - 1];
    for (const [turn, view] of views) {
      const retry = view.querySelector(".msg-retry");
      if (retry) retry.hidden = busy || turn !== last || (turn.status !== "error" && turn.status !== "stopped");
    }
    empty.hidden = turns.length > 0;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  function scrollDown() {
    window.scrollTo(0, document.documentElement.scrollHeight);
  }

  // -- settings -----------------------------------------------------------------------------

  /** "system prompt, temperature 0.3" beside the closed Settings, so one sees what is in effect. */
  function summarize() {
    const parts = [];
    if (system.value.trim()) parts.push("system prompt");
    for (const n of numbers) if (n.el.value.trim()) parts.push(n.label.toLowerCase() + " " + n.el.value.trim());
    $("chat-settings-summary").textContent = parts.length ? "(" + parts.join(", ") + ")" : "";
  }

  /** The optional settings as request fields, or null after showing what is wrong beside the field. */
  function readSettings() {
    const body = {};
    let ok = true;
    if (system.value.trim()) body.system_prompt = system.value;
    for (const n of numbers) {
      const raw = n.el.value.trim(), min = Number(n.el.min), max = Number(n.el.max);
      let problem = "";
      if (n.el.validity.badInput) problem = n.label + " must be a number";
      else if (raw !== "") {
        const value = Number(raw);
        if (!Number.isFinite(value) || (n.integer && !Number.isInteger(value))) {
          problem = n.label + " must be " + (n.integer ? "a whole number" : "a number");
        } else if (value < min || value > max) {
          problem = n.label + " must be between " + min + " and " + max + ", not " + raw;
        } else body[n.key] = value;
      }
      n.error.textContent = problem;
      n.error.hidden = !problem;
      n.el.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) ok = false;
    }
    if (!ok) {
      settings.open = true;
      numbers.find((n) => !n.error.hidden).el.focus();
    }
    return ok ? body : null;
  }

  // -- talking to the server ----------------------------------------------------------------

  /** The messages sent upstream: every answered turn, without failed answers or empty ones. */
  function history() {
    return turns.filter((t) => t.status !== "error" && t.status !== "streaming" && t.content !== "")
      .map((t) => ({role: t.role, content: t.content}));
  }

  async function ask(options) {
    const messages = history();
    const turn = {role: "assistant", content: "", status: "streaming"};
    turns.push(turn);
    render(turn);
    scrollDown();
    streaming = turn;
    controller = new AbortController();
    const mine = controller;
    controls();
    try {
      const last = await flowbridge.streamEvents(root.dataset.api, {
        body: Object.assign({messages: messages, stream: true}, options),
        headers: {"X-CSRF-Token": csrf},
        signal: mine.signal,
        onEvent: (event) => {
          if (event.type === "start" && event.data && typeof event.data.model === "string") {
            turn.model = event.data.model;
          } else if (event.type === "content" && typeof event.data === "string") {
            turn.content += event.data;
          } else return;
          const follow = nearBottom();
          update(turn);
          if (follow) scrollDown();
        },
      });
      if (last.type === "error") {
        turn.status = "error";
        turn.error = typeof last.data === "string" ? last.data : JSON.stringify(last.data);
      } else {
        delete turn.status;
        // the model stopped because it reached max_tokens, not because the answer was complete
        if (last.data && last.data.finish_reason === "length") turn.truncated = true;
      }
    } catch (e) {
      if (e && e.name === "AbortError") turn.status = "stopped";
      else {
        turn.status = "error";
        turn.error = (e && e.message) || String(e);
      }
    } finally {
      if (controller === mine) { controller = null; streaming = null; }
    }
    if (!turns.includes(turn)) return;  // "New chat" while it streamed
    update(turn);
    controls();
    save();
  }

  function send() {
    if (controller) return;
    const text = input.value.trim();
    const error = $("chat-message-error");
    error.hidden = true;
    if (!text) {
      error.textContent = "Type a message first.";
      error.hidden = false;
      input.focus();
      return;
    }
    const options = readSettings();
    if (!options) return;
    const user = {role: "user", content: text};
    turns.push(user);
    render(user);
    input.value = "";
    save();
    ask(options);
  }

  function retryLast() {
    const last = turns[turns.length - 1];
    if (controller || !last || last.role !== "assistant") return;
    const options = readSettings();
    if (!options) return;
    turns.pop();
    views.get(last).remove();
    views.delete(last);
    ask(options);
  }

  function stop() {
    if (controller) controller.abort();
  }

  function newChat() {
    stop();
    controller = null;
    streaming = null;
    turns = [];
    for (const view of views.values()) view.remove();
    views.clear();
    controls();
    save();
    input.focus();
  }

  // -- wiring -------------------------------------------------------------------------------

  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey || e.isComposing || e.keyCode === 229) return;
    e.preventDefault();  // Enter sends; Shift+Enter keeps its new line
    send();
  });
  input.addEventListener("input", () => { $("chat-message-error").hidden = true; });
  stopButton.addEventListener("click", stop);
  newButton.addEventListener("click", newChat);
  for (const field of [system].concat(numbers.map((n) => n.el))) {
    field.addEventListener("input", summarize);
    field.addEventListener("change", save);
  }
  // Leaving mid-answer: keep what arrived, marked stopped, for when the tab comes back.
  window.addEventListener("pagehide", () => {
    if (streaming) { streaming.status = "stopped"; save(); }
  });

  load();
  summarize();
  for (const turn of turns) render(turn);
  root.hidden = false;
  newButton.hidden = false;
  controls();
  if (turns.length) scrollDown();
  if (window.matchMedia && window.matchMedia("(pointer: fine)").matches) input.focus();  // no phone keyboard popping up
})();
