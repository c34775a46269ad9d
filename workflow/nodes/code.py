"""The ``code`` node: run the node's JavaScript ``main({params})`` in a QuickJS sandbox.

FlowGram semantics (upstream-newer, which also uses QuickJS): ``data.script =
{language: 'javascript', content}``; ``content`` defines ``main({params})``, sync or
async; ``params`` are the node's resolved inputs, passed in as JSON. An object result
is the outputs, anything else becomes ``{result: value}``; failures read
``Code execution failed: <message>``.

The sandbox is `quickjs-ng <https://pypi.org/project/quickjs-ng/>`_: every run gets a
fresh runtime (nothing leaks between runs) with no host I/O at all (no ``require``,
``process``, ``fetch``, ``setTimeout`` or ``console``), created, used and freed on one
worker thread, as the binding requires. Limits, from :class:`~workflow.executor.RuntimeSettings`:

* memory (``code_memory_bytes``): QuickJS counts every allocation, ArrayBuffers included;
* time (``code_timeout``): QuickJS's interrupt handler, which the binding measures on
  the *process* CPU clock (so busy neighbouring threads make it stricter, never looser),
  plus a wall-clock deadline checked between promise jobs.

A few native Array methods (``join``, ``sort``, ``slice``...) loop over a sparse
array's whole length without ever reaching the interrupt handler, so
``a[2**32-2] = 1; a.join()`` would hold a thread for minutes. :data:`_PRELUDE`
closes that: those methods refuse lengths past :func:`_length_cap`, and
``concat``/``flat``/``flatMap`` are re-implemented as interruptible JavaScript loops.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from ..executor import ExecutionContext, NodeError, NodeResult
from ..storable import UnstorableValue, loads

#: QuickJS's own stack limit (FlowGram upstream-newer uses 512 KB too).
MAX_STACK_BYTES = 512 * 1024

_PRELUDE = r"""'use strict';
(() => {
  const CAP = %(cap)d, G = globalThis, AP = Array.prototype, ObjectCtor = Object, StringCtor = String,
    ErrorCtor = Error, PromiseCtor = Promise, then = Promise.prototype.then, isArray = Array.isArray,
    stringify = JSON.stringify, parse = JSON.parse, spreadable = Symbol.isConcatSpreadable,
    { apply, ownKeys } = Reflect, { defineProperty, getOwnPropertyDescriptor: describeOwn, getPrototypeOf } = Object,
    typedLength = describeOwn(getPrototypeOf(Uint8Array.prototype), 'length').get;
  delete G.Proxy;  // so Array.isArray(x) means a plain data length that cannot change under us
  const tooLong = (n) => new RangeError('array length ' + n + ' is over the sandbox limit of ' + CAP);
  const lengthOf = (o) => {  // how far a native method would loop, read the way it will read it
    if (isArray(o)) return o.length;
    if (o === null || (typeof o !== 'object' && typeof o !== 'function')) return 0;
    for (let p = o; p !== null; p = getPrototypeOf(p)) {
      const d = describeOwn(p, 'length');
      if (d === undefined) continue;
      if (d.get === typedLength) return apply(typedLength, o, []);
      if ('value' in d && typeof d.value === 'number') return d.value;
      throw new TypeError('array-like objects need a plain numeric length in the sandbox');
    }
    return 0;
  };
  const install = (target, key, value) =>
    defineProperty(target, key, { value, writable: true, enumerable: false, configurable: true });
  for (const key of ownKeys(AP)) {
    const native = AP[key];
    if (key === 'constructor' || typeof native !== 'function') continue;
    install(AP, key, { [key](...args) {
      const n = lengthOf(this);
      if (n > CAP) throw tooLong(n);
      return apply(native, this, args);
    } }[key]);
  }
  const toLength = (v) => { v = +v; return v > 0 ? (v < 2 ** 53 - 1 ? v - (v %% 1) : 2 ** 53 - 1) : 0; };
  const put = (out, n, value) =>
    defineProperty(out, n, { value, writable: true, enumerable: true, configurable: true });
  const flatten = (out, n, source, depth, mapper, thisArg) => {
    const len = toLength(source.length);
    for (let k = 0; k < len; k++) {
      if (!(k in source)) continue;
      const element = mapper ? apply(mapper, thisArg, [source[k], k, source]) : source[k];
      if (depth > 0 && isArray(element)) n = flatten(out, n, element, depth - 1, null, undefined);
      else put(out, n++, element);
    }
    return n;
  };
  const self = (o, name) => {
    if (o === null || o === undefined) throw new TypeError('Array.prototype.' + name + ' called on ' + o);
    return ObjectCtor(o);
  };
  const loops = {
    concat(...items) {
      const out = [];
      let n = 0;
      const add = (E) => {
        const isObject = E !== null && (typeof E === 'object' || typeof E === 'function');
        const flag = isObject ? E[spreadable] : undefined;
        if (!(flag !== undefined ? !!flag : isObject && isArray(E))) { put(out, n++, E); return; }
        const len = toLength(E.length);
        for (let k = 0; k < len; k++, n++) if (k in E) put(out, n, E[k]);
      };
      add(self(this, 'concat'));
      for (let i = 0; i < items.length; i++) add(items[i]);
      out.length = n;
      return out;
    },
    flat(depth) {
      let d = depth === undefined ? 1 : +depth;
      d = d > 0 ? (d === Infinity ? d : d - (d %% 1)) : 0;
      const out = [];
      flatten(out, 0, self(this, 'flat'), d, null, undefined);
      return out;
    },
    flatMap(mapper, thisArg) {
      const source = self(this, 'flatMap');
      if (typeof mapper !== 'function') throw new TypeError('flatMap mapper function is not callable');
      const out = [];
      flatten(out, 0, source, 1, mapper, thisArg);
      return out;
    },
  };
  for (const key of ['concat', 'flat', 'flatMap']) install(AP, key, loops[key]);
  const nativeRaw = StringCtor.raw;
  install(StringCtor, 'raw', { raw(template, ...subs) {
    const strings = ObjectCtor(ObjectCtor(template).raw), n = lengthOf(strings);
    if (n > CAP) throw tooLong(n);
    const args = [{ raw: strings }];
    for (let i = 0; i < subs.length; i++) args[i + 1] = subs[i];
    return apply(nativeRaw, StringCtor, args);
  } }.raw);
  let outcome;
  const describe = (error) => {
    try {
      if (error instanceof ErrorCtor) return StringCtor(error.message) || StringCtor(error.name);
      if (typeof error === 'string') return error;
      const text = stringify(error);
      return text === undefined ? StringCtor(error) : text;
    } catch (e) {
      return 'an error that cannot be shown';
    }
  };
  const finish = (ok, value) => {
    if (outcome !== undefined) return;
    try {
      outcome = ok ? stringify({ ok: true, value }) : stringify({ ok: false, error: describe(value) });
    } catch (e) {
      outcome = stringify({ ok: false, error: 'the value main() returned is not JSON: ' + describe(e) });
    }
  };
  const start = (main, paramsJson) => {
    if (typeof main !== 'function') return finish(false, new ErrorCtor('main function is required in the script'));
    let result;
    try {
      result = main({ params: parse(paramsJson) });
    } catch (e) {
      return finish(false, e);
    }
    apply(then, new PromiseCtor((resolve) => resolve(result)), [(v) => finish(true, v), (e) => finish(false, e)]);
  };
  defineProperty(G, '__flowbridge', { value: ObjectCtor.freeze({ start }) });
  defineProperty(G, '__flowbridge_outcome', { get: () => outcome });
})();
"""

_DRIVER = "__flowbridge.start(typeof main === 'function' ? main : undefined, %s);"
_ERROR_LINE = re.compile(r"^(\w*Error): (.*)$")
_LOCATION = re.compile(r"<input>:(\d+)")


class _ScriptFailed(Exception):
    """The script failed; ``args[0]`` is the message after ``Code execution failed:``."""


class _ScriptTimedOut(Exception):
    """The time limit stopped the script."""


def _length_cap(memory_bytes: int) -> int:
    """The longest array a native Array method may walk: more than fits in memory anyway."""
    return max(1 << 20, memory_bytes // 8)


def _seconds_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    text = f"{seconds:g}"
    return f"{text} second{'' if text == '1' else 's'}"


def _explain(message: str, memory_bytes: int) -> str:
    """Add the limit to the engine's terse out-of-memory messages."""
    limit = f"the sandbox allows {memory_bytes / (1 << 20):g} MB"
    if message == "out of memory":
        return f"out of memory ({limit})"
    if message == "null":  # what QuickJS throws when it cannot even allocate the error
        return f"null (the script threw null, or ran out of memory: {limit})"
    return message


