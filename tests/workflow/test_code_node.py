"""The ``code`` node in its QuickJS sandbox: FlowGram's result shapes and errors, and the limits.

No wall-clock assertions: runaway scripts must fail the node, and pytest-timeout
guards against one that would not stop.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from workflow.executor import NodeError, NodeResult, RuntimeSettings
from workflow.nodes.code import execute_code

pytestmark = pytest.mark.timeout(60)

CONFORMANCE = Path(__file__).resolve().parent / "flowgram"  # FlowGram's own cases, copied in: see its README.md


class FakeContext:
    """Just enough of :class:`~workflow.executor.ExecutionContext` for one code node."""

    def __init__(self, data: dict[str, Any], inputs: dict[str, Any] | None = None,
                 settings: RuntimeSettings | None = None) -> None:
        self.node = SimpleNamespace(id="code_0", type="code", data=data)
        self.inputs = inputs or {}
        self.settings = settings or RuntimeSettings(code_timeout=1.0)
        self.warnings: list[str] = []
        self.cancelled = False

    def parse_inputs(self, schema: dict[str, Any] | None, values: dict[str, Any] | None) -> dict[str, Any]:
        declared = (schema or {}).get("properties") or {}
        return {key: value["content"] for key, value in (values or {}).items()
                if key in declared and value.get("type") == "constant"}

    def render_template(self, text: str) -> str:
        return text

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def script(content: str, language: str = "javascript") -> dict[str, Any]:
    return {"script": {"language": language, "content": content}}


def run(content: str, params: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    ctx = FakeContext(script(content), params, RuntimeSettings(**{"code_timeout": 1.0, **settings}))
    result = asyncio.run(execute_code(ctx))
    assert isinstance(result, NodeResult) and result.branch is None and result.snapshot_inputs is None
    return result.outputs


def failure(content: str, **settings: Any) -> str:
    with pytest.raises(NodeError) as info:
        run(content, **settings)
    return str(info.value)


def conformance_cases() -> list[dict[str, Any]]:
    expected = json.loads((CONFORMANCE / "expected-results.json").read_text())
    return [case for case in expected["cases"] if case["fixture"] == "code.json"]


@pytest.mark.parametrize("case", conformance_cases(), ids=lambda case: case["id"])
def test_flowgram_code_fixture(case: dict[str, Any]) -> None:
    """code.json's async main: concatenates, returns an array and an object (expected-results.json)."""
    schema = json.loads((CONFORMANCE / "code.json").read_text())
    node = next(node for node in schema["nodes"] if node["type"] == "code")
    data = {k: v for k, v in node["data"].items() if k not in ("title", "inputs", "outputs", "inputsValues")}
    ctx = FakeContext(data, {"input": case["inputs"]["input"]})
    outputs = asyncio.run(execute_code(ctx)).outputs
    end = case["expect"]["outputs"]
    assert outputs == {"key0": end["output_key0"], "key1": end["output_key1"], "key2": end["output_key2"]}
    for snapshot in case["expect"].get("snapshots", []):
        if snapshot["nodeID"] == "code_0":
            assert outputs == snapshot["outputs"]


def test_sync_main_object_is_the_outputs() -> None:
    assert run("function main({ params }) { return { n: params.n * 2, s: params.s + '!' } }",
               {"n": 21, "s": "héllo ✓"}) == {"n": 42, "s": "héllo ✓!"}


def test_async_main_is_awaited() -> None:
    content = "async function main({ params }) { await null; const v = await Promise.resolve(params.x); return { v } }"
    assert run(content, {"x": [1, {"a": None}]}) == {"v": [1, {"a": None}]}


def test_thenable_result_is_resolved() -> None:
    assert run("const main = () => ({ then(resolve) { resolve({ ok: true }) } })") == {"ok": True}


@pytest.mark.parametrize(("returned", "expected"), [
    ("42", 42), ("'text'", "text"), ("[1, 'a']", [1, "a"]), ("null", None), ("undefined", None), ("true", True),
])
def test_anything_but_an_object_becomes_result(returned: str, expected: Any) -> None:
    assert run(f"function main() {{ return {returned} }}") == {"result": expected}


def test_params_cross_as_a_json_copy() -> None:
    params = {"list": [1, 2], "nested": {"k": "v"}}
    assert run("function main({ params }) { params.list.push(3); return params }", params) == {
        "list": [1, 2, 3], "nested": {"k": "v"}}
    assert params == {"list": [1, 2], "nested": {"k": "v"}}


@pytest.mark.parametrize(("data", "message"), [
    (script(""), "Code content is required"),
    ({"script": {"language": "javascript"}}, "Code content is required"),
    ({}, "Code content is required"),
    (script("function main() {}", "python"), 'Unsupported code language "python"'),
    ({"script": {"content": "function main() {}"}}, 'Unsupported code language "undefined"'),
])
def test_flowgram_setup_errors(data: dict[str, Any], message: str) -> None:
    with pytest.raises(NodeError, match=f"^{message}$"):
        asyncio.run(execute_code(FakeContext(data)))


