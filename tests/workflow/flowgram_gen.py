"""A seeded generator of random FlowGram workflows, for the differential test against runtime-js.

``generate_cases(seed, count, llm_host, http_host)`` gives ``count`` cases ``{"id", "schema", "inputs", "kind"}``; the
same seed gives the same cases. Most are valid graphs built from nested segments (one way in, one way out):
chains, fan-out/joins, conditions (every operator of every left type, constants and refs on the right)
whose branches join again, loops over arrays (nested, with ``break``/``continue`` behind conditions),
``code`` nodes (``async main``: 1.0.9's non-async bug is a documented difference, see
``docs/flowgram-differences.md``), ``llm`` nodes calling ``llm_host`` (both engines' llm nodes, one fake
upstream), ``http`` nodes calling an echo server, start defaults, globals, refs into nested paths and
templates. The rest are invalid (:func:`~tests.workflow.flowgram_gen_parts.invalidate`): a cycle, a missing
or second start/end, an edge to a missing node, inputs against the start's declared types.

Values are not computed here: both engines compute them and the test compares the two.
"""

from __future__ import annotations

import json
import random
from typing import Any

from tests.workflow.flowgram_gen_parts import (  # noqa: F401 (node: for the tests' own cases)
    HEADER_TEXTS, NO_RIGHT, OPERATORS, WORDS, Graph, Scope, Var, const, invalidate, node, ref,
)


