"""OpApp as flowllm's FlowLLMApp: its string arguments, config files and keyword arguments map onto
flowbridge's settings or are refused by name; ``C.thread_pool`` belongs to the service context."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from ops import AppConfigError, C, FlowConfigError, FlowLLMApp, OpApp, configure_services
from tests.fake_upstream import FakeUpstream

SECRET = "sk-test-not-a-real-key-7781"


def test_flowllms_string_form_is_parsed_not_crashed_on() -> None:
    with pytest.raises(AppConfigError, match="'search'"):
        OpApp("config=default,search")
    with OpApp("config=default") as app:
        assert app.context is C and "chat" in C.flows
    assert FlowLLMApp is OpApp


def test_a_config_file_in_flowllms_format(tmp_path: Path) -> None:
    config = tmp_path / "mine.yaml"
    config.write_text(
        "language: zh\n"
        "thread_pool_max_workers: 3\n"
        "llm:\n  default:\n    backend: openai_compatible\n    model_name: model-from-config\n"
        "embedding_model:\n  default:\n    model_name: embed-from-config\n"
        "vector_store:\n  default:\n    backend: memory\n    embedding_model: default\n"
        "flow:\n"
        "  two_lines:\n"
        "    description: a flow on two lines\n"
        "    flow_content: |\n"
        "      chat = ChatOp()\n"
        "      chat\n"
    )
    cases = [
        (OpApp(config_path=str(config)), "model-from-config"),
        (OpApp(f"config={tmp_path / 'mine'}"), "model-from-config"),
        (OpApp(f"c={config}", "llm.default.model_name=model-from-args"), "model-from-args"),
    ]
    for app, model in cases:
        with app:
            assert C.language == "zh" and C.settings.thread_pool_max_workers == 3
            assert C.flows["two_lines"].expression.root_op_name() == "ChatOp" and "chat" in C.flows
            assert C.llm.settings.embedding_model == "embed-from-config"
            assert C.llm.settings.model == model


def test_later_sources_win(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("language: en\nthread_pool_max_workers: 2\n")
    (tmp_path / "b.yaml").write_text("language: fr\n")
    app = OpApp(f"config={tmp_path / 'a'},{tmp_path / 'b.yaml'}", "thread_pool_max_workers=5", language="de")
    assert app.overrides == {"language": "de", "thread_pool_max_workers": 5}
    assert OpApp(llm__default__model_name="m2").env["LLM_MODEL"] == "m2"


def test_api_key_and_base_reach_the_client_and_not_the_process(upstream: FakeUpstream) -> None:
    with OpApp(llm_api_key=SECRET, llm_api_base=upstream.base_url, embedding_api_base=upstream.base_url,
               embedding_api_key=SECRET):
        assert C.llm.chat("hello")
    assert upstream.stats()["last_request"]["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert "LLM_API_KEY" not in os.environ and "LLM_BASE_URL" not in os.environ


@pytest.mark.parametrize(("args", "kwargs", "named"), [
    (("backend=http",), {}, "backend"),
    (("http.port=8002",), {}, "http"),
    (("mcp.transport=sse",), {}, "mcp"),
    ((), {"service_config": {}}, "service_config"),
    ((), {"parser": "x"}, "parser"),
    (("llm.qwen3_30b_instruct.model_name=q",), {}, "llm.qwen3_30b_instruct"),
    (("llm.default.params={\"temperature\": 0.6}",), {}, "llm.default.params"),
    (("llm.default.backend=litellm",), {}, "llm.default.backend"),
    (("vector_store.default.backend=elasticsearch",), {}, "vector_store.default.backend"),
    (("just-a-word",), {}, "just-a-word"),
    ((), {"embedding_api_base": "http://elsewhere/v1"}, "embedding_api_base"),
    ((), {"embedding_api_key": "other-key", "llm_api_key": SECRET}, "embedding_api_key"),
])
def test_what_has_no_meaning_here_is_refused_by_name(args: tuple, kwargs: dict, named: str) -> None:
    with pytest.raises(AppConfigError) as info:
        OpApp(*args, **kwargs)
    assert named in str(info.value) and SECRET not in str(info.value)


def test_flowllm_flow_options_flowbridge_lacks_are_named(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("flow:\n  cached:\n    flow_content: ChatOp()\n    enable_cache: true\n")
    with pytest.raises(FlowConfigError, match="enable_cache"):
        OpApp(config_path=str(config)).start()
    with pytest.raises(AppConfigError, match="nope.yaml"):
        OpApp(config_path=str(tmp_path / "nope.yaml"))


def test_enabled_and_disabled_flows() -> None:
    with OpApp(enabled_flows=["chat", "summarize"]):
        assert set(C.flows) == {"chat", "summarize"}
    with OpApp("disabled_flows=[\"chat\"]"):
        assert "chat" not in C.flows and "summarize" in C.flows
    with pytest.raises(AppConfigError, match="no_such_flow"):
        OpApp(enabled_flows=["no_such_flow"]).start()


def test_configure_services_names_unknown_settings() -> None:
    with pytest.raises(AppConfigError, match="config_path"):
        configure_services({}, config_path="x.yaml")


def test_the_env_mapping_may_still_come_first() -> None:
    with OpApp({"LLM_MODEL": "positional-env"}):
        assert C.llm.settings.model == "positional-env"


# -- C.thread_pool ---------------------------------------------------------------------------------------


def test_thread_pool_runs_blocking_work_and_closes_with_the_app() -> None:
    caller = threading.get_ident()

    async def use_it() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ident = await loop.run_in_executor(C.thread_pool, threading.get_ident)  # as flowllm's ExecuteCodeOp
        return ident, C.thread_pool.submit(lambda: 6 * 7).result(timeout=10)

    with OpApp(thread_pool_max_workers=2):
        pool = C.thread_pool
        assert C.thread_pool is pool
        ident, answer = asyncio.run(use_it())
        assert ident != caller and answer == 42
    with pytest.raises(RuntimeError):
        pool.submit(print)  # shut down with the app
    with OpApp():
        assert C.thread_pool is not pool and C.thread_pool.submit(lambda: "new").result(timeout=10) == "new"


def test_closing_waits_for_submitted_work() -> None:
    started, release, done = threading.Event(), threading.Event(), []

    def work() -> None:
        started.set()
        release.wait(10)
        done.append(True)

    app = OpApp().start()
    C.thread_pool.submit(work)
    assert started.wait(10)
    threading.Timer(0.05, release.set).start()
    app.stop()
    assert done == [True]


def test_a_bad_pool_size_is_named() -> None:
    with pytest.raises(ValueError, match="thread_pool_max_workers"):
        OpApp(thread_pool_max_workers=0).start()


def test_an_op_fans_blocking_work_out_on_the_pool() -> None:
    from ops import BaseOp

    class SquaresOp(BaseOp):
        def execute(self):
            for n in self.context["numbers"]:
                self.submit_task(lambda n=n: (threading.get_ident(), n * n))
            return self.join_task("squares", timeout=30)

    class BrokenOp(BaseOp):
        def execute(self):
            self.submit_task(lambda: 1).submit_task(lambda: 1 / 0)
            return self.join_task()

    with OpApp(thread_pool_max_workers=4):
        results = SquaresOp().call(numbers=[1, 2, 3, 0])
        assert [square for _ident, square in results] == [1, 4, 9, 0]  # in order, falsy kept
        assert threading.get_ident() not in {ident for ident, _square in results}
        with pytest.raises(ZeroDivisionError):
            BrokenOp().call()


def test_execute_flow_as_flowllms_application(upstream: FakeUpstream) -> None:
    with OpApp(llm_api_base=upstream.base_url, disabled_flows=["stream_chat"]) as app:
        response = app.execute_flow("summarize", text="The quick brown fox jumps over the lazy dog.")
        assert response.success and response.answer
        assert asyncio.run(OpApp.async_execute_flow("summarize", text="Hello there.")).answer
        with pytest.raises(KeyError, match="stream_chat"):
            app.execute_flow("stream_chat", query="hi")
    with OpApp(llm_api_base=upstream.base_url) as app:
        with pytest.raises(ValueError, match="streams"):
            app.execute_flow("stream_chat", query="hi")
