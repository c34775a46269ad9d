"""ReactAgentOp in process, against the fake upstream scripted to call tools (issue 13, acceptance 2 and 4).

Each scripted reply after the first only matches a conversation that already holds the expected
tool results, so an agent that does not feed results back gets the fake's ``echo: ...`` instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from ops import BaseAsyncToolOp, ChunkEnum, FlowContext, OpApp, parse_flow_expression
from ops.gallery import ReactAgentOp
from tests.fake_upstream import FakeUpstream
from tests.ops.react_agent_tools import ArithmeticOp, ParallelProbeOp, PopulationLookupOp

CHAT = "/v1/chat/completions"
QUESTION = "What is twice the population of Paris?"


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def after(*results: str) -> Callable[[dict[str, Any]], bool]:
    """Match a conversation whose tool results so far are exactly ``results``."""
    return lambda body: tool_results(body) == list(results)


def call(name: str, arguments: Any) -> dict[str, Any]:
    return {"content": None, "tool_calls": [{"name": name, "arguments": arguments}]}


def script_both_tools(upstream: FakeUpstream) -> None:
    """Lookup first, then the arithmetic on its result, then the answer: both tools needed."""
    upstream.script([call("population_lookup", {"city": "Paris"})], match=after())
    upstream.script([call("arithmetic", {"a": 2100000, "b": 2, "operation": "multiply"})], match=after("2100000"))
    upstream.script(["Twice the population of Paris is 4200000."], match=after("2100000", "4200000"))


def agent(**params: Any) -> ReactAgentOp:
    return ReactAgentOp(**params) << [PopulationLookupOp(), ArithmeticOp()]


def run(upstream: FakeUpstream, op: BaseAsyncToolOp, stream: bool = False, **inputs: Any) -> tuple[FlowContext, list]:
    """Run ``op`` in an OpApp on the fake upstream; the context and the stream chunks."""

    async def main() -> tuple[FlowContext, list]:
        async with OpApp(env={"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0"}):
            queue: asyncio.Queue | None = asyncio.Queue() if stream else None
            context = FlowContext(stream_queue=queue, **inputs)
            await op.async_call(context)
            return context, [queue.get_nowait() for _ in range(queue.qsize())] if queue else []

    return asyncio.run(main())


def chat_bodies(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["json"] for r in upstream.stats()["requests_log"] if r["path"] == CHAT]


def test_the_agent_answers_a_question_that_needs_both_tools(upstream: FakeUpstream) -> None:
    script_both_tools(upstream)
    lookup, arithmetic = PopulationLookupOp(), ArithmeticOp()
    op = ReactAgentOp() << [lookup, arithmetic]
    context, _ = run(upstream, op, query=QUESTION)
    response = context.response
    assert response.answer == "Twice the population of Paris is 4200000." and response.success
    assert context["react_agent_result"] == response.answer
    calls = response.metadata["tool_calls"]
    assert [(c["step"], c["name"], c["status"], c["result"]) for c in calls] == [
        (1, "population_lookup", "ok", "2100000"), (2, "arithmetic", "ok", "4200000")]
    assert response.metadata["agent"] == {"op": "react_agent_op", "steps": 3, "max_steps": 5,
                                          "stop_reason": "answer"}
    # the calls ran on copies: the attached ops are untouched
    assert lookup.output_dict == {} and arithmetic.output_dict == {}
    bodies = chat_bodies(upstream)
    assert len(bodies) == 3
    assert {t["function"]["name"] for t in bodies[0]["tools"]} == {"population_lookup", "arithmetic"}
    assert bodies[0]["messages"][0]["role"] == "system" and bodies[0]["messages"][1]["content"] == QUESTION
    # each result answers its call by id
    second = bodies[1]["messages"]
    assert second[-1] == {"role": "tool", "content": "2100000", "tool_call_id": second[-2]["tool_calls"][0]["id"]}
    messages = response.metadata["messages"]
    assert [m.role.value for m in messages] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]


def test_the_calls_of_one_step_run_in_parallel_each_on_its_own_copy(upstream: FakeUpstream) -> None:
    ParallelProbeOp.arrived = 0
    upstream.script([{"content": None, "tool_calls": [{"name": "parallel_probe", "arguments": {"expected": 3}}] * 3}],
                    match=after())
    upstream.script(["all three met"], match=after("together", "together", "together"))
    context, _ = run(upstream, ReactAgentOp() << [ParallelProbeOp()], query="probe")
    assert context.response.answer == "all three met"
    ids = [c["id"] for c in context.response.metadata["tool_calls"]]
    assert len(set(ids)) == 3


def test_streamed_one_tool_chunk_per_call_then_the_answer(upstream: FakeUpstream) -> None:
    script_both_tools(upstream)
    context, chunks = run(upstream, agent(), stream=True, query=QUESTION)
    kinds = [c.chunk_type for c in chunks]
    assert kinds == [ChunkEnum.TOOL, ChunkEnum.TOOL, ChunkEnum.ANSWER]
    assert [c.event_type for c in chunks] == ["progress", "progress", "content"]
    first = chunks[0].chunk
    assert first["function"]["name"] == "population_lookup" and first["status"] == "ok"
    assert json.loads(first["function"]["arguments"]) == {"city": "Paris"} and first["result"] == "2100000"
    assert chunks[-1].chunk == context.response.answer


def test_a_tool_that_raises_is_answered_to_the_model(upstream: FakeUpstream) -> None:
    upstream.script([call("arithmetic", {"a": 1, "b": 0, "operation": "divide"})], match=after())
    upstream.script(["One cannot divide by zero."],
                    match=lambda body: any("ZeroDivisionError" in r for r in tool_results(body)))
    context, _ = run(upstream, agent(), query="1 / 0?")
    response = context.response
    assert response.answer == "One cannot divide by zero." and response.success
    [record] = response.metadata["tool_calls"]
    assert record["status"] == "error" and record["error"].startswith("tool 'arithmetic' failed: ZeroDivisionError")
    assert tool_results(chat_bodies(upstream)[1])[0].startswith("Error: tool 'arithmetic' failed: ZeroDivisionError")


def test_an_unknown_tool_is_answered_to_the_model(upstream: FakeUpstream) -> None:
    upstream.script([call("weather", {"city": "Paris"})], match=after())
    upstream.script(["I have no weather tool."], match=lambda body: "was not offered" in "".join(tool_results(body)))
    context, _ = run(upstream, agent(), query="weather?")
    assert context.response.answer == "I have no weather tool."
    [record] = context.response.metadata["tool_calls"]
    assert record["status"] == "error" and "tool 'weather' was not offered" in record["error"]
    assert "arithmetic, population_lookup" in record["error"]


def test_malformed_arguments_are_answered_to_the_model(upstream: FakeUpstream) -> None:
    upstream.script([{"content": None, "tool_calls": [
        {"name": "population_lookup", "arguments": "{city: Paris"},  # not JSON
        {"name": "arithmetic", "arguments": {"a": 1, "operation": "add"}},  # b missing
        {"name": "arithmetic", "arguments": {"a": "1", "b": 2, "operation": "add"}},  # a of the wrong type
    ]}], match=after())
    upstream.script(["Fixed nothing, but I am done."], match=lambda body: len(tool_results(body)) == 3)
    context, _ = run(upstream, agent(), query="broken calls")
    response = context.response
    assert response.answer == "Fixed nothing, but I am done." and response.success
    errors = [r["error"] for r in response.metadata["tool_calls"]]
    assert [r["status"] for r in response.metadata["tool_calls"]] == ["error"] * 3
    assert "not a JSON object" in errors[0] and "'b' is required" in errors[1] and "'a' must be number" in errors[2]
    sent = tool_results(chat_bodies(upstream)[1])
    assert all(text.startswith("Error: ") for text in sent) and "'b' is required" in sent[1]


def test_a_model_that_never_stops_calling_tools_ends_after_max_steps(upstream: FakeUpstream) -> None:
    upstream.script([call("population_lookup", {"city": "Lyon"})], repeat=True)
    context, _ = run(upstream, agent(max_steps=3), query="loop forever")
    response = context.response
    assert not response.success
    assert "stopped after 3 step(s) (max_steps=3) without a final answer" in response.answer
    assert response.metadata["agent"]["stop_reason"] == "max_steps"
    assert response.metadata["error"]["type"] == "MaxStepsReached"
    assert [r["status"] for r in response.metadata["tool_calls"]] == ["ok", "ok", "not_run"]
    assert len(chat_bodies(upstream)) == 3


def test_messages_instead_of_a_query(upstream: FakeUpstream) -> None:
    upstream.script(["hello again"])
    context, _ = run(upstream, agent(), messages=[{"role": "user", "content": "hi"}])
    assert context.response.answer == "hello again"
    assert chat_bodies(upstream)[0]["messages"] == [{"role": "user", "content": "hi"}]


def test_neither_query_nor_messages_is_an_error(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="give 'query' or 'messages'"):
        run(upstream, agent())
    with pytest.raises(ValueError, match=r"messages\[0\] must be an object"):
        run(upstream, agent(), messages=["hi"])


def test_tools_by_registered_name_and_in_a_flow_expression(upstream: FakeUpstream) -> None:
    named = ReactAgentOp(tools=["population_lookup", {"opName": "ArithmeticOp", "opParams": {}}])
    parsed = parse_flow_expression("ReactAgentOp(max_steps=4) << [PopulationLookupOp(), ArithmeticOp()]")
    for op in (named, parsed, named.copy()):
        upstream.reset()
        script_both_tools(upstream)
        context, _ = run(upstream, op, query=QUESTION)
        assert context.response.answer == "Twice the population of Paris is 4200000."


@pytest.mark.parametrize(("params", "message"), [
    ({"tools": ["nope"]}, "react_agent_op: tools: no op named 'nope'"),
    ({"tools": ["react_agent"], "max_steps": 0}, "max_steps must be an integer > 0"),
    ({"max_steps": 1000}, "max_steps must be at most 100"),
    ({"tools": [{"opName": "arithmetic", "opParams": {"bogus_param": 1}, "x": 1}]}, "not x"),
    ({"tools": [5]}, "a tools entry is an op name"),
    ({"tool_timeout": 0}, "tool_timeout must be a number of seconds > 0"),
])
def test_bad_agent_parameters_are_named(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReactAgentOp(**params)


def test_a_sub_op_that_is_not_a_tool_is_an_error(upstream: FakeUpstream) -> None:
    from ops import BaseAsyncOp

    class PlainOp(BaseAsyncOp):
        async def async_execute(self) -> None:
            return None

    with pytest.raises(ValueError, match="plain_op is not a tool op"):
        run(upstream, ReactAgentOp() << [PlainOp()], query="x")


def test_a_tool_slower_than_tool_timeout_is_an_error_to_the_model(upstream: FakeUpstream) -> None:
    ParallelProbeOp.arrived = 0
    upstream.script([call("parallel_probe", {"expected": 2})], match=after())  # waits for a second call
    upstream.script(["The probe timed out."], match=lambda body: "no result after" in "".join(tool_results(body)))
    context, _ = run(upstream, ReactAgentOp(tool_timeout=0.2) << [ParallelProbeOp()], query="probe alone")
    assert context.response.answer == "The probe timed out."
    [record] = context.response.metadata["tool_calls"]
    assert record["status"] == "error" and "TimeoutError: no result after 0.2s" in record["error"]


def test_add_think_tool_offers_it_except_right_after_its_use(upstream: FakeUpstream) -> None:
    upstream.script([call("think_tool", {"reflection": "I need the population first."})], match=after())
    upstream.script([call("population_lookup", {"city": "Lyon"})], match=lambda body: len(tool_results(body)) == 1)
    upstream.script(["Lyon has 520000 people."], match=lambda body: tool_results(body)[-1:] == ["520000"])
    context, _ = run(upstream, agent(add_think_tool=True), query="How many people live in Lyon?")
    assert context.response.answer == "Lyon has 520000 people."
    offered = [{t["function"]["name"] for t in body["tools"]} for body in chat_bodies(upstream)]
    assert offered == [{"population_lookup", "arithmetic", "think_tool"}, {"population_lookup", "arithmetic"},
                       {"population_lookup", "arithmetic", "think_tool"}]
    assert [c["name"] for c in context.response.metadata["tool_calls"]] == ["think_tool", "population_lookup"]


def test_calls_beyond_max_tool_calls_in_one_step_are_answered_as_errors(upstream: FakeUpstream) -> None:
    cities = ["Paris", "Lyon", "Paris"]
    upstream.script([{"content": None, "tool_calls": [{"name": "population_lookup", "arguments": {"city": c}}
                                                      for c in cities]}], match=after())
    upstream.script(["done"], match=lambda body: len(tool_results(body)) == 3)
    context, _ = run(upstream, agent(max_tool_calls=2), query="three lookups")
    records = context.response.metadata["tool_calls"]
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert "more than 2 tool calls in one step" in records[2]["error"]


class FallbackLookupAgentOp(ReactAgentOp):
    """flowllm's ReactSearchOp pattern (a default tool when none is attached) and flowllm's own
    ``execute_tool`` body, written as flowllm writes them."""

    async def build_tool_op_dict(self) -> dict:
        tool_op_dict = await super().build_tool_op_dict()
        if not tool_op_dict:
            search_op = PopulationLookupOp()
            tool_op_dict[search_op.tool_call.name] = search_op
        return tool_op_dict

    async def execute_tool(self, op, tool_call):
        self.submit_async_task(op.async_call, **tool_call.argument_dict)


def test_flowllm_style_subclass_hooks_and_op_output(upstream: FakeUpstream) -> None:
    upstream.script([call("population_lookup", {"city": "Paris"}), "Paris: 2100000."], match="Paris")
    upstream.script([call("population_lookup", {"city": "Atlantis"}), "Unknown."], match="Atlantis")

    async def main() -> tuple[str, str]:
        async with OpApp(env={"LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0"}):
            op = FallbackLookupAgentOp()
            await op.async_call(query="Population of Paris?")
            other = FallbackLookupAgentOp()
            await other.async_call(query="Population of Atlantis?")
            return op.output, other.context.response.metadata["tool_calls"][0]["result"]

    answer, unknown = asyncio.run(main())
    assert answer == "Paris: 2100000." and unknown == "no population known for Atlantis"


def test_two_tools_of_one_name_are_an_error_and_name_tells_them_apart(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="two tools are named 'population_lookup'"):
        run(upstream, ReactAgentOp() << {"a": PopulationLookupOp(), "b": PopulationLookupOp()}, query="x")
    upstream.script(["fine"])
    context, _ = run(upstream, ReactAgentOp() << [PopulationLookupOp(), PopulationLookupOp(name="census_op")],
                     query="two lookups")
    assert context.response.answer == "fine"
    assert {t["function"]["name"] for t in chat_bodies(upstream)[0]["tools"]} == {"population_lookup", "census"}


def test_flowllm_agent_with_mock_search_and_think_tool(upstream: FakeUpstream) -> None:
    """flowllm's own composition, ``ReactAgentOp() << [MockSearchOp(), ThinkToolOp()]``, as a flow."""
    offers_tools = lambda body: bool(body.get("tools"))  # noqa: E731 - the agent's requests, not the search's
    upstream.script([{"content": None, "tool_calls": [
        {"name": "think_tool", "arguments": {"reflection": "Search first."}},
        {"name": "mock_search", "arguments": {"query": "Paris weather"}},
    ]}], match=lambda body: offers_tools(body) and not tool_results(body))
    upstream.script(["It will rain in Paris."], match=lambda body: offers_tools(body) and len(tool_results(body)) == 2)
    upstream.script(['```json\n[{"title": "Rain in Paris tomorrow"}]\n```'], match=lambda body: not offers_tools(body))
    op = parse_flow_expression("ReactAgentOp() << [MockSearchOp(num_results=1), ThinkToolOp()]")
    context, _ = run(upstream, op, query="Will it rain in Paris?")
    assert context.response.answer == "It will rain in Paris."
    think, search = context.response.metadata["tool_calls"]
    assert think["status"] == search["status"] == "ok"
    assert json.loads(search["result"]) == [{"title": "Rain in Paris tomorrow"}]
