// Runs workflow cases through FlowGram's published engine (@flowgram.ai/runtime-js, pinned in package.json)
// and prints what it reports, for tests/workflow/test_differential.py and bench/engines.py.
//
// Input (a file named as the first argument, or stdin): one case `{"id", "schema", "inputs"}`, a JSON array
// of cases, or one case per line. `schema` is an object or its JSON text. Optional per case:
// `"timeoutMs"` (default 30000; the task is cancelled after it) and `"skipRun": true` (validate only).
//
// Output: one JSON line per case, in input order, on stdout:
//   {"id", "validation": TaskValidateAPI's answer, "taskID", "result": TaskResultAPI's answer,
//    "report": TaskReportAPI's answer (the whole report: status, outputs, per-node status and snapshots,
//    messages), "timeMs": run start to termination, "maxRssKB": the process's peak RSS so far (VmHWM),
//    "harnessError": set when the engine threw instead of reporting}
// The engine's own console output goes to stderr with FLOWGRAM_HARNESS_VERBOSE=1, and nowhere otherwise.
//
// Only the package's public API is used: TaskValidateAPI, TaskRunAPI, TaskResultAPI (undefined until the
// workflow has terminated: polled), TaskReportAPI and TaskCancelAPI.

import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import {
  TaskCancelAPI,
  TaskReportAPI,
  TaskResultAPI,
  TaskRunAPI,
  TaskValidateAPI,
} from "@flowgram.ai/runtime-js";

const verbose = process.env.FLOWGRAM_HARNESS_VERBOSE === "1";
const toStderr = (...args) => process.stderr.write(args.map(String).join(" ") + "\n");
for (const name of ["log", "info", "warn", "error", "debug"]) {
  console[name] = verbose ? toStderr : () => {};
}

/** The cases of `text`: a JSON array, one JSON value, or JSON lines. */
function parseCases(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  try {
    const value = JSON.parse(trimmed);
    return Array.isArray(value) ? value : [value];
  } catch {
    return trimmed.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
  }
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** Polls TaskResultAPI until the task has terminated; cancels it after `timeoutMs`. */
async function waitForEnd(taskID, timeoutMs) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const result = await TaskResultAPI({ taskID });
    if (result !== undefined) return { result, timedOut: false };
    if (performance.now() > deadline) {
      await TaskCancelAPI({ taskID });
      return { result: await TaskResultAPI({ taskID }), timedOut: true };
    }
    await nextTurn();
  }
}

const errorText = (e) => (e instanceof Error ? e.message : String(e));

async function runCase(item, index) {
  const out = { id: item.id ?? index };
  const schema = typeof item.schema === "string" ? item.schema : JSON.stringify(item.schema);
  const inputs = item.inputs ?? {};
  try {
    out.validation = await TaskValidateAPI({ schema, inputs });
  } catch (e) {
    out.validation = { valid: false, thrown: errorText(e) };
  }
  if (item.skipRun) return out;
  try {
    const started = performance.now();
    const { taskID } = await TaskRunAPI({ schema, inputs });
    const { result, timedOut } = await waitForEnd(taskID, item.timeoutMs ?? 30000);
    out.timeMs = performance.now() - started;
    out.taskID = taskID;
    out.result = result;
    out.report = await TaskReportAPI({ taskID });
    if (timedOut) out.harnessError = `timed out after ${item.timeoutMs ?? 30000} ms (cancelled)`;
  } catch (e) {
    out.harnessError = errorText(e);
  }
  out.maxRssKB = peakRssKB();
  return out;
}

/** This process's peak RSS: VmHWM on Linux (getrusage's maxRSS also counts the parent's size before exec). */
function peakRssKB() {
  try {
    const found = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (found) return Number(found[1]);
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
}

const source = process.argv[2] ? readFileSync(process.argv[2], "utf8") : readFileSync(0, "utf8");
const cases = parseCases(source);
for (let i = 0; i < cases.length; i++) {
  const line = JSON.stringify(await runCase(cases[i], i));
  if (!process.stdout.write(line + "\n")) {
    await new Promise((resolve) => process.stdout.once("drain", resolve));
  }
}
