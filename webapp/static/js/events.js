/*
 * flowbridge event streams in the browser: fetch + ReadableStream (EventSource cannot POST).
 *
 *   const last = await flowbridge.streamEvents("/invoke/batch_process", {
 *     body: {inputs: {items: [1, 2]}},  // an object goes as JSON; a body means POST
 *     signal: controller.signal,        // AbortController: cancels the stream
 *     onEvent: (e) => console.log(e.type, e.data)});
 *
 * Options: method, body, headers, signal, onEvent (one call per `data: {"type", "data"}` frame, in order;
 * split chunks, multi-line data and CRLF are handled, comments/heartbeats ignored). Resolves with the
 * terminal event ("done", or "error" with error_code). Rejects on a non-2xx answer (Error with .status,
 * .type and the server's message), on a stream without its terminal event, and on abort (AbortError).
 */
(function (ns) {
  "use strict";

  async function httpError(res) {
    let type = "http_error", message = "HTTP " + res.status;
    try {
      const e = (await res.json()).error;
      if (e) { type = e.type || type; message = e.message || message; }
    } catch (ignored) { /* not JSON */ }
    return Object.assign(new Error(message), {status: res.status, type: type});
  }

  ns.streamEvents = async function (url, o = {}) {
    const headers = Object.assign({Accept: "text/event-stream"}, o.headers);
    let body = o.body;
    if (body != null && typeof body === "object" && !(body instanceof FormData)) {
      body = JSON.stringify(body);
      headers["Content-Type"] = headers["Content-Type"] || "application/json";
    }
    const res = await fetch(url, {method: o.method || (body == null ? "GET" : "POST"),
                                  headers, body, signal: o.signal});
    if (!res.ok) throw await httpError(res);
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "", data = [];
    try {
      for (;;) {
        const {done, value} = await reader.read();
        buffer += decoder.decode(value, {stream: !done});
        // A last "\r" may be half of "\r\n": it waits for the next chunk.
        const cut = !done && buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
        const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
        buffer = lines.pop() + buffer.slice(cut);
        if (done) lines.push(buffer, "");
        for (const line of lines) {
          if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
          if (line !== "" || !data.length) continue;  // comments, other fields, extra blank lines
          const event = JSON.parse(data.join("\n"));
          data = [];
          if (o.onEvent) o.onEvent(event);
          if (event.type === "done" || event.type === "error") return event;
        }
        if (done) throw new Error("the stream ended before its done or error event");
      }
    } finally {
      reader.cancel().catch(() => {});  // closes the connection
    }
  };
})(window.flowbridge = window.flowbridge || {});
