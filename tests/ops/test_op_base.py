"""BaseOp / BaseAsyncOp: running, hooks, retries, errors, naming, prompts, services, cache, tasks."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from llm_client import LLMClient
from ops import BaseAsyncOp, BaseOp, C, FlowContext, OpApp
from ops.base import camel_to_snake
from tests.fake_upstream import FakeUpstream


@pytest.fixture
def app(upstream: FakeUpstream):
    with OpApp(env={"LLM_BASE_URL": upstream.base_url, "LLM_RETRY_INITIAL_DELAY": "0.01"}) as op_app:
        yield op_app


class HookOp(BaseAsyncOp):
    async def async_before_execute(self):
        self.context["log"] = [*self.context.get("log", []), "before"]

    async def async_execute(self):
        self.context["log"] = [*self.context["log"], "execute"]
        if self.context.get("fail_times", 0) > self.context.get("attempts", 0):
            self.context["attempts"] = self.context.get("attempts", 0) + 1
            raise RuntimeError(f"boom {self.context['attempts']}")
        return self.context.get("value")

    async def async_after_execute(self):
        self.context["log"] = [*self.context["log"], "after"]


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize(("cls_name", "snake"), [
    ("ChatLLMOp", "chat_llm_op"), ("ExecuteCodeOp", "execute_code_op"), ("Op1Op", "op1_op"),
    ("HTTPFetchOp", "http_fetch_op"), ("SumOp", "sum_op"),
])
def test_names(cls_name: str, snake: str) -> None:
    assert camel_to_snake(cls_name) == snake
    cls = type(cls_name, (BaseAsyncOp,), {})
    op = cls()
    assert (op.name, op.short_name) == (snake, snake.removesuffix("_op"))
    assert cls(name="custom").name == "custom"


def test_class_names_must_end_in_op() -> None:
    class Summarizer(BaseAsyncOp):
        pass

    with pytest.raises(TypeError, match="end in 'Op'"):
        Summarizer()


def test_hooks_run_in_order_and_result_is_returned(app) -> None:
    ctx = FlowContext(value=42)
    assert run(HookOp().async_call(context=ctx)) == 42
    assert ctx["log"] == ["before", "execute", "after"]


def test_none_result_returns_the_response(app) -> None:
    ctx = FlowContext()
    assert run(HookOp().async_call(context=ctx)) is ctx.response


def test_errors_raise_by_default(app) -> None:
    with pytest.raises(RuntimeError, match="boom 1"):
        run(HookOp().async_call(fail_times=1))


def test_max_retries_retries_then_succeeds(app) -> None:
    ctx = FlowContext(fail_times=2, value="done")
    assert run(HookOp(max_retries=3).async_call(context=ctx)) == "done"
    assert ctx["attempts"] == 2


def test_failure_is_recorded_when_not_raising(app) -> None:
    ctx = FlowContext(fail_times=5)
    result = run(HookOp(max_retries=2, raise_exception=False).async_call(context=ctx))
    assert result is ctx.response
    assert ctx.response.success is False
    assert "RuntimeError: boom 2" in str(ctx.response.answer)
    assert ctx.response.metadata["error"]["op"] == "hook_op"


def test_each_call_gets_its_own_context_id(app) -> None:
    assert FlowContext().flow_id != FlowContext().flow_id


def test_sync_twin_from_a_thread_and_inside_a_loop(app) -> None:
    assert HookOp().call(value=1) == 1

    async def inside():
        return HookOp().call(value=2)

    assert run(inside()) == 2


def test_sync_base_op(app) -> None:
    class DoubleOp(BaseOp):
        def execute(self):
            return self.context["x"] * 2

    assert DoubleOp().call(x=4) == 8


def test_copy_merges_arguments() -> None:
    op = HookOp(max_retries=2, name="h")
    twin = op.copy(max_retries=5)
    assert (twin.name, twin.max_retries, op.max_retries) == ("h", 5, 2)


# -- prompts ----------------------------------------------------------------------------------------


def _write_op_module(tmp_path: Path, prompt_yaml: str) -> type[BaseAsyncOp]:
    import importlib.util

    (tmp_path / "greet_op.py").write_text(
        "from ops import BaseAsyncOp\n"
        "class GreetOp(BaseAsyncOp):\n"
        "    async def async_execute(self):\n"
        "        return self.prompt_format('greet', name=self.context['name'], polite=self.context['polite'])\n"
    )
    (tmp_path / "greet_prompt.yaml").write_text(prompt_yaml)
    spec = importlib.util.spec_from_file_location(f"greet_op_{tmp_path.name}", tmp_path / "greet_op.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GreetOp


def test_prompt_file_is_found_beside_the_op(app, tmp_path: Path) -> None:
    greet = _write_op_module(tmp_path, "greet: |\n  Hello {name}.\n  [polite]Have a lovely day.\n")
    assert run(greet().async_call(name="Ada", polite=True)) == "Hello Ada.\nHave a lovely day.\n"
    assert run(greet().async_call(name="Ada", polite=False)) == "Hello Ada.\n"


def test_prompt_language_and_fallback(upstream: FakeUpstream, tmp_path: Path) -> None:
    greet = _write_op_module(tmp_path, "greet: 'Hello {name}'\ngreet_zh: '你好 {name}'\nbye: 'Bye'\n")
    with OpApp(env={"LLM_BASE_URL": upstream.base_url}, language="zh"):
        op = greet()
        assert op.prompt_format("greet", name="A") == "你好 A"
        assert op.get_prompt("bye") == "Bye"  # no bye_zh: falls back
        with pytest.raises(KeyError, match="greet") as info:
            op.prompt_format("greet")
        assert "name" in str(info.value)


def test_prompt_path_overrides(app, tmp_path: Path) -> None:
    custom = tmp_path / "custom.yaml"
    custom.write_text("hi: 'custom {who}'\n")
    assert HookOp(prompt_path=str(custom)).prompt_format("hi", who="me") == "custom me"
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        HookOp(prompt_path=str(tmp_path / "nowhere.yaml")).get_prompt("hi")


# -- services ----------------------------------------------------------------------------------------


def test_services_are_lazy_and_shared(app, upstream: FakeUpstream) -> None:
    op = HookOp()
    # self.llm is the adapter of ops.llm over the one client (flowllm's methods, and the client's)
    assert isinstance(op.llm.client, LLMClient) and op.llm is HookOp().llm and op.llm.client is C.llm
    assert op.llm.base_url == upstream.base_url
    vector = run(op.embedding_model.async_embed("hello"))
    assert len(vector) == 8 and upstream.stats()["last_request"]["path"] == "/v1/embeddings"
    assert op.vector_store is C.vector_store


def test_an_op_may_bring_its_own_client(app, upstream: FakeUpstream) -> None:
    with LLMClient(upstream.base_url, model="own", env={}) as own:
        assert HookOp(llm=own).llm.client is own


def test_vector_store_round_trip(app) -> None:
    from ops.vector_store import VectorDoc

    class IndexOp(BaseAsyncOp):
        async def async_execute(self):
            texts = self.context["texts"]
            vectors = await self.embedding_model.async_embed(texts)
            await self.vector_store.async_insert(
                [VectorDoc(id=str(i), content=t, vector=v) for i, (t, v) in enumerate(zip(texts, vectors))])
            query = await self.embedding_model.async_embed(self.context["query"])
            return await self.vector_store.async_search(query, top_k=2)

    hits = run(IndexOp().async_call(texts=["red apple", "blue sky", "green tree"], query="blue sky"))
    assert hits[0].content == "blue sky" and hits[0].score == pytest.approx(1.0)
    assert len(hits) == 2


# -- cache --------------------------------------------------------------------------------------------


class CountingOp(BaseAsyncOp):
    calls: list[str] = []

    async def async_execute(self):
        def compute():
            CountingOp.calls.append(threading.current_thread().name)
            return {"value": self.context["x"]}

        return await self.async_save_load_cache(f"k{self.context['x']}", compute)


def test_cache_runs_sync_functions_on_a_thread_and_namespaces_keys(app) -> None:
    CountingOp.calls = []
    op_kwargs = {"enable_cache": True, "cache_expire_hours": 1}
    assert run(CountingOp(**op_kwargs).async_call(x=1)) == {"value": 1}
    assert run(CountingOp(**op_kwargs).async_call(x=1)) == {"value": 1}
    assert len(CountingOp.calls) == 1 and CountingOp.calls[0] != threading.current_thread().name
    run(CountingOp(name="other_op", **op_kwargs).async_call(x=1))  # another namespace
    assert len(CountingOp.calls) == 2


def test_cache_expire_zero_means_at_once(app) -> None:
    CountingOp.calls = []
    for _ in range(2):
        run(CountingOp(enable_cache=True, cache_expire_hours=0).async_call(x=3))
    assert len(CountingOp.calls) == 2


def test_cache_disabled_always_computes(app) -> None:
    CountingOp.calls = []
    for _ in range(2):
        run(CountingOp().async_call(x=4))
    assert len(CountingOp.calls) == 2


def test_sqlite_cache_is_shared_between_processes(upstream: FakeUpstream, tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "cache.db"
    env = {"LLM_BASE_URL": upstream.base_url, "FLOWBRIDGE_OP_CACHE": f"sqlite:{db}"}
    script = (
        "import asyncio\n"
        "from ops import BaseAsyncOp, OpApp\n"
        "class SlowOp(BaseAsyncOp):\n"
        "    async def async_execute(self):\n"
        "        return await self.async_save_load_cache('k', lambda: 'from child')\n"
        f"with OpApp(env={env!r}):\n"
        "    print(asyncio.run(SlowOp(enable_cache=True, cache_expire_hours=1).async_call()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "from child", done.stderr

    class SlowOp(BaseAsyncOp):
        async def async_execute(self):
            return await self.async_save_load_cache("k", lambda: "from parent")

    with OpApp(env=env):
        assert run(SlowOp(enable_cache=True, cache_expire_hours=1).async_call()) == "from child"


# -- submit / join ------------------------------------------------------------------------------------


class TasksOp(BaseAsyncOp):
    async def async_execute(self):
        async def ok(i):
            await asyncio.sleep(0.01 * (3 - i))
            return i

        async def bad():
            raise ValueError("bad task")

        def plain(x):
            return x * 10

        self.submit_async_task(ok, 0)
        self.submit_async_task(bad)
        self.submit_async_task(plain, 5)
        self.submit_async_task(ok, 2)
        results = await self.join_async_task()
        assert self.task_list == []
        return results


def test_join_keeps_order_and_exceptions(app) -> None:
    results = run(TasksOp().async_call())
    assert results[0] == 0 and isinstance(results[1], ValueError) and results[2:] == [50, 2]


def test_join_timeout_cancels_and_raises(app) -> None:
    cancelled = []

    class SlowTasksOp(BaseAsyncOp):
        async def async_execute(self):
            async def slow():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise

            self.submit_async_task(slow)
            try:
                await self.join_async_task(timeout=0.05)
            finally:
                assert self.task_list == []

    with pytest.raises(asyncio.TimeoutError):
        run(SlowTasksOp().async_call())
    assert cancelled == [True]


def test_join_without_return_exceptions_raises_the_first(app) -> None:
    class FailFastOp(BaseAsyncOp):
        async def async_execute(self):
            async def bad():
                raise KeyError("first")

            self.submit_async_task(bad)
            return await self.join_async_task(return_exceptions=False)

    with pytest.raises(KeyError, match="first"):
        run(FailFastOp().async_call())