def _engine_error(exc: Exception) -> str:
    """The message of an error QuickJS raised to Python (compile errors, top-level throws, limits)."""
    lines = str(exc).splitlines() or [""]
    match = _ERROR_LINE.match(lines[0])
    if not match:
        return lines[0]
    name, message = match.groups()
    if name == "SyntaxError":
        where = _LOCATION.search("\n".join(lines[1:]))
        return f"SyntaxError: {message}" + (f" (line {where.group(1)})" if where else "")
    return message


def _limited(context: Any, deadline: float, call: Any, *args: Any) -> Any:
    """Call into QuickJS with whatever time is left, translating its errors."""
    import quickjs

    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _ScriptTimedOut()
    context.set_time_limit(remaining)
    try:
        return call(*args)
    except (quickjs.JSException, quickjs.StackOverflow) as exc:
        if str(exc).startswith("InternalError: interrupted\n"):  # uncatchable in JS: it is ours
            raise _ScriptTimedOut() from None
        raise _ScriptFailed(_engine_error(exc)) from None


def _run_script(content: str, params_json: str, timeout: float, memory_bytes: int) -> dict[str, Any]:
    """Run ``main`` in a fresh QuickJS runtime on this thread; return ``{"ok": ..., "value"|"error": ...}``."""
    import quickjs

    deadline = time.monotonic() + timeout
    context = quickjs.Context()
    try:
        context.set_memory_limit(memory_bytes)
        context.set_max_stack_size(MAX_STACK_BYTES)
        _limited(context, deadline, context.eval, _PRELUDE % {"cap": _length_cap(memory_bytes)})
        # on the same line, so the user's line numbers stay right
        _limited(context, deadline, context.eval, "'use strict'; " + content)
        _limited(context, deadline, context.eval, _DRIVER % json.dumps(params_json))
        while (outcome := context.get("__flowbridge_outcome")) is None:
            if not _limited(context, deadline, context.execute_pending_job):
                raise _ScriptFailed("main() returned a promise that never settled")
        return loads(outcome, "the value main() returned")  # too deep for Python's parser: a clear error
    finally:
        del context  # freed here, on the thread that used it, even while a traceback holds this frame


