"""BaseContext, FlowContext, FlowResponse and FlowStreamChunk."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest
from pydantic import ValidationError

from ops.context import BaseContext, FlowContext, FlowResponse, FlowStreamChunk


def run(coro):
    return asyncio.run(coro)


# -- BaseContext (spec §8.3) ------------------------------------------------------------------------


def test_base_context_scenario() -> None:
    ctx = BaseContext(name="Ada", age=36, city="London")
    assert (ctx.name, ctx.age, ctx.city) == ("Ada", 36, "London")
    ctx.job = "engineer"
    ctx["hobby"] = "maths"
    assert ctx["job"] == "engineer" and ctx.hobby == "maths"
    assert list(ctx.keys()) == ["name", "age", "city", "job", "hobby"]
    assert repr(ctx) == (
        "BaseContext({'name': 'Ada', 'age': 36, 'city': 'London', 'job': 'engineer', 'hobby': 'maths'})"
    )


def test_mapping_methods() -> None:
    ctx = BaseContext(a=1)
    ctx.update({"b": 2}, c=3)
    ctx.update(d=4)
    assert "b" in ctx and "z" not in ctx
    assert len(ctx) == 4 and list(ctx) == ["a", "b", "c", "d"]
    assert list(ctx.values()) == [1, 2, 3, 4]
    assert dict(ctx.items()) == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert ctx.get("z") is None and ctx.get("z", 9) == 9 and ctx.get("a") == 1
    dumped = ctx.dump()
    dumped["a"] = 100
    assert ctx["a"] == 1  # dump is a copy
    del ctx["a"]
    del ctx.b
    assert "a" not in ctx and "b" not in ctx
    assert ctx.pop("c") == 3 and ctx.pop("c", "gone") == "gone"
    assert ctx.setdefault("e", 5) == 5 and ctx.e == 5
    assert dict(**ctx) == {"d": 4, "e": 5}
    ctx.clear()
    assert len(ctx) == 0 and ctx.dump() == {}


def test_missing_item_is_a_key_error_and_missing_attribute_an_attribute_error() -> None:
    ctx = BaseContext()
    with pytest.raises(KeyError, match="nope"):
        ctx["nope"]
    with pytest.raises(KeyError, match="nope"):
        del ctx["nope"]
    with pytest.raises(KeyError, match="nope"):
        ctx.pop("nope")
    with pytest.raises(AttributeError, match="nope"):
        ctx.nope  # noqa: B018
    with pytest.raises(AttributeError, match="nope"):
        del ctx.nope
    assert not hasattr(ctx, "nope") and getattr(ctx, "nope", "d") == "d"


def test_underscore_names_are_real_attributes() -> None:
    ctx = BaseContext()
    ctx._private = 1
    assert ctx._private == 1 and "_private" not in ctx
    with pytest.raises(AttributeError):
        ctx._missing  # noqa: B018


def test_repr_uses_the_actual_class_and_contexts_compare_by_identity() -> None:
    class MyContext(BaseContext):
        pass

    assert repr(MyContext(x=1)) == "MyContext({'x': 1})"
    assert BaseContext(a=1) != BaseContext(a=1)
    assert len({BaseContext(), BaseContext()}) == 2


def test_pickle_and_copy() -> None:
    ctx = BaseContext(a=1, nested={"b": [1, 2]})
    clone = pickle.loads(pickle.dumps(ctx))
    assert type(clone) is BaseContext and clone.dump() == ctx.dump()
    deep = copy.deepcopy(ctx)
    deep.nested["b"].append(3)
    assert ctx.nested == {"b": [1, 2]}
    assert copy.copy(ctx).a == 1
    flow = FlowContext(flow_id="f", query="q")
    flow.response.answer = "a"
    flow_clone = pickle.loads(pickle.dumps(flow))
    assert (flow_clone.flow_id, flow_clone.query, flow_clone.response.answer) == ("f", "q", "a")


# -- FlowResponse / FlowStreamChunk -----------------------------------------------------------------


def test_flow_response_defaults_and_set_error() -> None:
    response = FlowResponse()
    assert (response.answer, response.success, response.metadata) == ("", True, {})
    assert FlowResponse().metadata is not response.metadata
    response.set_error(ValueError("bad input"), op_name="sum_op")
    assert response.success is False
    assert response.answer == "ValueError: bad input"
    assert response.metadata["error"] == {"type": "ValueError", "message": "bad input", "op": "sum_op"}


def test_stream_chunk_types_are_checked() -> None:
    chunk = FlowStreamChunk()
    assert (chunk.flow_id, chunk.chunk_type, chunk.chunk, chunk.done, chunk.metadata) == ("", "content", "", False, {})
    for kind in ("start", "progress", "content", "done", "error", "answer", "think", "tool", "usage"):
        assert FlowStreamChunk(chunk_type=kind).chunk_type == kind
    with pytest.raises(ValidationError, match="chunk_type"):
        FlowStreamChunk(chunk_type="banana")


# -- FlowContext -----------------------------------------------------------------------------------


def test_flow_context_ids_are_unique_and_fields_are_data() -> None:
    first, second = FlowContext(), FlowContext()
    assert first.flow_id != second.flow_id and len(first.flow_id) == 32
    assert FlowContext(flow_id="abc").flow_id == "abc"
    assert isinstance(first.response, FlowResponse) and first.response is not second.response
    assert "response" in first and first["flow_id"] == first.flow_id
    assert first.stream_queue is None and first.streaming is False
    response = FlowResponse(answer="given")
    ctx = FlowContext(response=response, query="hi")
    assert ctx.response is response and ctx.query == "hi"
    assert repr(ctx).startswith("FlowContext({")


def test_flow_context_rejects_a_response_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="FlowResponse"):
        FlowContext(response={"answer": "x"})


def test_streaming_property_is_not_data() -> None:
    ctx = FlowContext()
    assert "streaming" not in ctx
    with pytest.raises(AttributeError):
        ctx.streaming = True


def test_add_response_error() -> None:
    ctx = FlowContext()
    ctx.add_response_error(RuntimeError("boom"), "chat_op")
    assert ctx.response.success is False and ctx.response.answer == "RuntimeError: boom"
    assert ctx.response.metadata["error"]["op"] == "chat_op"


def test_stream_methods_without_a_queue_do_nothing() -> None:
    ctx = FlowContext()

    async def main() -> None:
        await ctx.add_stream_content("x")
        await ctx.add_stream_done()

    run(main())  # no error, nothing to read


def test_stream_methods_put_chunks_on_the_queue() -> None:
    async def main() -> list[FlowStreamChunk]:
        queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
        ctx = FlowContext(flow_id="f1", stream_queue=queue)
        assert ctx.streaming
        await ctx.add_stream_chunk(FlowStreamChunk(chunk_type="start", flow_id="other"))
        await ctx.add_stream_content("Hello")
        await ctx.add_stream_progress(1, 3, "step one", result={"ok": True})
        await ctx.add_stream_progress(0, 0)
        await ctx.add_stream_error("upstream down", error_code="upstream_error")
        await ctx.add_stream_done({"items": 3})
        chunks = []
        while True:
            chunk = await queue.get()
            chunks.append(chunk)
            if chunk.chunk_type == "done":
                return chunks

    chunks = run(main())
    assert all(c.flow_id == "f1" for c in chunks)
    assert [c.chunk_type for c in chunks] == ["start", "content", "progress", "progress", "error", "done"]
    assert chunks[1].chunk == "Hello" and not chunks[1].done
    assert chunks[2].chunk == {
        "current": 1, "total": 3, "percentage": 33.3, "message": "step one", "result": {"ok": True}
    }
    assert chunks[3].chunk == {"current": 0, "total": 0, "percentage": 0, "message": ""}
    assert chunks[4].chunk == "upstream down" and chunks[4].done
    assert chunks[4].metadata == {"error_code": "upstream_error"}
    assert chunks[5].done and chunks[5].chunk == {"items": 3}


def test_done_without_summary_has_an_empty_chunk() -> None:
    async def main() -> FlowStreamChunk:
        queue: asyncio.Queue[FlowStreamChunk] = asyncio.Queue()
        await FlowContext(stream_queue=queue).add_stream_done()
        return queue.get_nowait()

    chunk = run(main())
    assert chunk.chunk == "" and chunk.done and chunk.chunk_type == "done"
