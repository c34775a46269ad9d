"""The gallery ops (ops/gallery) against the fake OpenAI upstream: inputs, outputs, prompts, errors."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import ops.gallery
from ops import BaseAsyncToolOp, C, FlowContext, FlowResponse, OpApp
from ops.gallery import (
    ChatOp,
    EchoToolOp,
    ExtractJsonOp,
    IndexDocumentsOp,
    RetrieveOp,
    StreamChatOp,
    SummarizeOp,
    TranslateOp,
    extract_json,
)
from ops.gallery import extract_json_op as extract_json_module
from tests.fake_upstream import FakeUpstream

GALLERY = Path(ops.gallery.__file__).parent


def prompts(name: str) -> dict[str, str]:
    return yaml.safe_load((GALLERY / f"{name}_prompt.yaml").read_text(encoding="utf-8"))


def run(upstream: FakeUpstream, body: Callable[[], Awaitable[Any]], **app_options: Any) -> Any:
    """Run ``body()`` inside an OpApp pointed at the fake upstream."""

    async def main() -> Any:
        async with OpApp(env={"LLM_BASE_URL": upstream.base_url}, **app_options):
            return await body()

    return asyncio.run(main())


def call(upstream: FakeUpstream, op: Any, context: FlowContext | None = None, **app_options: Any) -> FlowContext:
    """Run ``op`` on ``context`` (a new one by default); returns the context."""
    context = context if context is not None else FlowContext()

    async def body() -> FlowContext:
        await op.async_call(context=context)
        return context

    return run(upstream, body, **app_options)


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    """The JSON body of the last request the upstream saw."""
    return upstream.stats()["last_request"]["json"]


def chat_bodies(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [r["json"] for r in upstream.stats()["requests_log"] if r["path"].endswith("/chat/completions")]


# -- the package -------------------------------------------------------------------------------


def test_every_gallery_op_is_a_registered_tool_op() -> None:
    assert ops.gallery.__all__ == sorted(ops.gallery.__all__)
    names = [name for name in ops.gallery.__all__ if name.endswith("Op")]
    assert {"ChatOp", "EchoToolOp", "ExecuteCodeOp", "ExtractJsonOp", "GenSystemPromptOp", "IndexDocumentsOp",
            "MockSearchOp", "RetrieveOp", "StreamChatOp", "SummarizeOp", "ThinkToolOp", "TokenCountOp",
            "TranslateOp"} <= set(names)
    classes = [getattr(ops.gallery, name) for name in names]
    for cls in classes:
        assert issubclass(cls, BaseAsyncToolOp)
        assert C._builtin_ops[cls.__name__] is cls
        tool = cls().tool_call.simple_input_dump()
        assert tool["function"]["description"] and tool["function"]["parameters"]["properties"]


@pytest.mark.parametrize("path", sorted(GALLERY.glob("*_prompt.yaml")), ids=lambda p: p.name)
def test_prompt_files_have_a_chinese_variant_of_every_prompt(path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert (GALLERY / path.name.replace("_prompt.yaml", "_op.py")).exists()
    assert data and all(isinstance(v, str) and v.strip() for v in data.values())
    base = [key for key in data if not key.endswith("_zh")]
    assert base and sorted(f"{key}_zh" for key in base) == sorted(key for key in data if key.endswith("_zh"))


# -- ChatOp -------------------------------------------------------------------------------------


def test_chat_query(upstream: FakeUpstream) -> None:
    ctx = call(upstream, ChatOp(), FlowContext(query="What is 2+2?"))
    body = sent(upstream)
    assert body["messages"] == [
        {"role": "system", "content": prompts("chat")["system_prompt"].strip()},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert (body["temperature"], body["max_tokens"]) == (0.7, 256)
    assert ctx["chat_result"] == ctx.response.answer == "echo: What is 2+2?"
    # the fake counts words as tokens
    prompt_tokens = len(body["messages"][0]["content"].split()) + 3
    assert ctx.response.metadata["model"] == "fake-model"
    assert ctx.response.metadata["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 4,
                                              "total_tokens": prompt_tokens + 4}


def test_chat_params_system_prompt_and_stripping(upstream: FakeUpstream) -> None:
    upstream.configure(reply="  padded answer \n")
    ctx = call(upstream, ChatOp(temperature=0, max_tokens=12), FlowContext(query="q", system_prompt="Be terse."))
    body = sent(upstream)
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert (body["temperature"], body["max_tokens"]) == (0, 12)
    assert ctx.response.answer == "padded answer"


def test_chat_messages(upstream: FakeUpstream) -> None:
    conversation = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    ctx = call(upstream, ChatOp(), FlowContext(messages=conversation))
    assert sent(upstream)["messages"][1:] == conversation
    assert sent(upstream)["messages"][0]["role"] == "system"
    assert ctx.response.answer == "echo: What is my name?"
    # a conversation with its own system message gets no default one
    own = [{"role": "system", "content": "Speak like a pirate."}, *conversation]
    call(upstream, ChatOp(), FlowContext(messages=own))
    assert sent(upstream)["messages"] == own


def test_chat_in_chinese(upstream: FakeUpstream) -> None:
    call(upstream, ChatOp(), FlowContext(query="你好"), language="zh")
    system = sent(upstream)["messages"][0]["content"]
    assert system == prompts("chat")["system_prompt_zh"].strip() and "助手" in system


@pytest.mark.parametrize(("inputs", "match"), [
    ({}, r"exactly one of 'query' or 'messages' \(got neither\)"),
    ({"query": "  "}, "got neither"),
    ({"query": "q", "messages": [{"role": "user", "content": "m"}]}, r"\(got both\)"),
    ({"query": 5}, "'query' must be a string"),
    ({"messages": "hi"}, "'messages' must be a list"),
    ({"messages": ["hi"]}, r"messages\[0\] must be an object"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}, r"messages\[1\]\.role"),
    ({"messages": [{"role": "user", "content": None}]}, r"messages\[0\]\.content must be a string"),
    ({"query": "q", "system_prompt": 1}, "'system_prompt' must be a string"),
])
def test_chat_input_errors(upstream: FakeUpstream, inputs: dict[str, Any], match: str) -> None:
    for cls in (ChatOp, StreamChatOp):
        with pytest.raises(ValueError, match=match):
            call(upstream, cls(), FlowContext(**inputs))
    assert upstream.stats()["requests"] == 0


@pytest.mark.parametrize("kwargs", [{"temperature": 3}, {"temperature": "hot"}, {"max_tokens": 0},
                                    {"max_tokens": True}, {"max_tokens": 1.5}])
def test_chat_params_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ChatOp(**kwargs)


def test_chat_tool_schema() -> None:
    function = ChatOp().tool_call.simple_input_dump()["function"]
    assert function["name"] == "chat"
    assert set(function["parameters"]["properties"]) == {"query", "messages", "system_prompt"}
    assert function["parameters"]["required"] == []
    assert ChatOp().output_keys == "chat_result" and StreamChatOp().output_keys == "stream_chat_result"


# -- StreamChatOp -------------------------------------------------------------------------------


def test_stream_chat_sends_each_delta(upstream: FakeUpstream) -> None:
    upstream.configure(reply="one two three")
    queue: asyncio.Queue = asyncio.Queue()
    ctx = call(upstream, StreamChatOp(max_tokens=50), FlowContext(query="count", stream_queue=queue))
    chunks = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [c.chunk for c in chunks] == ["one", " two", " three"]
    # flowllm's chunk kind; the SSE routes send it as a ``content`` event
    assert all(c.chunk_type == "answer" and c.event_type == "content" and c.flow_id == ctx.flow_id and not c.done
               for c in chunks)
    assert ctx["stream_chat_result"] == ctx.response.answer == "one two three"
    body = sent(upstream)
    assert body["stream"] is True and body["max_tokens"] == 50
    assert body["messages"][-1] == {"role": "user", "content": "count"}
    assert upstream.wait_for(lambda s: s["streams_completed"] == 1)  # counted just after the last byte


def test_stream_chat_without_a_queue_collects_the_answer(upstream: FakeUpstream) -> None:
    ctx = call(upstream, StreamChatOp(), FlowContext(messages=[{"role": "user", "content": "hi there"}]))
    assert not ctx.streaming and ctx.response.answer == "echo: hi there"


# -- SummarizeOp --------------------------------------------------------------------------------


def test_summarize_text(upstream: FakeUpstream) -> None:
    upstream.configure(reply=" A short summary. ")
    ctx = call(upstream, SummarizeOp(), FlowContext(text="Long {braced} text about cats."))
    body = sent(upstream)
    prompt = body["messages"][-1]["content"]
    assert prompt == (
        "Summarize the text below in at most 100 words.\n"
        "Keep the key facts, names and numbers; do not add anything that is not in the text.\n"
        "Write the summary in the same language as the text.\n"
        "Reply with the summary only, without a title or preamble.\n"
        "\n"
        "Text:\n"
        "Long {braced} text about cats.\n"
    )
    assert (body["temperature"], body["max_tokens"]) == (0.2, 464)
    assert ctx["summarize_result"] == ctx.response.answer == "A short summary."


def test_summarize_language_and_words(upstream: FakeUpstream) -> None:
    call(upstream, SummarizeOp(max_words=20, language="French"), FlowContext(text="Some text."))
    prompt = sent(upstream)["messages"][-1]["content"]
    assert "at most 20 words" in prompt and "Write the summary in French." in prompt
    assert "same language" not in prompt and "[" not in prompt


def test_summarize_in_chinese(upstream: FakeUpstream) -> None:
    call(upstream, SummarizeOp(max_words=20), FlowContext(text="一些文本。"), language="zh")
    prompt = sent(upstream)["messages"][-1]["content"]
    assert "概括" in prompt and "20" in prompt and "相同的语言" in prompt and "一些文本。" in prompt


def test_summarize_the_previous_answer(upstream: FakeUpstream) -> None:
    ctx = call(upstream, ChatOp() >> SummarizeOp(max_words=30), FlowContext(query="hello"))
    first, second = chat_bodies(upstream)
    assert first["messages"][-1]["content"] == "hello"
    assert second["messages"][-1]["content"].endswith("Text:\necho: hello\n")
    assert ctx["chat_result"] == "echo: hello"
    assert ctx.response.answer == ctx["summarize_result"] and ctx.response.answer.startswith("echo: Summarize")
    # the usage of both calls adds up
    usage = ctx.response.metadata["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 30


def test_summarize_needs_text_or_an_answer(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="^SummarizeOp needs 'text' or a previous answer$"):
        call(upstream, SummarizeOp())
    failed = FlowResponse(answer="ValueError: boom", success=False)
    with pytest.raises(ValueError, match="needs 'text' or a previous answer"):
        call(upstream, SummarizeOp(), FlowContext(response=failed))
    with pytest.raises(ValueError, match="'text' must be a string"):
        call(upstream, SummarizeOp(), FlowContext(text=["a"]))
    assert upstream.stats()["requests"] == 0


@pytest.mark.parametrize("max_words", [0, -5, True, "10", 2.5])
def test_summarize_max_words_is_checked(max_words: Any) -> None:
    with pytest.raises(ValueError, match="max_words must be an integer > 0"):
        SummarizeOp(max_words=max_words)


# -- TranslateOp --------------------------------------------------------------------------------


def test_translate(upstream: FakeUpstream) -> None:
    upstream.configure(reply="Bonjour le monde\n")
    ctx = call(upstream, TranslateOp(), FlowContext(text="Hello world"))
    prompt = sent(upstream)["messages"][-1]["content"]
    assert prompt.startswith("Translate the text below into English.")
    assert "translation only" in prompt and prompt.endswith("Text:\nHello world\n")
    assert ctx["translate_result"] == ctx.response.answer == "Bonjour le monde"


def test_translate_target_language_input_beats_the_param(upstream: FakeUpstream) -> None:
    call(upstream, TranslateOp(to="German"), FlowContext(text="Hello"))
    assert "into German." in sent(upstream)["messages"][-1]["content"]
    call(upstream, TranslateOp(to="German"), FlowContext(text="Hello", target_language="Japanese"))
    assert "into Japanese." in sent(upstream)["messages"][-1]["content"]


def test_translate_the_previous_answer_in_chinese(upstream: FakeUpstream) -> None:
    context = FlowContext(response=FlowResponse(answer="Guten Tag"))
    ctx = call(upstream, TranslateOp(to="中文"), context, language="zh")
    prompt = sent(upstream)["messages"][-1]["content"]
    assert prompt.startswith("请把下面的文本翻译成中文。") and "Guten Tag" in prompt
    assert ctx.response.answer.startswith("echo: 请把")


def test_translate_errors(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="^TranslateOp needs 'text' or a previous answer$"):
        call(upstream, TranslateOp())
    with pytest.raises(ValueError, match="'target_language' must be a string"):
        call(upstream, TranslateOp(), FlowContext(text="x", target_language=3))
    for bad in ("", "  ", None):
        with pytest.raises(ValueError, match="to must name a language"):
            TranslateOp(to=bad)


# -- extract_json / ExtractJsonOp ---------------------------------------------------------------


@pytest.mark.parametrize("spaces", ["", " ", "  ", "   "])
def test_extract_json_fenced_block(spaces: str) -> None:
    text = f'Here you go:\n```{spaces}json\n{{"a": 1, "b": [true, null]}}\n```\nAnything else?'
    assert extract_json(text) == {"a": 1, "b": [True, None]}


@pytest.mark.parametrize(("text", "expected"), [
    ('```JSON\n{"upper": true}\n```', {"upper": True}),
    ('```\n[1, 2]\n```', [1, 2]),  # an untagged block
    ('```python\n{"x": 1}\n```\n```json\n{"y": 2}\n```', {"y": 2}),  # a json block first
    ('```python\nprint("hi")\n```\nThen: {"z": 3}', {"z": 3}),  # a block that is not JSON
    ('```json {"inline": 1}```', {"inline": 1}),
    ('```json\n{"truncated": [1, 2]}', {"truncated": [1, 2]}),  # the fence never closed
    ('  {"whole": "text"}\n', {"whole": "text"}),
    ('[{"a": 1}, {"b": 2}]', [{"a": 1}, {"b": 2}]),
    ('Sure! {"a": {"b": [1, 2]}, "s": "}{]["} Hope that helps.', {"a": {"b": [1, 2]}, "s": "}{]["}),
    ('Escapes: {"q": "say \\"hi\\" {", "p": "C:\\\\"} end', {"q": 'say "hi" {', "p": "C:\\"}),
    ('set {x} to {"a": 1}', {"a": 1}),  # a brace that does not start JSON is skipped
    ('values: [1, 2, 3].', [1, 2, 3]),
    ('see [1] and {"a": 1}', [1]),  # the first JSON wins
    ('{"a": 1,} or maybe {"a": 2}', {"a": 2}),
    ('结果：{"名字": "张三"}', {"名字": "张三"}),
])
def test_extract_json_finds_it(text: str, expected: Any) -> None:
    assert extract_json(text) == expected


@pytest.mark.parametrize("text", [
    "Plain text without any JSON at all.",
    "```json\n{'single': 'quotes'}\n```",  # invalid JSON
    "```json\n42\n```",  # a scalar is not an object or array
    '"just a string"',
    "{unclosed: [1, 2",
    "",
])
def test_extract_json_failures(text: str) -> None:
    with pytest.raises(ValueError, match="no JSON object or array found in the text"):
        extract_json(text)


def test_extract_json_error_quotes_80_chars() -> None:
    text = "word " * 40
    with pytest.raises(ValueError) as info:
        extract_json(text)
    assert repr(text.strip()[:80]) in str(info.value) and text.strip()[:81] not in str(info.value)


def test_extract_json_bounds_hostile_input() -> None:
    with pytest.raises(ValueError, match="gave up after 1000 brackets"):
        extract_json("[" * 150_000)
    with pytest.raises(ValueError, match="at most 200000"):
        extract_json("{" * (extract_json_module.MAX_TEXT_CHARS + 1))
    with pytest.raises(ValueError, match="takes a string"):
        extract_json(None)  # type: ignore[arg-type]


def test_extract_json_op_without_the_llm(upstream: FakeUpstream) -> None:
    ctx = call(upstream, ExtractJsonOp(), FlowContext(text='Result: ```json\n{"ok": true}\n```'))
    assert ctx["extract_json_result"] == ctx.response.answer == {"ok": True}
    assert upstream.stats()["requests"] == 0


def test_extract_json_op_with_an_instruction(upstream: FakeUpstream) -> None:
    upstream.configure(reply='Here:\n```json\n{"people": ["Ada", "Alan"]}\n```')
    ctx = call(upstream, ExtractJsonOp(), FlowContext(text="Ada met Alan.", instruction="the people, as a list"))
    body = sent(upstream)
    prompt = body["messages"][-1]["content"]
    assert "produce JSON for this request: the people, as a list" in prompt and prompt.endswith("Ada met Alan.\n")
    assert (body["temperature"], body["max_tokens"]) == (0, 1024)
    assert ctx.response.answer == {"people": ["Ada", "Alan"]}
    call(upstream, ExtractJsonOp(), FlowContext(text="x", instruction="y"), language="zh")
    assert "生成 JSON：y" in sent(upstream)["messages"][-1]["content"]


def test_extract_json_op_reads_the_previous_answer(upstream: FakeUpstream) -> None:
    upstream.configure(reply='{"answer": 42}')
    ctx = call(upstream, ChatOp() >> ExtractJsonOp(), FlowContext(query="json please"))
    assert ctx.response.answer == {"answer": 42}


def test_extract_json_op_failures(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="no JSON object or array found in the text: 'no json here'"):
        call(upstream, ExtractJsonOp(), FlowContext(text="no json here"))
    upstream.configure(reply="Sorry, I cannot do that.")
    with pytest.raises(ValueError, match="found in the text: 'Sorry, I cannot do that.'"):
        call(upstream, ExtractJsonOp(), FlowContext(text='{"a": 1}', instruction="the b field"))
    with pytest.raises(ValueError, match="^ExtractJsonOp needs 'text' or a previous answer$"):
        call(upstream, ExtractJsonOp())


# -- IndexDocumentsOp / RetrieveOp --------------------------------------------------------------

DOCS: list[Any] = [
    "The cat sleeps on the warm windowsill.",
    {"id": "dogs", "content": "Dogs bark at the mail carrier.", "metadata": {"topic": "pets"}},
    {"content": "Rain is expected in Paris tomorrow."},
]


def test_index_then_retrieve_by_exact_text(upstream: FakeUpstream) -> None:
    async def body() -> tuple[FlowContext, FlowContext, int]:
        indexed = FlowContext(documents=DOCS)
        await IndexDocumentsOp().async_call(context=indexed)
        found = FlowContext(query="Dogs bark at the mail carrier.")
        await RetrieveOp().async_call(context=found)
        return indexed, found, len(C.vector_store)

    indexed, found, stored = run(upstream, body)
    first, third = (hashlib.sha1(text.encode()).hexdigest()[:12] for text in (DOCS[0], DOCS[2]["content"]))
    assert indexed["index_documents_result"] == 3 and indexed.response.answer == "3" and stored == 3
    assert indexed.response.metadata["indexed_ids"] == [first, "dogs", third]
    hits = found["retrieve_result"]
    assert found.response.answer == hits and len(hits) == 3
    assert hits[0]["id"] == "dogs" and hits[0]["score"] == pytest.approx(1.0)
    assert hits[0] == {"id": "dogs", "content": DOCS[1]["content"], "score": hits[0]["score"],
                       "metadata": {"topic": "pets"}}
    assert hits[0]["score"] > hits[1]["score"] >= hits[2]["score"]


def test_retrieve_top_k_and_batches(upstream: FakeUpstream) -> None:
    async def body() -> list[FlowContext]:
        await IndexDocumentsOp(batch_size=2).async_call(documents=DOCS)
        await IndexDocumentsOp().async_call(documents=[DOCS[0]])  # the same id again: replaced
        contexts = [FlowContext(query=DOCS[0], top_k=1), FlowContext(query=DOCS[0])]
        await RetrieveOp().async_call(context=contexts[0])
        await RetrieveOp(top_k=2).async_call(context=contexts[1])
        assert len(C.vector_store) == 3
        return contexts

    one, two = run(upstream, body)
    assert [h["content"] for h in one["retrieve_result"]] == [DOCS[0]]
    assert len(two["retrieve_result"]) == 2
    # 2 + 1 texts in batches of 2, then 1 text, then 2 queries
    assert upstream.stats()["by_path"]["/v1/embeddings"] == 5


def test_retrieve_and_answer(upstream: FakeUpstream) -> None:
    async def body() -> FlowContext:
        await IndexDocumentsOp().async_call(documents=DOCS)
        context = FlowContext(query="Where will it rain?")
        await RetrieveOp(top_k=2, answer=True).async_call(context=context)
        return context

    upstream.configure(reply="In Paris [1].")
    ctx = run(upstream, body)
    prompt = sent(upstream)["messages"][-1]["content"]
    assert prompt.startswith("Answer the question using only the numbered passages below.")
    assert "[1] " in prompt and "[2] " in prompt and "[3] " not in prompt
    assert prompt.rstrip().endswith("Question: Where will it rain?")
    assert ctx.response.answer == ctx["answer"] == "In Paris [1]."
    assert len(ctx["retrieve_result"]) == 2
    assert RetrieveOp(answer=True).output_keys == ["retrieve_result", "answer"]


def test_retrieve_answer_with_nothing_indexed_skips_the_llm(upstream: FakeUpstream) -> None:
    ctx = call(upstream, RetrieveOp(answer=True), FlowContext(query="anything"), language="zh")
    assert ctx["retrieve_result"] == [] and ctx.response.answer == prompts("retrieve")["no_passages_zh"].strip()
    assert upstream.stats()["by_path"] == {"/v1/embeddings": 1}


@pytest.mark.parametrize(("documents", "match"), [
    ("one doc", "'documents' must be a list"),
    ([1], r"documents\[0\] must be a string or"),
    (["ok", "  "], r"documents\[1\] needs a non-empty string 'content'"),
    ([{"id": 5, "content": "x"}], r"documents\[0\]\.id must be a non-empty string"),
    ([{"content": "x", "metadata": []}], r"documents\[0\]\.metadata must be an object"),
])
def test_index_documents_errors(upstream: FakeUpstream, documents: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(upstream, IndexDocumentsOp(), FlowContext(documents=documents))
    assert upstream.stats()["requests"] == 0


def test_retrieve_errors(upstream: FakeUpstream) -> None:
    with pytest.raises(ValueError, match="input 'query' is required"):
        call(upstream, RetrieveOp())
    for top_k in (0, True, "2"):
        with pytest.raises(ValueError, match="'top_k' must be an integer > 0"):
            call(upstream, RetrieveOp(), FlowContext(query="q", top_k=top_k))
    with pytest.raises(ValueError, match="top_k must be an integer > 0"):
        RetrieveOp(top_k=0)
    with pytest.raises(ValueError, match="answer must be true or false"):
        RetrieveOp(answer="yes")


# -- EchoToolOp ---------------------------------------------------------------------------------


def test_echo_tool(upstream: FakeUpstream) -> None:
    ctx = call(upstream, EchoToolOp(), FlowContext(text="hello"))
    assert ctx["echo_tool_result"] == ctx.response.answer == "Echo: hello"
    function = EchoToolOp().tool_call.simple_input_dump()["function"]
    assert function["parameters"]["required"] == ["text"]
    assert function["parameters"]["properties"]["text"]["type"] == "string"
    with pytest.raises(ValueError, match="input 'text' is required"):
        call(upstream, EchoToolOp())
