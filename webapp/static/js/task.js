/*
 * The task page, live: while the task runs, follow /api/task/events and recolour each node of the
 * graph (data-status and its status-* class), its badge and its timeline bar; when the task ends
 * (done or error) reload, so the final server-rendered page (outputs, timeline, snapshots) shows.
 * A finished task's page needs none of this; only the "open the node you linked to" part runs.
 * Data only ever goes into the page through textContent and attributes. Timeline bars are SVG rects
 * (x and width in % of the task): no inline style, which the Content-Security-Policy forbids.
 * The stream resumes by itself after a cut (events.js reconnects with Last-Event-ID).
 */
(function () {
  "use strict";
  const STATUSES = ["pending", "processing", "succeeded", "failed", "canceled"];
  const TERMINAL = ["succeeded", "failed", "canceled"];
  const SVG = "http://www.w3.org/2000/svg";
  const root = document.getElementById("task");
  if (!root) return;

  // A link to a node (graph box, timeline, error list) opens its details.
  function openTarget() {
    const id = decodeURIComponent(location.hash.slice(1));
    const target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") target.open = true;
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  if (TERMINAL.includes(root.dataset.status) || !window.flowbridge) return;

  function setStatus(el, status) {
    if (!el) return;
    for (const s of STATUSES) el.classList.remove("status-" + s);
    el.classList.add("status-" + status);
    if (el.hasAttribute("data-status")) el.setAttribute("data-status", status);
  }

  function byData(attr, id) {
    return document.querySelector("[" + attr + '="' + CSS.escape(id) + '"]');
  }

  // -- the timeline: bars relative to the task's span, which grows until the task ends ----------
  const timeline = document.getElementById("timeline");
  const t0 = Number(timeline && timeline.dataset.t0) || Date.now();
  const runs = new Map();  // node id -> {start, end, row}
  // the page stays bounded: at most as many rows as the server shows (a big workflow's page is paged)
  const maxRows = Number(timeline && timeline.dataset.maxRows) || 60;

  for (const row of timeline ? timeline.querySelectorAll(".tl-row") : []) {
    runs.set(row.dataset.node, {start: Number(row.dataset.start),
                                end: row.dataset.end ? Number(row.dataset.end) : null, row: row});
  }

  function rowFor(id, title, href) {
    const row = document.createElement("li");
    row.className = "tl-row";
    row.dataset.node = id;
    const name = document.createElement("a");
    name.className = "tl-name";
    name.href = href;
    name.textContent = title;
    name.title = title;
    const track = document.createElement("span");
    track.className = "tl-track";
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "tl-svg");
    svg.setAttribute("viewBox", "0 0 100 10");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("width", "100%");
    svg.setAttribute("height", "100%");
    svg.setAttribute("aria-hidden", "true");
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "tl-bar");
    bar.setAttribute("y", "0");
    bar.setAttribute("height", "10");
    bar.setAttribute("fill", "currentColor");
    svg.appendChild(bar);
    track.appendChild(svg);
    const dur = document.createElement("span");
    dur.className = "tl-dur";
    row.append(name, track, dur);
    timeline.appendChild(row);
    const empty = document.getElementById("timeline-empty");
    if (empty) empty.remove();
    return row;
  }

  function formatMs(ms) {
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    return Math.floor(ms / 60000) + " min " + Math.floor(ms % 60000 / 1000) + " s";
  }

  function drawTimeline() {
    if (!timeline) return;
    const now = Date.now();
    let t1 = now;
    for (const run of runs.values()) t1 = Math.max(t1, run.end || now);
    const span = Math.max(t1 - t0, 1);
    for (const run of runs.values()) {
      const end = run.end || now;
      const width = Math.min(Math.max((end - run.start) / span * 100, 0.4), 100);
      const left = Math.min(Math.max((run.start - t0) / span * 100, 0), 100 - width);
      const bar = run.row.querySelector(".tl-bar");
      bar.setAttribute("x", left.toFixed(2));
      bar.setAttribute("width", width.toFixed(2));
      run.row.querySelector(".tl-dur").textContent = formatMs(end - run.start);
    }
  }

  function onProgress(data) {
    const id = String(data.nodeID);
    const status = STATUSES.includes(data.status) ? data.status : "pending";
    const node = byData("data-node-id", id);
    setStatus(node, status);
    if (node) {
      const label = node.querySelector("text.st");
      if (label) label.textContent = status;
    }
    const details = byData("data-node", id);
    const badge = details && details.querySelector(".node-badge");
    if (badge) { setStatus(badge, status); badge.textContent = status; }
    if (!timeline || typeof data.startTime !== "number") return;
    let run = runs.get(id);
    if (!run) {
      if (runs.size >= maxRows) return;
      const title = details ? details.querySelector("summary strong").textContent : id;
      run = {row: rowFor(id, title, details ? "#" + details.id : "#nodes")};
      runs.set(id, run);
    }
    run.start = data.startTime;
    run.end = typeof data.endTime === "number" ? data.endTime : null;
    setStatus(run.row.querySelector(".tl-bar"), status);
    drawTimeline();
  }

  const live = document.getElementById("task-live");
  const badge = root.querySelector(".task-status");
  const ticker = setInterval(drawTimeline, 500);
  let attempts = 0;

  async function follow() {
    try {
      await flowbridge.streamEvents(root.dataset.eventsUrl, {onEvent: (event) => {
        attempts = 0;
        if (event.type === "start" && STATUSES.includes(event.data.status)
            && !TERMINAL.includes(event.data.status)) {
          root.dataset.status = event.data.status;
          setStatus(badge, event.data.status);
          badge.textContent = event.data.status;
        } else if (event.type === "progress") {
          onProgress(event.data);
        }
      }});
      // done or error: the task ended; the server renders its final page
      clearInterval(ticker);
      if (live) live.textContent = "Finished: loading the result…";
      location.reload();
    } catch (error) {
      if (error.status === 404) {  // pruned meanwhile
        clearInterval(ticker);
        if (live) live.textContent = "This task no longer exists.";
        return;
      }
      attempts += 1;
      if (live) live.textContent = "Live updates interrupted (" + error.message + "); retrying…";
      setTimeout(follow, Math.min(1000 * attempts, 5000));
    }
  }
  follow();
})();