async def execute_code(ctx: ExecutionContext) -> NodeResult:
    """Run the node's script and return what ``main`` returned.

    :raises NodeError: ``Code content is required``, ``Unsupported code language "x"``,
        ``Code execution failed: <message>`` (also for the time and memory limits), or
        a refusal when the sandbox is not installed.
    """
    script = ctx.node.data.get("script")
    script = script if isinstance(script, dict) else {}
    content = script.get("content")
    if not isinstance(content, str) or not content:
        raise NodeError("Code content is required")
    language = script.get("language")
    if language != "javascript":
        raise NodeError(f'Unsupported code language "{"undefined" if language is None else language}"')
    try:
        import quickjs  # noqa: F401  (the sandbox; imported for real on the worker thread)
    except ImportError:
        raise NodeError(
            "Code node unavailable: its JavaScript sandbox is not installed (pip install quickjs-ng)"
        ) from None
    try:
        params_json = json.dumps(ctx.inputs, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NodeError(f"Code execution failed: params are not JSON: {exc}") from None
    timeout = float(ctx.settings.code_timeout)
    memory_bytes = int(ctx.settings.code_memory_bytes)
    try:
        outcome = await asyncio.to_thread(_run_script, content, params_json, timeout, memory_bytes)
    except _ScriptTimedOut:
        raise NodeError(f"Code execution failed: Code execution timeout: exceeded {_seconds_text(timeout)}") from None
    except _ScriptFailed as exc:
        raise NodeError(f"Code execution failed: {_explain(exc.args[0], memory_bytes)}") from None
    except UnstorableValue as exc:
        raise NodeError(f"Code execution failed: {exc}") from None
    if not outcome.get("ok"):
        raise NodeError(f"Code execution failed: {_explain(str(outcome.get('error')), memory_bytes)}")
    value = outcome.get("value")
    return NodeResult(value if isinstance(value, dict) else {"result": value})
