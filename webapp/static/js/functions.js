/*
 * The Functions page: each card's form runs its function through POST /invoke/<name>.
 *
 * Inputs are sent in their declared JSON types (the form's data-types: {name: type}); a function with a
 * file parameter is sent as multipart (the file, plus the other inputs as the JSON field "inputs").
 * A plain function's {"result"} is shown as JSON; a streaming one's events are shown live through
 * flowbridge.streamEvents (events.js): progress bar, text, the done summary, an error. Stop aborts.
 * Everything the server or the model sends is written with textContent.
 */
(function () {
  "use strict";

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const CSRF = csrfMeta ? csrfMeta.content : "";

  function show(el, visible) { if (el) el.hidden = !visible; }

  function clearErrors(form) {
    for (const el of form.querySelectorAll(".field-error")) el.remove();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const alert = form.querySelector(".fn-error");
    alert.textContent = "";
    show(alert, false);
  }

  function fieldError(form, name, message) {
    const field = form.querySelector('.field[data-field="' + CSS.escape(name) + '"]');
    if (!field) return false;
    let box = field.querySelector(".field-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "field-error";
      box.setAttribute("role", "alert");
      field.appendChild(box);
    }
    box.textContent = message;
    const input = form.elements.namedItem(name);
    if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    return true;
  }

  function formError(form, message) {
    const alert = form.querySelector(".fn-error");
    alert.textContent = message;
    show(alert, true);
  }

  /* A 4xx of /invoke: "invalid inputs for f: inputs.a: ...; inputs.b[2]: ..." marks those fields too. */
  function serverError(form, error) {
    formError(form, error.message + (error.status ? " (HTTP " + error.status + ")" : ""));
    const detail = error.message.replace(/^invalid inputs for [^:]+: /, "");
    for (const part of detail.split("; ")) {
      const m = /^inputs\.([A-Za-z_]\w*)\S*?: (.*)$/.exec(part);
      if (m) fieldError(form, m[1], m[2]);
    }
  }

  function convert(type, text) {
    switch (type) {
      case "integer": {
        const n = Number(text.trim());
        if (!Number.isInteger(n)) throw new Error("enter a whole number");
        return n;
      }
      case "number": {
        const n = Number(text.trim());
        if (!Number.isFinite(n)) throw new Error("enter a number");
        return n;
      }
      case "array":
      case "object": {
        let value;
        try { value = JSON.parse(text); } catch (e) { throw new Error("not valid JSON (" + e.message + ")"); }
        const isArray = Array.isArray(value);
        if (type === "array" ? !isArray : (isArray || value === null || typeof value !== "object")) {
          throw new Error(type === "array" ? "enter a JSON array [...]" : "enter a JSON object {...}");
        }
        return value;
      }
      default:
        return text;
    }
  }

  /* {inputs, files, errors}: empty optional fields are left out, so the function's defaults apply. */
  function readForm(form, types) {
    const inputs = {}, files = {}, errors = {};
    for (const [name, type] of Object.entries(types)) {
      const el = form.elements.namedItem(name);
      if (!el) continue;
      if (type === "boolean") { inputs[name] = el.checked; continue; }
      if (type === "file") {
        if (el.files && el.files.length) files[name] = el.files[0];
        else if (el.required) errors[name] = "choose a file";
        continue;
      }
      if (el.value.trim() === "") {
        if (el.required) errors[name] = "required";
        continue;
      }
      try { inputs[name] = convert(type, el.value); } catch (e) { errors[name] = e.message; }
    }
    return {inputs, files, errors};
  }

  function requestBody(inputs, files) {
    if (!Object.keys(files).length) return {inputs};
    const data = new FormData();
    data.append("inputs", JSON.stringify(inputs));
    for (const [name, file] of Object.entries(files)) data.append(name, file);
    return data;
  }

  async function runPlain(card, url, body) {
    const headers = {Accept: "application/json", "X-CSRF-Token": CSRF};
    if (!(body instanceof FormData)) headers["Content-Type"] = "application/json";
    const res = await fetch(url, {method: "POST", headers,
                                  body: body instanceof FormData ? body : JSON.stringify(body)});
    let payload = null;
    try { payload = await res.json(); } catch (ignored) { /* not JSON */ }
    if (!res.ok) {
      const e = (payload && payload.error) || {};
      throw Object.assign(new Error(e.message || "HTTP " + res.status), {status: res.status, type: e.type});
    }
    show(card.querySelector(".fn-output"), true);
    card.querySelector(".fn-result").textContent = JSON.stringify(payload.result, null, 2);
    return "done";
  }

  function resetStreamOutput(card) {
    const q = (s) => card.querySelector(s);
    show(q(".fn-output"), true);
    show(q(".fn-progress"), false);
    q(".fn-progress progress").value = 0;
    q(".fn-percent").textContent = "0%";
    q(".fn-message").textContent = "";
    q(".fn-content").textContent = "";
    show(q(".fn-content-wrap"), false);
    q(".fn-done").textContent = "";
    show(q(".fn-done-wrap"), false);
    q(".fn-stream-error").textContent = "";
    show(q(".fn-stream-error"), false);
  }

  function onEvent(card, setState, event) {
    const q = (s) => card.querySelector(s);
    const data = event.data;
    if (event.type === "start") {
      setState((data && data.message) || "started");
    } else if (event.type === "progress") {
      const d = data || {};
      let pct = Number(d.percentage);
      if (!Number.isFinite(pct)) pct = d.total ? Math.round(100 * d.current / d.total) : 0;
      show(q(".fn-progress"), true);
      q(".fn-progress progress").value = pct;
      q(".fn-percent").textContent = pct + "%";
      q(".fn-message").textContent = d.message || (d.total ? d.current + " of " + d.total : "");
    } else if (event.type === "content") {
      show(q(".fn-content-wrap"), true);
      q(".fn-content").appendChild(document.createTextNode(typeof data === "string" ? data : JSON.stringify(data)));
    } else if (event.type === "done") {
      show(q(".fn-done-wrap"), true);
      q(".fn-done").textContent = JSON.stringify(data, null, 2);
    } else if (event.type === "error") {
      const box = q(".fn-stream-error");
      box.textContent = (typeof data === "string" ? data : JSON.stringify(data)) +
        (event.error_code ? " (" + event.error_code + ")" : "");
      show(box, true);
    }
  }

  function setUp(card) {
    const name = card.dataset.function, streaming = card.hasAttribute("data-streaming");
    const form = card.querySelector("form.fn-form");
    const types = JSON.parse(form.dataset.types || "{}");
    const run = form.querySelector("button.run"), stop = form.querySelector("button.stop");
    const state = form.querySelector(".fn-state");
    const setState = (text) => { state.textContent = text; };
    let controller = null;

    if (stop) stop.addEventListener("click", () => { if (controller) controller.abort(); });

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (controller) return;
      clearErrors(form);
      const {inputs, files, errors} = readForm(form, types);
      const bad = Object.keys(errors);
      if (bad.length) {
        for (const field of bad) fieldError(form, field, errors[field]);
        formError(form, "Check " + bad.join(", ") + ".");
        const first = form.elements.namedItem(bad[0]);
        if (first && first.focus) first.focus();
        setState("");
        return;
      }
      const body = requestBody(inputs, files);
      controller = new AbortController();
      run.disabled = true;
      show(stop, true);
      card.classList.add("running");
      setState("running…");
      try {
        if (streaming) {
          resetStreamOutput(card);
          const last = await flowbridge.streamEvents(form.action, {
            body, headers: {"X-CSRF-Token": CSRF}, signal: controller.signal,
            onEvent: (event) => onEvent(card, setState, event)});
          setState(last.type === "done" ? "done" : "failed");
        } else {
          setState(await runPlain(card, form.action, body));
        }
      } catch (e) {
        if (e.name === "AbortError") {
          setState("stopped");
        } else if (e.status) {
          setState("refused");
          serverError(form, e);
        } else {
          setState("failed");
          formError(form, e.message || String(e));
        }
      } finally {
        controller = null;
        run.disabled = false;
        show(stop, false);
        card.classList.remove("running");
      }
    });
  }

  for (const card of document.querySelectorAll("section.fn[data-function]")) setUp(card);
})();
