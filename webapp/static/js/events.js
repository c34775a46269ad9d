/*
 * flowbridge.streamEvents(url, {method, body, headers, signal, onEvent, retries}): SSE over fetch.
 * Resolves with the done/error event; rejects on a non-2xx (.status, .type), a stream cut before its
 * end, an abort. A cut GET stream with ids (or its 5xx) is retried with Last-Event-ID (`retries`: 5).
 */
(function (ns) {
  "use strict";

  async function httpError(res) {
    const e = await res.json().then((b) => b?.error || {}, () => ({}));
    return Object.assign(new Error(e.message || "HTTP " + res.status),
                         {status: res.status, type: e.type || "http_error", final: res.status < 500});
  }

  async function read(res, o, at) {  // at.id: set once its event is whole
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "", data = [], id = null;
    try {
      for (;;) {
        const {done, value} = await reader.read();
        buffer += decoder.decode(value, {stream: !done});
        // a last "\r" may be half of "\r\n"
        const cut = !done && buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
        const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
        buffer = lines.pop() + buffer.slice(cut);
        if (done) lines.push(buffer, "");
        for (const line of lines) {
          // [\s\S]: a raw U+2028 too
          const [, name, field] = /^([^:]*):? ?([\s\S]*)$/.exec(line);
          if (name === "data") data.push(field);
          if (name === "id") id = field;
          if (name === "retry" && /^\d+$/.test(field)) at.wait = +field;
          if (line !== "" || !data.length) continue;
          const event = JSON.parse(data.join("\n"));
          data = [];
          if (id !== null) at.id = id;
          at.seen = true;
          o.onEvent?.(event);
          if (event.type === "done" || event.type === "error") return event;
        }
        if (done) throw new Error("the stream ended before its done or error event");
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  ns.streamEvents = async function (url, o = {}) {
    const headers = Object.assign({Accept: "text/event-stream"}, o.headers), at = {id: "", wait: 1e3};
    let body = o.body;
    if (body != null && typeof body === "object" && !(body instanceof FormData)) {
      body = JSON.stringify(body);
      headers["Content-Type"] ||= "application/json";
    }
    const method = o.method || (body == null ? "GET" : "POST");
    for (let tries = 0; ; tries++) {
      if (at.id) headers["Last-Event-ID"] = at.id;
      at.seen = false;
      try {
        const res = await fetch(url, {method, headers, body, signal: o.signal});
        if (!res.ok || res.status === 204) throw await httpError(res);
        return await read(res, o, at);
      } catch (e) {
        if (at.seen) tries = 0;
        if (e.final || e.name === "AbortError" || method !== "GET" || !at.id || tries >= (o.retries ?? 5)) throw e;
        await new Promise((r) => setTimeout(r, at.wait * (tries + 1)));
      }
    }
  };
})(window.flowbridge = window.flowbridge || {});