class Generator:
    """One workflow per :meth:`workflow` call, from ``rng``."""

    def __init__(self, rng: random.Random, llm_host: str, http_host: str) -> None:
        self.rng = rng
        self.llm_host = llm_host
        self.http_host = http_host
        self.counts: dict[str, int] = {}
        self.budget = 0

    def new_id(self, kind: str) -> str:
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        return f"{kind}_{n}"

    # -- values ---------------------------------------------------------------------------------

    def scalar(self, type_: str) -> Any:
        r = self.rng
        if type_ == "string":
            return r.choice(WORDS)
        if type_ == "integer":
            return r.choice([0, 1, 2, 3, -1, 7, 10, 100])
        if type_ == "number":
            return r.choice([0, 0.5, 1.5, -2.25, 3, 1e21, 1e-7, 0.1])
        return r.choice([True, False])

    def pick(self, scope: Scope, types: tuple[str, ...] | None = None) -> Var | None:
        pool = [v for v in scope.vars if types is None or v.type in types]
        return self.rng.choice(pool) if pool else None

    def flow_value(self, scope: Scope, type_: str) -> dict[str, Any]:
        """A ref to a var of ``type_`` (mostly), a template (strings) or a constant."""
        r = self.rng
        var = self.pick(scope, (type_,))
        if type_ == "string" and r.random() < 0.4:
            return {"type": "template", "content": self.template(scope)}
        if var is not None and r.random() < 0.75:
            return ref(var.path)
        if type_ == "array":
            return const(json.dumps([self.scalar("string") for _ in range(r.randint(0, 3))]))
        if type_ == "object":
            return const(json.dumps({"k": self.scalar("integer")}))
        return const(self.scalar(type_))

    def template(self, scope: Scope) -> str:
        parts = []
        for _ in range(self.rng.randint(1, 3)):
            var = self.pick(scope)
            parts.append(self.rng.choice(["", "v=", " | "]) + ("{{" + ".".join(var.path) + "}}" if var else "-"))
        return "".join(parts)

    def typed_inputs(self, scope: Scope, count: int,
                     types: tuple[str, ...] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``inputs`` (a JSON schema) and ``inputsValues`` of ``count`` random typed inputs."""
        properties, values = {}, {}
        for i in range(count):
            var = self.pick(scope, types)
            type_ = var.type if var is not None and self.rng.random() < 0.8 else self.rng.choice(
                types or ("string", "integer", "number", "boolean", "array", "object"))
            if self.rng.random() < 0.1:  # a declared type that disagrees with the value: the input is dropped
                type_ = self.rng.choice(types or ("string", "integer", "boolean"))
            properties[f"in{i}"] = {"type": type_}
            values[f"in{i}"] = ref(var.path) if var is not None and var.type == type_ else self.flow_value(scope, type_)
        return {"type": "object", "properties": properties}, values

    # -- nodes ----------------------------------------------------------------------------------

    def code_node(self, g: Graph, scope: Scope) -> tuple[str, str]:
        node_id = self.new_id("code")
        inputs, values = self.typed_inputs(scope, self.rng.randint(1, 3))
        body = ("const keys = Object.keys(params).sort();\n"
                "  const text = keys.map((k) => k + '=' + JSON.stringify(params[k])).join(';');\n"
                "  const nums = keys.map((k) => params[k]).filter((v) => typeof v === 'number');\n"
                "  return { text, count: keys.length, total: nums.reduce((a, b) => a + b, 0) / 2,\n"
                "    flag: keys.length % 2 === 0, list: keys, nested: { deep: { text, n: keys.length } } };")
        if self.rng.random() < 0.05:
            body = "throw new Error('code node failed on purpose: ' + Object.keys(params).length);"
        outputs = {"type": "object", "properties": {
            "text": {"type": "string"}, "count": {"type": "integer"}, "total": {"type": "number"},
            "flag": {"type": "boolean"}, "list": {"type": "array", "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"deep": {"type": "object", "properties": {
                "text": {"type": "string"}, "n": {"type": "integer"}}}}}}}
        if self.rng.random() < 0.05:  # a declared type the value does not have: stored as declared
            outputs["properties"][self.rng.choice(["text", "count", "flag"])] = {
                "type": self.rng.choice(["integer", "string", "boolean", "number"])}
        script = {"language": "javascript", "content": f"async function main({{ params }}) {{\n  {body}\n}}"}
        g.nodes.append(node(node_id, "code", inputs=inputs, inputsValues=values, outputs=outputs, script=script))
        scope.vars += [Var([node_id, "text"], "string"), Var([node_id, "count"], "integer"),
                       Var([node_id, "total"], "number"), Var([node_id, "flag"], "boolean"),
                       Var([node_id, "list"], "array", "string"), Var([node_id, "nested"], "object"),
                       Var([node_id, "nested", "deep", "text"], "string"),
                       Var([node_id, "nested", "deep", "n"], "integer")]
        return node_id, node_id

    def http_node(self, g: Graph, scope: Scope) -> tuple[str, str]:
        """A request to the echo server (``http_host``): url and JSON body templates, typed headers/params."""
        r = self.rng
        node_id = self.new_id("http")
        method = r.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
        # the URL's template: numbers and booleans only (documented: http-url-whitespace, http-url-brackets)
        var = self.pick(scope, ("integer", "number", "boolean"))
        path = "/echo/" + ("{{" + ".".join(var.path) + "}}" if var else "plain")
        if r.random() < 0.2:
            path = "/status/" + r.choice(["201", "404", "500"])
        headers, header_values = self.typed_inputs(scope, r.randint(0, 2), ("integer", "boolean"))
        if r.random() < 0.5:  # header strings: Latin-1 only (a failed http node: see test_differential's note)
            headers["properties"]["text"] = {"type": "string"}
            header_values["text"] = const(r.choice(HEADER_TEXTS))
        params, param_values = self.typed_inputs(scope, r.randint(0, 2), ("string", "integer", "number", "boolean"))
        body: dict[str, Any] = {"bodyType": "none"}
        if method != "GET":
            json_text = '{"v": "' + self.template(scope) + '"}'
            body = {"bodyType": "JSON", "json": {"type": "template", "content": json_text}}
        g.nodes.append(node(node_id, "http", api={"method": method, "url": {
            "type": "template", "content": f"http://{self.http_host}{path}"}},
            headers={**headers, "properties": {f"X-H-{k}": v for k, v in headers["properties"].items()}},
            headersValues={f"X-H-{k}": v for k, v in header_values.items()},
            params=params, paramsValues=param_values, body=body,
            timeout={"timeout": 5000, "retryTimes": 0},
            outputs={"type": "object", "properties": {"body": {"type": "string"}, "statusCode": {"type": "integer"},
                                                      "headers": {"type": "object"}}}))
        scope.vars += [Var([node_id, "body"], "string"), Var([node_id, "statusCode"], "integer")]
        return node_id, node_id

    def llm_node(self, g: Graph, scope: Scope) -> tuple[str, str]:
        r = self.rng
        node_id = self.new_id("llm")
        values: dict[str, Any] = {
            "modelName": const(r.choice(["gpt-4o", "fake-model", "AI_MODEL_1"])),
            "apiKey": const("sk-test-differential"),
            "apiHost": const(self.llm_host),
            "temperature": const(r.choice([0, 0.5, 0.7, 1, 2])),
            "prompt": {"type": "template", "content": "Q: " + self.template(scope)},
        }
        if r.random() < 0.05:  # FlowGram's "LLM node missing required inputs" (names in its order)
            for name in r.sample(sorted(values), r.randint(1, 3)):
                values[name] = const("") if name != "temperature" else {"type": "ref", "content": ["start_0", "nope"]}
        if r.random() < 0.6:
            values["systemPrompt"] = {"type": "template", "content": r.choice(["You help.", "No.{{" + ".".join(
                (self.pick(scope) or Var(["global", "g_text"], "string")).path) + "}}"])}
        properties = {k: {"type": "number" if k == "temperature" else "string"} for k in values}
        g.nodes.append(node(node_id, "llm", inputs={"type": "object", "properties": properties},
                            inputsValues=values,
                            outputs={"type": "object", "properties": {"result": {"type": "string"}}}))
        scope.vars.append(Var([node_id, "result"], "string"))
        return node_id, node_id

    def condition(self, scope: Scope, key: str) -> dict[str, Any]:
        """Mostly a rule FlowGram accepts for the left type; sometimes a right value of another type (the
        rule is then dropped), a left ref to nothing (type null) or an operator the type lacks (an error)."""
        r = self.rng
        var = self.pick(scope)
        left_type = var.type if var is not None else "string"
        left = var.path if var else ["global", "g_text"]
        if r.random() < 0.05:
            left, left_type = [left[0], "no_such_key"], "null"
        operators = OPERATORS.get(left_type, ["eq", "is_empty"])
        if r.random() < 0.03:
            operators = [op for ops in OPERATORS.values() for op in ops if op not in ("is_empty", "is_not_empty")]
        operator = r.choice(operators)
        value: dict[str, Any] = {"left": ref(left), "operator": operator}
        right_type = left_type if left_type in ("string", "integer", "number", "boolean") else "string"
        if r.random() < 0.1:
            right_type = r.choice(["string", "integer", "number", "boolean"])
        if operator in ("in", "nin"):
            value["right"] = const([self.scalar(right_type) for _ in range(r.randint(1, 3))])
        elif operator not in NO_RIGHT:
            other = self.pick(scope, (left_type,))
            value["right"] = ref(other.path) if other and r.random() < 0.3 else const(self.scalar(right_type))
        return {"key": key, "value": value}

    # -- segments: (entry id, exit id) ---------------------------------------------------------

    def segment(self, g: Graph, scope: Scope, size: int) -> tuple[str, str]:
        """A chain of ``size`` parts; each part is a node, a fan-out/join, a condition or a loop."""
        first = last = None
        for _ in range(max(1, size)):
            entry, exit_ = self.part(g, scope)
            if last is not None:
                g.edge(last, entry)
            first, last = first or entry, exit_
        return first, last  # type: ignore[return-value]

    def part(self, g: Graph, scope: Scope) -> tuple[str, str]:
        r = self.rng
        self.budget -= 1
        roll = r.random() if self.budget > 0 else 0.0
        if roll < 0.35:
            kind = r.random()
            return (self.code_node if kind < 0.6 else self.llm_node if kind < 0.85 else self.http_node)(g, scope)
        if roll < 0.55:
            return self.fan_out(g, scope)
        if roll < 0.8:
            return self.branch(g, scope)
        if scope.depth < 2:
            return self.loop(g, scope)
        return self.code_node(g, scope)

    def fan_out(self, g: Graph, scope: Scope) -> tuple[str, str]:
        entry, _ = self.code_node(g, scope)
        join_scope = Scope([], scope.loop, scope.depth)
        join, _ = self.code_node(g, join_scope)
        branch_scopes = []
        for _ in range(self.rng.randint(2, 4)):
            inner = scope.child(stops=False)
            first, last = self.segment(g, inner, self.rng.randint(1, 2))
            g.edge(entry, first)
            g.edge(last, join)
            branch_scopes.append(inner)
        self._retarget_join(g, join, scope, branch_scopes)
        scope.vars += join_scope.vars
        return entry, join

    def _retarget_join(self, g: Graph, join: str, scope: Scope, branches: list[Scope]) -> None:
        """The join node reads one value of each branch: every one of them has run when it starts."""
        join_node = next(n for n in g.nodes if n["id"] == join)
        picks = [self.pick(Scope([v for v in b.vars if v not in scope.vars])) for b in branches]
        picks = [p for p in picks if p is not None] or [self.pick(scope)]
        join_node["data"]["inputs"] = {"type": "object", "properties": {
            f"in{i}": {"type": p.type} for i, p in enumerate(picks) if p}}
        join_node["data"]["inputsValues"] = {f"in{i}": ref(p.path) for i, p in enumerate(picks) if p}
        for branch in branches:  # after the join, every branch's values exist
            scope.vars += [v for v in branch.vars if v not in scope.vars]

    def branch(self, g: Graph, scope: Scope) -> tuple[str, str]:
        """A condition whose branches (``else`` too) meet again, or end in break/continue in a loop."""
        r = self.rng
        cond_id = self.new_id("condition")
        keys = [f"if_{i}" for i in range(r.randint(1, 3))]
        g.nodes.append(node(cond_id, "condition", conditions=[self.condition(scope, k) for k in keys]))
        join_scope = scope.child()
        join, _ = self.code_node(g, join_scope)
        direct = False  # one port at most goes straight to the join (two: documented join-runs-once)
        for port in keys + ["else"]:
            if scope.loop is not None and scope.stops and r.random() < 0.25:
                stop = self.new_id(r.choice(["break", "continue"]))
                g.nodes.append(node(stop, stop.rsplit("_", 1)[0]))
                g.edge(cond_id, stop, port)
            elif not direct and r.random() < 0.3:
                direct = True
                g.edge(cond_id, join, port)
            else:
                first, last = self.segment(g, scope.child(), 1)
                g.edge(cond_id, first, port)
                g.edge(last, join)
        if not any(e["targetNodeID"] == join for e in g.edges):  # every branch stopped the loop: keep join reachable
            g.edges = [e for e in g.edges if not (e["sourceNodeID"] == cond_id and e.get("sourcePortID") == "else")]
            g.edge(cond_id, join, "else")
        scope.vars += [v for v in join_scope.vars if v not in scope.vars]
        return cond_id, join

    def loop(self, g: Graph, scope: Scope) -> tuple[str, str]:
        loop_id = self.new_id("loop")
        arrays = [v for v in scope.vars if v.type == "array" and v.items in ("string", "integer", "number")]
        over = self.rng.choice(arrays) if arrays else Var(["global", "g_list"], "array", "string")
        locals_id = f"{loop_id}_locals"
        body = Graph()
        inner = Scope(list(scope.vars) + [Var([locals_id, "item"], over.items or "string"),
                                          Var([locals_id, "index"], "integer")], loop_id, scope.depth + 1)
        start, end = self.new_id("block_start"), self.new_id("block_end")
        body.nodes += [node(start, "block-start"), node(end, "block-end")]
        first, last = self.segment(body, inner, self.rng.randint(1, 2))
        body.edge(start, first)
        body.edge(last, end)
        produced = [v for v in inner.vars if v not in scope.vars and v.path[0] != locals_id and len(v.path) == 2]
        loop_outputs = {"items": ref([locals_id, "item"]), "indexes": ref([locals_id, "index"])}
        for i, var in enumerate(self.rng.sample(produced, min(2, len(produced)))):
            loop_outputs[f"out{i}"] = ref(var.path)
        g.nodes.append({**node(loop_id, "loop", loopFor=ref(over.path), loopOutputs=loop_outputs),
                        "blocks": body.nodes, "edges": body.edges})
        scope.vars += [Var([loop_id, "items"], "array", over.items), Var([loop_id, "indexes"], "array", "integer")]
        return loop_id, loop_id

    # -- whole workflows ------------------------------------------------------------------------

    def start(self) -> tuple[dict[str, Any], dict[str, Any], list[Var]]:
        """The start node's declared outputs (some with defaults), the inputs given, and its vars."""
        r = self.rng
        declared: dict[str, Any] = {
            "s_text": {"type": "string"}, "s_int": {"type": "integer"}, "s_num": {"type": "number"},
            "s_flag": {"type": "boolean"},
            "s_list": {"type": "array", "items": {"type": "string"}},
            "s_ints": {"type": "array", "items": {"type": "integer"}},
            "s_nums": {"type": "array", "items": {"type": "number"}},
            "s_obj": {"type": "object", "properties": {"name": {"type": "string"}, "inner": {
                "type": "object", "properties": {"n": {"type": "integer"}, "tags": {
                    "type": "array", "items": {"type": "string"}}}}}},
        }
        inputs = {"s_text": self.scalar("string"), "s_int": self.scalar("integer"), "s_num": self.scalar("number"),
                  "s_flag": self.scalar("boolean"),
                  "s_list": [self.scalar("string") for _ in range(r.randint(0, 4))],
                  "s_ints": [self.scalar("integer") for _ in range(r.randint(0, 4))],
                  # numbers, some whole (1 and 1.5 in one loop), some a string: FlowGram's mixed-items error
                  "s_nums": [self.scalar(r.choice(["number", "integer"])) for _ in range(r.randint(0, 3))]
                  + (["7"] if r.random() < 0.15 else []),
                  "s_obj": {"name": self.scalar("string"),
                            "inner": {"n": self.scalar("integer"), "tags": ["t1", "t2"]}}}
        for key in r.sample(sorted(inputs), r.randint(0, 3)):  # left out: the default applies (or nothing)
            del inputs[key]
            if r.random() < 0.7 and key in ("s_text", "s_int", "s_flag", "s_list"):
                declared[key]["default"] = {"s_list": '["d1", "d2"]'}.get(key, self.scalar(declared[key]["type"]))
        variables = [Var(["start_0", "s_text"], "string"), Var(["start_0", "s_int"], "integer"),
                     Var(["start_0", "s_num"], "number"), Var(["start_0", "s_flag"], "boolean"),
                     Var(["start_0", "s_list"], "array", "string"), Var(["start_0", "s_ints"], "array", "integer"),
                     Var(["start_0", "s_nums"], "array", "number"),
                     Var(["start_0", "s_obj"], "object"), Var(["start_0", "s_obj", "name"], "string"),
                     Var(["start_0", "s_obj", "inner", "n"], "integer"),
                     Var(["start_0", "s_obj", "inner", "tags"], "array", "string"),
                     Var(["global", "g_text"], "string"), Var(["global", "g_list"], "array", "string"),
                     Var(["global", "g_int"], "integer")]
        required = sorted(k for k in inputs if r.random() < 0.5)
        return {"type": "object", "properties": declared, "required": required}, inputs, variables

    def workflow(self, size: int) -> tuple[dict[str, Any], dict[str, Any]]:
        self.counts = {}
        self.budget = size
        outputs, inputs, variables = self.start()
        g = Graph()
        g.nodes.append(node("start_0", "start", outputs=outputs))
        scope = Scope(variables)
        first, last = self.segment(g, scope, self.rng.randint(1, 3))
        end_inputs, end_values = self.typed_inputs(scope, self.rng.randint(1, 4))
        g.nodes.append(node("end_0", "end", inputs=end_inputs, inputsValues=end_values))
        g.edge("start_0", first)
        g.edge(last, "end_0")
        schema = {"nodes": g.nodes, "edges": g.edges, "globalVariable": {"type": "object", "properties": {
            "g_text": {"type": "string", "default": self.scalar("string")},
            "g_list": {"type": "array", "items": {"type": "string"}, "default": '["g1", "g2", "g3"]'},
            "g_int": {"type": "integer", "default": self.scalar("integer")}}}}
        return schema, inputs


def generate_cases(seed: int, count: int, llm_host: str, http_host: str,
                   invalid_share: float = 0.15) -> list[dict[str, Any]]:
    """``count`` cases from ``seed``: valid workflows of 1 to ~25 nodes, and ``invalid_share`` broken ones.
    llm nodes call ``llm_host`` (an apiHost URL); http nodes call ``http://<http_host>/...``."""
    rng = random.Random(seed)
    gen = Generator(rng, llm_host, http_host)
    cases = []
    for i in range(count):
        schema, inputs = gen.workflow(rng.randint(1, 7))
        kind = "valid"
        if rng.random() < invalid_share:
            schema, inputs, kind = invalidate(rng, schema, inputs)
            kind = "invalid:" + kind
        cases.append({"id": f"gen-{seed}-{i}", "kind": kind, "schema": schema, "inputs": inputs})
    return cases