@pytest.mark.parametrize(("content", "message"), [
    ("function main() { throw new Error('boom') }", "Code execution failed: boom"),
    ("async function main() { throw new TypeError('bad type') }", "Code execution failed: bad type"),
    ("function main() { throw 'plain' }", "Code execution failed: plain"),
    ("throw 'interrupted'; function main() {}", "Code execution failed: interrupted"),
    ("function main() { return missing.value }", "Code execution failed: missing is not defined"),
    ("function helper() {}", "Code execution failed: main function is required in the script"),
    ("function main() { return 1n }", "Code execution failed: the value main() returned is not JSON: "),
    ("function main() { function f() { return f() } return f() }", "Code execution failed: Maximum call stack"),
    ("async function main() { await new Promise(() => {}) }",
     "Code execution failed: main() returned a promise that never settled"),
])
def test_script_errors(content: str, message: str) -> None:
    assert failure(content).startswith(message)


def test_syntax_error_names_the_line() -> None:
    message = failure("const x = 1;\nconst = 2;\nfunction main() {}")
    assert message.startswith("Code execution failed: SyntaxError: ") and message.endswith("(line 2)")


@pytest.mark.parametrize("content", [
    "function main() { while (true) {} }",
    "while (true) {}",
    "async function main() { for (;;) await null }",
    "function main() { return /(a+)+$/.test('a'.repeat(40) + 'b') }",
])
def test_runaway_script_is_stopped(content: str) -> None:
    assert failure(content, code_timeout=0.3) == (
        "Code execution failed: Code execution timeout: exceeded 0.3 seconds")


@pytest.mark.parametrize("content", [
    "function main() { const a = []; while (true) a.push(new Array(1e6).fill(1)) }",
    "function main() { return new Uint8Array(1 << 30).length }",
    "function main() { const a = []; for (let i = 0; ; i++) a.push('x'.repeat(1 << 20) + i) }",
])
def test_gigabyte_allocation_is_stopped(content: str) -> None:
    assert failure(content) == "Code execution failed: out of memory (the sandbox allows 32 MB)"


def test_running_out_of_memory_in_small_steps_is_stopped() -> None:
    """QuickJS then cannot even allocate the error, and throws null: the message says both."""
    message = failure("function main() { const a = []; for (;;) a.push({ x: Math.random() }) }")
    assert message.startswith("Code execution failed: ") and "out of memory" in message and "32 MB" in message


@pytest.mark.parametrize("expression", [
    "a.join('')", "String(a)", "a.slice(0).length", "a.sort().length", "a.reverse().length",
    "Array.prototype.join.call({ length: 2 ** 53 - 1 })", "String.raw({ raw: { length: 2 ** 53 - 1 } })",
])
def test_sparse_arrays_cannot_hold_a_thread_in_native_loops(expression: str) -> None:
    """These native loops never reach QuickJS's interrupt handler: the sandbox refuses the length."""
    message = failure(f"function main() {{ const a = []; a[2 ** 32 - 2] = 1; return {expression} }}")
    assert message.startswith("Code execution failed: array length ") and "over the sandbox limit" in message


@pytest.mark.parametrize("expression", ["[].concat(a).length", "[a].flat().length", "[1].flatMap(() => a).length"])
def test_concat_and_flat_loop_in_javascript(expression: str) -> None:
    content = f"function main() {{ const a = []; a[2 ** 32 - 2] = 1; return {expression} }}"
    assert failure(content, code_timeout=0.3).endswith("timeout: exceeded 0.3 seconds")


def test_array_methods_still_work() -> None:
    content = """function main() {
      return { c: [1].concat([2, [3]], 4, 'x'), f: [1, [2, [3, [4]]]].flat(Infinity), m: [[1], [2, 3]].flatMap(x => x),
               h: [1, , 3].concat([4]).length, s: [3, 1, 2].sort().join('-'), r: String.raw`a${1}b` }
    }"""
    assert run(content) == {"c": [1, 2, [3], 4, "x"], "f": [1, 2, 3, 4], "m": [1, 2, 3], "h": 4, "s": "1-2-3",
                            "r": "a1b"}


def test_no_host_io_is_reachable() -> None:
    names = ["require", "process", "fetch", "setTimeout", "console", "XMLHttpRequest", "std", "os", "Proxy"]
    listed = json.dumps(names)
    content = f"function main() {{ return Object.fromEntries({listed}.map(n => [n, typeof globalThis[n]])) }}"
    assert run(content) == dict.fromkeys(names, "undefined")
    assert failure("function main() { return require('fs') }") == "Code execution failed: require is not defined"
    assert failure("function main() { return import('os') }") == "Code execution failed: could not load module 'os'"


def test_each_run_starts_from_a_fresh_context() -> None:
    first = "globalThis.leak = 1; Array.prototype.extra = 2; function main() { return { leak, extra: [].extra } }"
    assert run(first) == {"leak": 1, "extra": 2}
    assert run("function main() { return { leak: typeof leak, extra: typeof [].extra } }") == {
        "leak": "undefined", "extra": "undefined"}


def test_concurrent_runs_are_independent() -> None:
    async def both() -> list[Any]:
        good = FakeContext(script("async function main({ params }) { return { n: params.n } }"), {"n": 7},
                           settings=RuntimeSettings(code_timeout=10))  # its budget is not what is tested
        bad = FakeContext(script("function main() { while (true) {} }"),
                          settings=RuntimeSettings(code_timeout=0.3))
        return await asyncio.gather(execute_code(good), execute_code(bad), return_exceptions=True)

    good, bad = asyncio.run(both())
    assert good.outputs == {"n": 7}
    assert isinstance(bad, NodeError) and "timeout" in str(bad)


def test_refused_clearly_without_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "quickjs", None)  # what an uninstalled package looks like to import
    message = failure("function main() { return 1 }")
    assert message.startswith("Code node unavailable") and "quickjs-ng" in message
