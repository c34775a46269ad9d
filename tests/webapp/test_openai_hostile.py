"""``/v1`` (the OpenAI API) and ``/mcp`` under hostile and broken input, as an attacker or a broken legacy
client sends it: every bad request is a 4xx whose JSON body names the problem (OpenAI's
``{"error": {"message", "type", "param", "code"}}`` on ``/v1``, JSON-RPC's error on ``/mcp``), never a 500
or a traceback in the log, and no API key shows in a response or the log.

"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.fake_upstream import FakeUpstream
from webapp import create_app
from webapp.extensions import close_llm_client, close_workflow_runtime

# app and client: tests/webapp/conftest.py (the fake upstream, an in-memory task store, no API keys)

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
MCP = "/mcp"
HI = [{"role": "user", "content": "hi"}]
JSON = {"Content-Type": "application/json"}
MCP_HEADERS = {**JSON, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
DEEP_ARRAY = "[" * 1100 + "]" * 1100
DEEP_OBJECT = '{"a":' * 1100 + "1" + "}" * 1100
_UNSET = object()


@pytest.fixture
def model(app: Flask) -> str:
    """The upstream model's name (LLM_MODEL's default)."""
    return app.extensions["flowbridge"]["settings"].model


def raw_chat(client: FlaskClient, body: str | bytes, **headers: str) -> TestResponse:
    return client.post(CHAT, data=body, headers={**JSON, **headers})


def chat(client: FlaskClient, model: str, **fields: Any) -> TestResponse:
    return raw_chat(client, json.dumps({"model": model, "messages": HI, **fields}))


def with_field(model: str, field: str, value_json: str) -> str:
    """A chat body whose ``field`` is the raw JSON text ``value_json`` (for what json.dumps cannot write)."""
    return '{"model": %s, "messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (
        json.dumps(model), field, value_json)


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, "logged: " + "; ".join(f"{r.name}: {r.getMessage()}" for r in bad)


def openai_error(response: TestResponse, status: int, *needles: str, param: Any = _UNSET,
                 code: str | None = None) -> dict[str, Any]:
    """The OpenAI error of ``response``: its status, exactly OpenAI's four keys, a message holding each needle."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{response.status_code}: {text[:600]}"
    assert response.mimetype == "application/json", text[:300]
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    error = body["error"]
    assert error["message"] and error["type"] == ("server_error" if status >= 500 else error["type"])
    for needle in needles:
        assert needle in error["message"], f"{needle!r} not in {error['message']!r}"
    if param is not _UNSET:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def ok_completion(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)[:600]
    body = response.get_json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    return body


# -- the body itself -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "needle"), [
    (b"", "not valid JSON"),
    (b"   ", "not valid JSON"),
    (b"not json", "not valid JSON"),
    (b'{"model":', "not valid JSON"),
    (b'{"model": "m", "messages": []} trailing', "Extra data"),
    (b"[]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b"5", "must be a JSON object"),
    (b"true", "must be a JSON object"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "not valid UTF-8"),
    (b'{"model": "m", "messages": [{"role": "user", "content": "\xc0\xaf"}]}', "not valid UTF-8"),
    (gzip.compress(b'{"model": "m"}'), "not valid UTF-8"),  # Content-Encoding is not supported
])
def test_a_broken_body_is_a_400_naming_it(client: FlaskClient, caplog: pytest.LogCaptureFixture, body: bytes,
                                          needle: str) -> None:
    for path in (CHAT, EMBED):
        openai_error(client.post(path, data=body, headers=JSON), 400, needle)
    no_traceback(caplog)


def test_a_null_body_is_not_called_invalid_json(client: FlaskClient) -> None:
    openai_error(client.post(CHAT, data=b"null", headers=JSON), 400, "must be a JSON object")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_that_is_not_declared_json_is_a_415(client: FlaskClient, model: str, content_type: str | None) -> None:
    body = json.dumps({"model": model, "messages": HI})
    headers = {"Content-Type": content_type} if content_type else {}
    for path in (CHAT, EMBED):
        openai_error(client.post(path, data=body, headers=headers), 415, "Content-Type: application/json",
                     code="unsupported_media_type")


def test_json_content_types_with_parameters_a_bom_or_utf16_are_read(client: FlaskClient, model: str) -> None:
    body = json.dumps({"model": model, "messages": HI})
    ok_completion(client.post(CHAT, data=body, headers={"Content-Type": "application/json; charset=latin-1"}))
    ok_completion(client.post(CHAT, data=body, headers={"Content-Type": "application/vnd.api+json"}))
    ok_completion(raw_chat(client, b"\xef\xbb\xbf" + body.encode()))
    ok_completion(raw_chat(client, body.encode("utf-16")))
    ok_completion(raw_chat(client, body + "\n\n"))


def test_a_body_over_max_content_length_is_a_413_in_openai_shape(app: Flask, client: FlaskClient, model: str) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    big = json.dumps({"model": model, "messages": [{"role": "user", "content": "a" * (limit + 10)}]})
    openai_error(raw_chat(client, big), 413, param=None, code="request_entity_too_large")
    # chunked (no Content-Length, as gunicorn passes it: wsgi.input_terminated): a body under the limit is read
    small = json.dumps({"model": model, "messages": HI}).encode()
    ok_completion(client.post(CHAT, input_stream=io.BytesIO(small), headers=CHUNKED, environ_overrides=TERMINATED))


CHUNKED = {"Transfer-Encoding": "chunked", **JSON}
TERMINATED = {"wsgi.input_terminated": True}  # what gunicorn sets on every request


@pytest.mark.parametrize("path", [CHAT, EMBED])
def test_a_chunked_body_over_max_content_length_is_a_413(app: Flask, client: FlaskClient, model: str,
                                                         path: str) -> None:
    big = json.dumps({"model": model, "messages": HI, "input": "a" * (app.config["MAX_CONTENT_LENGTH"] + 10)})
    response = client.post(path, input_stream=io.BytesIO(big.encode()), headers=CHUNKED,
                           environ_overrides=TERMINATED)
    openai_error(response, 413, code="request_entity_too_large")


# -- nesting, numbers, surrogates ---------------------------------------------------------------------------------

@pytest.mark.parametrize("deep", [DEEP_ARRAY, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize("where", ["messages", "content", "tool_calls", "tools", "response_format", "logit_bias",
                                   "metadata", "unknown_field"])
def test_json_nested_1100_levels_anywhere_is_a_400(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                   model: str, where: str, deep: str) -> None:
    if where == "content":
        body = '{"model": "%s", "messages": [{"role": "user", "content": %s}]}' % (model, deep)
    elif where == "tool_calls":
        body = '{"model": "%s", "messages": [{"role": "assistant", "content": null, "tool_calls": %s}]}' % (
            model, deep)
    else:
        body = with_field(model, where, deep)
    openai_error(raw_chat(client, body), 400, "nested too deeply", code="invalid_json")
    no_traceback(caplog)


def test_nesting_under_the_limit_in_a_tool_schema_is_fine(client: FlaskClient, model: str) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(55):  # 110 levels of objects
        schema = {"type": "object", "properties": {"a": schema}}
    ok_completion(chat(client, model, tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}]))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_a_400_naming_them(client: FlaskClient, model: str, literal: str) -> None:
    for field in ("temperature", "top_p", "logit_bias"):
        value = literal if field != "logit_bias" else '{"50256": %s}' % literal
        openai_error(raw_chat(client, with_field(model, field, value)), 400, literal.lstrip("-"),
                     code="invalid_json")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("temperature", "1e400", "1e400 is too large"),
    ("temperature", "-1e400", "1e400 is too large"),
    ("temperature", "true", "valid number"),
    ("top_p", "1e400", "1e400 is too large"),
    ("presence_penalty", "1e400", "1e400 is too large"),
    ("frequency_penalty", "-1e400", "1e400 is too large"),
    ("max_tokens", str(10**30), "less than or equal to 1000000"),
    ("max_tokens", "1e400", "1e400 is too large"),
    ("max_tokens", "-0", "greater than or equal to 1"),
    ("max_tokens", "1.0", "valid integer"),
    ("max_completion_tokens", str(10**30), "less than or equal to 1000000"),
    ("n", str(10**30), "n=1000000000000000000000000000000"),
    ("n", "1e400", "1e400 is too large"),
    ("n", "true", "n=True"),
    ("n", '"1"', "n='1'"),
    ("n", "-0", "n=0"),
    ("seed", "1e400", "1e400 is too large"),
    ("seed", "1.5", "valid integer"),
    ("logit_bias", '{"1": "x"}', "logit_bias.1"),
    ("logit_bias", "[1]", "valid dictionary"),
])
def test_numbers_out_of_range_or_of_the_wrong_type_name_the_field(client: FlaskClient, model: str, field: str,
                                                                  value: str, needle: str) -> None:
    # a number past the float range is refused as the body is parsed, before its field is known
    beyond = value.endswith("1e400")
    openai_error(raw_chat(client, with_field(model, field, value)), 400, needle, param=None if beyond else field,
                 code="invalid_json" if beyond else None)


def test_an_integer_of_more_than_4300_digits_is_a_400(client: FlaskClient, model: str) -> None:
    for field in ("seed", "temperature", "max_tokens"):
        openai_error(raw_chat(client, with_field(model, field, "9" * 5000)), 400, "4300 digits", code="invalid_json")


def test_minus_zero_and_underflow_are_valid_numbers(client: FlaskClient, model: str) -> None:
    for field, value in (("temperature", "-0"), ("temperature", "-0.0"), ("top_p", "-0"), ("top_p", "1e-400"),
                         ("temperature", "1")):
        ok_completion(raw_chat(client, with_field(model, field, value)))


NON_FINITE = {  # 1e400 is valid JSON syntax that Python reads as inf, which cannot be sent on as JSON
    "logit_bias": with_field("{model}", "logit_bias", '{"50256": 1e400}'),
    "message_extra_field": '{"model": "{model}", "messages": [{"role": "user", "content": "hi", "x": 1e400}]}',
    "content_part": '{"model": "{model}", "messages": [{"role": "user", "content": '
                    '[{"type": "text", "text": "hi", "w": -1e400}]}]}',
    "tool_parameters": with_field("{model}", "tools", '[{"type": "function", "function": {"name": "f", '
                                                      '"parameters": {"type": "object", "maximum": 1e400}}}]'),
    "response_format": with_field("{model}", "response_format", '{"type": "json_schema", "json_schema": '
                                                                '{"name": "x", "schema": {"maximum": 1e400}}}'),
}


@pytest.mark.parametrize("where", sorted(NON_FINITE))
@pytest.mark.parametrize("stream", [False, True])
def test_a_number_too_big_for_a_float_is_a_400_not_a_502(client: FlaskClient, model: str, where: str,
                                                         stream: bool) -> None:
    body = NON_FINITE[where].replace("{model}", model)
    if stream:
        body = body[:-1] + ', "stream": true}'
    message = openai_error(raw_chat(client, body), 400)["message"]
    assert any(word in message for word in ("1e400", "finite", "inf")), message


@pytest.mark.parametrize(("body", "where"), [
    ('{"model": "{model}", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
    ('{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
    ('{"model": "{model}", "messages": [{"role": "user", "content": "hi", "\\udc00": 1}]}', "messages.0."),
    ('{"model": "{model}", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "messages.0.content"),
])
def test_a_lone_surrogate_is_a_400_saying_where(client: FlaskClient, model: str, body: str, where: str) -> None:
    text = body.replace("{model}", model)
    data = text.encode("latin-1") if "\xed" in text else text  # the last case: the surrogate as raw UTF-8 bytes
    openai_error(raw_chat(client, data), 400, "lone surrogate", where, code="invalid_json")


def test_a_surrogate_pair_and_a_nul_are_fine(client: FlaskClient, model: str) -> None:
    body = '{"model": "%s", "messages": [{"role": "user", "content": "\\ud83d\\ude00 ok \\u0000"}]}' % model
    assert "\U0001F600" in ok_completion(raw_chat(client, body))["choices"][0]["message"]["content"]


def test_duplicate_keys_take_the_last_value(client: FlaskClient, model: str) -> None:
    """As Python's json (and OpenAI's server) does: the last one wins."""
    ok_completion(raw_chat(client, '{"model": "other", "model": "%s", "messages": %s}' % (model, json.dumps(HI))))
    openai_error(raw_chat(client, '{"model": "%s", "model": "other", "messages": %s}' % (model, json.dumps(HI))),
                 404, "'other'", code="model_not_found")


# -- wrong types -----------------------------------------------------------------------------------------------

WRONG = [  # (fields of the body beyond model, param, a piece of the message)
    ({"messages": "hi"}, "messages", "valid list"),
    ({"messages": {"role": "user", "content": "hi"}}, "messages", "valid list"),
    ({"messages": None}, "messages", "valid list"),
    ({"messages": []}, "messages", "at least 1 item"),
    ({"messages": [None]}, "messages", "messages.0"),
    ({"messages": ["hi"]}, "messages", "messages.0"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages", "messages.0.content"),
    ({"messages": [{"role": "user", "content": [1, 2]}]}, "messages", "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages", "messages[0].content"),
    ({"messages": [{"role": "user", "content": None}]}, "messages", "messages[0].content must be a string"),
    ({"messages": [{"role": "user"}]}, "messages", "messages[0].content must be a string"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages", "messages.0.role"),
    ({"messages": [{"content": "hi"}]}, "messages", "messages.0.role: Field required"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": "x"}]}, "messages", "messages.0.tool_calls"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [1]}]}, "messages", "messages.0.tool_calls.0"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{}]}]}, "messages",
     "messages[0].tool_calls[0] must be"),
    ({"messages": [{"role": "assistant", "content": None,
                    "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}]}, "messages",
     "function.arguments must be strings"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": []}]}, "messages",
     "messages[0].content must be a string (or null, with tool_calls)"),
    ({"messages": [{"role": "user", "content": "hi", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "messages",
     "only an assistant message carries tool calls"),
    ({"messages": [{"role": "tool", "content": "x", "tool_call_id": 5}]}, "messages", "messages.0.tool_call_id"),
    ({"messages": [{"role": "assistant", "content": "x", "reasoning_content": 5}]}, "messages",
     "reasoning_content must be a string"),
    ({"tools": "x"}, "tools", "tools: Input should be a valid list"),
    ({"tools": {}}, "tools", "tools: Input should be a valid list"),
    ({"tools": [1]}, "tools", "tools.0"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}, "tools",
     "tools[0].function.parameters must be a JSON schema object"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]}, "tools",
     "tools[0].function.parameters must be a JSON schema object"),
    ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools", "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}] * 2}, "tools", "two tools are named 'f'"),
    ({"tools": [{"type": "retrieval"}]}, "tools", "tools[0] must be"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tool_choice": "maybe"}, "tool_choice", "tool_choice"),
    ({"tool_choice": 5}, "tool_choice", "tool_choice"),
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "'nope'"),
    ({"response_format": "json"}, "response_format", "valid dictionary"),
    ({"response_format": {}}, "response_format", "response_format.type"),
    ({"response_format": {"type": "xml"}}, "response_format", "'xml'"),
    ({"response_format": {"type": "json_schema"}}, "response_format", "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 5}}}, "response_format",
     "schema must be a JSON schema object"),
    ({"stream": "yes"}, "stream", "valid boolean"),
    ({"stream": 1}, "stream", "valid boolean"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed with stream: true"),
    ({"stream": True, "stream_options": "x"}, "stream_options", "stream_options"),
    ({"stop": 5}, "stop", "stop"),
    ({"stop": [1]}, "stop", "stop.list[str].0"),
    ({"metadata": {"a": 1}}, "metadata", "metadata.a"),
    ({"user": 5}, "user", "user"),
    ({"parallel_tool_calls": "x"}, "parallel_tool_calls", "valid boolean"),
    ({"model": 5}, "model", "model: Input should be a valid string"),
    ({"model": None}, "model", "model: Input should be a valid string"),
    ({"model": ""}, "model", "at least 1 character"),
    ({"logprobs": True}, None, "logprobs: Extra inputs are not permitted"),
    ({"bogus": {"a": [1]}}, None, "bogus: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("fields", "param", "needle"), WRONG,
                         ids=[f"{i}-{next(iter(f))}" for i, (f, _, _) in enumerate(WRONG)])
def test_a_wrong_type_is_a_400_naming_the_field(client: FlaskClient, caplog: pytest.LogCaptureFixture, model: str,
                                                fields: dict[str, Any], param: str | None, needle: str) -> None:
    body = {"model": model, "messages": HI, **fields}
    openai_error(raw_chat(client, json.dumps(body)), 400, needle, param=param)
    no_traceback(caplog)


def test_a_missing_model_or_a_body_of_nothing_names_the_fields(client: FlaskClient) -> None:
    openai_error(raw_chat(client, json.dumps({"messages": HI})), 400, "model: Field required", param="model")
    openai_error(raw_chat(client, "{}"), 400, "model: Field required", "messages: Field required")


@pytest.mark.parametrize("messages", [
    [{"role": "tool", "content": "x"}],
    [{"role": "user", "content": "hi", "name": {"a": 1}}],
], ids=["tool-without-tool_call_id", "name-not-a-string"])
def test_a_message_the_upstream_rejects_is_a_400_not_a_502(client: FlaskClient, model: str,
                                                           messages: list[dict[str, Any]]) -> None:
    openai_error(raw_chat(client, json.dumps({"model": model, "messages": messages})), 400, "messages[0]",
                 param="messages")


def test_valid_but_unusual_inputs_are_a_200(client: FlaskClient, model: str) -> None:
    ok_completion(chat(client, model, tools=[]))
    ok_completion(chat(client, model, seed=-(2**63), logit_bias={"50256": -100}, stop=["a"] * 4,
                       metadata={"k": "v"}, user="u", store=False, n=1))
    ok_completion(raw_chat(client, json.dumps({"model": model, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url",
                                                                     "image_url": {"url": "file:///etc/passwd"}}]}]})))


def test_very_long_and_very_many_inputs_stay_in_bounds(app: Flask, client: FlaskClient, model: str) -> None:
    ok_completion(chat(client, model, messages=[{"role": "user", "content": "a"}] * 30000))
    ok_completion(chat(client, model, messages=[{"role": "user", "content": "word " * 200000}]))
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(5000)]
    ok_completion(chat(client, model, tools=tools))


# -- model names ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [
    "../", "flow/../../x", "workflow/%2e%2e", "workflow/..", "workflow/../code", "workflow/./code",
    "workflow/.hidden", "workflow/code.json", "workflow/code\x00", "workflow/\x00", "flow/echo\x00", "flow/", "workflow/",
    "workflow//etc/passwd", "workflow/\\..\\x", "workflow/C:\\windows", "workflow/code/../code", "workflow/*",
    "workflow/CODE", "workflow/code ", "flow/__class__", "flow/__init__", " {model}", "{model} ", "{model}\n",
])
def test_a_path_trick_in_the_model_is_a_404_model_not_found(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                            model: str, name: str) -> None:
    name = name.replace("{model}", model)
    error = openai_error(chat(client, name), 404, "does not exist", "GET /v1/models", param="model",
                         code="model_not_found")
    assert repr(name)[1:-1] in error["message"]
    openai_error(client.post(EMBED, json={"model": name, "input": "x"}), 404, param="model", code="model_not_found")
    no_traceback(caplog)


@pytest.mark.parametrize("name", ["x" * 100_000, "flow/" + "x" * 100_000, "workflow/" + "x" * 5000])
def test_a_very_long_model_name_is_cut_in_the_message(client: FlaskClient, name: str) -> None:
    error = openai_error(chat(client, name), 404, param="model", code="model_not_found")
    assert len(error["message"]) < 2000


# -- flows and workflows as models --------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "content", "status", "needle"), [
    ("flow/echo", '{"text": 5}', 400, "'text' must be string"),
    ("flow/echo", '{"text": 1e400}', 400, "1e400 is too large"),
    ("workflow/code", '{"text": 1e400}', 400, "1e400 is too large"),
    ("workflow/code", '{"text": NaN}', 400, "NaN is not a JSON value"),
    ("workflow/loop", "hi", 400, "not a JSON object"),
    ("workflow/loop", '{"topics": 5}', 400, "topics"),
    ("workflow/loop", '{"topics": ' + "[" * 500 + "]" * 500 + "}", 400, "nested too deeply"),
    ("flow/extract_json", "no json here", 422, "no JSON"),
])
def test_a_flow_or_workflow_refuses_bad_inputs_by_name(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                       model: str, content: str, status: int, needle: str) -> None:
    response = raw_chat(client, json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}))
    openai_error(response, status, needle)
    no_traceback(caplog)


def test_a_flow_or_workflow_takes_no_tools_nor_response_format_and_needs_a_user_message(client: FlaskClient) -> None:
    for name in ("flow/echo", "workflow/code"):
        openai_error(chat(client, name, tools=[{"type": "function", "function": {"name": "f"}}]), 400, "no tools",
                     param="tools")
        openai_error(chat(client, name, response_format={"type": "json_object"}), 400, "response_format",
                     param="response_format")
        openai_error(chat(client, name, messages=[{"role": "system", "content": "hi"}]), 400, "needs a user message",
                     param="messages")


@pytest.mark.parametrize("model", ["flow/echo", "workflow/code"])
@pytest.mark.parametrize("content", ['{"a":' * 1100 + "1" + "}" * 1100, '{"text": ' + DEEP_ARRAY + "}"],
                         ids=["objects", "arrays"])
def test_deep_json_in_the_user_message_of_a_flow_is_not_a_500(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                              model: str, content: str) -> None:
    response = raw_chat(client, json.dumps({"model": model, "messages": [{"role": "user", "content": content}]}))
    assert response.status_code != 500, response.get_data(as_text=True)[:300]
    if response.status_code == 400:
        openai_error(response, 400, "nested too deeply")
    no_traceback(caplog)


@pytest.mark.parametrize("stream", [False, True])
def test_a_lone_surrogate_in_the_user_message_json_is_a_400(client: FlaskClient, stream: bool) -> None:
    content = '{"text": "\\ud800"}'  # the message text holds JSON with the escape, the body itself is clean
    response = raw_chat(client, json.dumps({"model": "flow/echo", "stream": stream,
                                            "messages": [{"role": "user", "content": content}]}))
    openai_error(response, 400, "lone surrogate")


# -- embeddings ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "status", "param", "needle"), [
    ({"input": ""}, 400, "input", "at least 1"),
    ({"input": []}, 400, "input", "at least 1"),
    ({"input": [""]}, 400, "input", "every text must be non-empty"),
    ({"input": [1, 2, 3]}, 400, "input", "valid string"),
    ({"input": [[1, 2]]}, 400, "input", "valid string"),
    ({"input": 5}, 400, "input", "valid string"),
    ({"input": None}, 400, "input", "valid string"),
    ({}, 400, "input", "input: Field required"),
    ({"input": "x", "encoding_format": "hex"}, 400, "encoding_format", "'float' or 'base64'"),
    ({"input": "x", "dimensions": 0}, 400, "dimensions", "greater than or equal to 1"),
    ({"input": "x", "dimensions": 10**30}, 400, "dimensions", "not supported"),
    ({"input": "x", "user": 5}, 400, "user", "valid string"),
    ({"input": "x", "bogus": 1}, 400, None, "bogus: Extra inputs are not permitted"),
    ({"input": "x", "model": "flow/echo"}, 404, "model", "does not exist"),
])
def test_embeddings_refuse_bad_fields_by_name(client: FlaskClient, model: str, fields: dict[str, Any], status: int,
                                              param: str | None, needle: str) -> None:
    openai_error(client.post(EMBED, json={"model": model, **fields}), status, needle, param=param)


def test_embeddings_refuse_surrogates_deep_json_and_huge_numbers(client: FlaskClient, model: str) -> None:
    post = lambda body: client.post(EMBED, data=body, headers=JSON)  # noqa: E731
    openai_error(post('{"model": "%s", "input": "\\ud800"}' % model), 400, "lone surrogate", code="invalid_json")
    openai_error(post('{"model": "%s", "input": %s}' % (model, DEEP_ARRAY)), 400, "nested too deeply")
    openai_error(post('{"model": "%s", "input": "x", "dimensions": 1e400}' % model), 400, "1e400 is too large",
                 code="invalid_json")
    response = post(json.dumps({"model": model, "input": ["a"] * 50_000}))
    assert response.status_code == 200 and len(response.get_json()["data"]) == 50_000


def test_embeddings_upstream_failures_are_named(client: FlaskClient, upstream: FakeUpstream, model: str) -> None:
    upstream.push_faults({"status": 404})
    openai_error(client.post(EMBED, json={"model": model, "input": "x"}), 404, "no embeddings endpoint",
                 code="embeddings_not_supported")
    upstream.push_faults({"kind": "bad_shape"})
    openai_error(client.post(EMBED, json={"model": model, "input": "x"}), 502, "no data[].embedding",
                 code="upstream_bad_response")


# -- methods and paths --------------------------------------------------------------------------------------------

def test_wrong_methods_are_a_405_in_openai_shape_with_allow(client: FlaskClient) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        for path in (CHAT, EMBED):
            response = client.open(path, method=method)
            openai_error(response, 405, code="method_not_allowed")
            assert "POST" in response.headers["Allow"]
    openai_error(client.post("/v1/models", json={}), 405, code="method_not_allowed")
    openai_error(client.get("/v1/nope"), 404, code="not_found")


def test_a_browser_accept_header_still_gets_json_under_v1(client: FlaskClient) -> None:
    accept = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    openai_error(client.get("/v1/nope", headers=accept), 404, code="not_found")


# -- secrets ------------------------------------------------------------------------------------------------------

CLIENT_KEY = "sk-client-key-0123456789abcdefXYZ"
UPSTREAM_KEY = "sk-upstream-secret-ABCDEF0123456789"


@pytest.fixture
def keyed_app(upstream: FakeUpstream) -> Iterator[Flask]:
    app = create_app({"TESTING": True, "LLM_BASE_URL": upstream.base_url, "LLM_MAX_RETRIES": "0",
                      "FLOWBRIDGE_TASK_DB": "memory", "FLOWBRIDGE_API_KEYS": CLIENT_KEY, "LLM_API_KEY": UPSTREAM_KEY})
    yield app
    close_workflow_runtime(app)
    close_llm_client(app)


def test_api_keys_never_show_in_responses_or_the_log(keyed_app: Flask, upstream: FakeUpstream,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = keyed_app.test_client()
    model = keyed_app.extensions["flowbridge"]["settings"].model
    body = {"model": model, "messages": HI}
    texts = []
    for auth in (None, CLIENT_KEY[:-1], CLIENT_KEY + "x", "Basic " + CLIENT_KEY, UPSTREAM_KEY, CLIENT_KEY + "\x00"):
        headers = {} if auth is None else {"Authorization": auth if auth.startswith("Basic") else f"Bearer {auth}"}
        response = client.post(CHAT, json=body, headers=headers)
        openai_error(response, 401, code="unauthorized")
        texts.append(response.get_data(as_text=True))
    good = {"Authorization": f"Bearer {CLIENT_KEY}"}
    leak = {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "invalid_request_error"}}
    for status in (400, 401, 500):  # an upstream that echoes its key in its error
        upstream.push_faults({"status": status, "body": leak})
        response = client.post(CHAT, json=body, headers=good)
        # the upstream found the request invalid: the client's to fix (400); else the server's (502)
        openai_error(response, 400 if status == 400 else 502, "Incorrect API key provided",
                     code="upstream_rejected" if status == 400 else "upstream_error")
        texts.append(response.get_data(as_text=True))
    upstream.push_faults({"status": 401, "body": leak})
    texts.append(client.post(CHAT, json={**body, "stream": True}, headers=good).get_data(as_text=True))
    upstream.push_faults({"status": 401, "body": leak})
    texts.append(client.post(EMBED, json={"model": model, "input": "x"}, headers=good).get_data(as_text=True))
    texts.append(client.post(MCP, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                             headers={**MCP_HEADERS, "Authorization": f"Bearer {CLIENT_KEY[:-2]}"}).get_data(as_text=True))
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (CLIENT_KEY[:-2], UPSTREAM_KEY):
        assert not any(secret in text for text in texts)
        assert secret not in logged


# -- /mcp ---------------------------------------------------------------------------------------------------------

def mcp(client: FlaskClient, body: str | bytes | dict[str, Any], **headers: str) -> TestResponse:
    data = json.dumps(body) if isinstance(body, dict) else body
    return client.post(MCP, data=data, headers={**MCP_HEADERS, **headers})


def rpc_error(response: TestResponse, status: int, code: int, *needles: str) -> dict[str, Any]:
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{response.status_code}: {text[:600]}"
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and body.get("jsonrpc") == "2.0" and "error" in body, text[:300]
    assert body["error"]["code"] == code, body
    for needle in needles:
        assert needle in body["error"]["message"], f"{needle!r} not in {body['error']['message'][:300]!r}"
    return body["error"]


def call(name: Any, arguments: Any = None, id: Any = 1) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}


@pytest.mark.parametrize(("body", "needle"), [
    ("", "Parse error"),
    ("{not json", "Parse error"),
    ('{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": ' + DEEP_ARRAY + "}}", "nested too deeply"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ' + '{"a":' * 5000 + "1" + "}" * 5000 + "}",
     "nested too deeply"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"x": "\xff"}}', "not valid UTF-8"),
])
def test_mcp_unparsable_json_is_a_400_parse_error(client: FlaskClient, caplog: pytest.LogCaptureFixture,
                                                  body: str | bytes, needle: str) -> None:
    rpc_error(mcp(client, body), 400, -32700, needle)
    no_traceback(caplog)


@pytest.mark.parametrize(("body", "needle"), [
    ({"id": 1, "method": "tools/list"}, "jsonrpc"),
    ({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}, "'2.0'"),
    ({"jsonrpc": "2.0", "id": 1, "method": 5}, "method"),
    ({"jsonrpc": "2.0", "id": 1}, "method"),
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": 5}, "params"),
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}, "params"),
    ({}, "Field required"),
])
def test_mcp_malformed_json_rpc_is_a_400_naming_the_field(client: FlaskClient, body: dict[str, Any],
                                                          needle: str) -> None:
    rpc_error(mcp(client, body), 400, -32602, needle)


@pytest.mark.parametrize("body", ["[]", "[1]", "5", '"x"', "null",
                                  json.dumps([{"jsonrpc": "2.0", "id": i, "method": "tools/list"} for i in (1, 2)])])
def test_mcp_batches_and_non_objects_are_a_400(client: FlaskClient, body: str) -> None:
    rpc_error(mcp(client, body), 400, -32602, "valid dictionary")


def test_mcp_unknown_methods_and_tools_are_named(client: FlaskClient) -> None:
    for method in ("nope", "resources/list", "prompts/list", "tools/nope"):
        error = rpc_error(mcp(client, {"jsonrpc": "2.0", "id": 1, "method": method}), 200, -32601, "Method not found")
        assert error["data"] == method
    for name in ("nope", "../../etc/passwd", "echo_tool\x00", "n" * 100_000):
        rpc_error(mcp(client, call(name)), 200, -32602, "unknown tool", "echo_tool")


def test_mcp_odd_but_valid_messages_are_answered(client: FlaskClient) -> None:
    assert mcp(client, {"jsonrpc": "2.0", "id": 10**30, "method": "ping"}).get_json()["id"] == 10**30
    assert mcp(client, {"jsonrpc": "2.0", "id": "x" * 100_000, "method": "ping"}).status_code == 200
    duplicated = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "id": 2}'
    assert mcp(client, duplicated).get_json()["id"] == 2
    for notification in ({"jsonrpc": "2.0", "method": "notifications/initialized"},
                         {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
                         {"jsonrpc": "2.0", "id": 1, "result": {}}):
        assert mcp(client, notification).status_code == 202


@pytest.mark.parametrize(("arguments", "needle"), [
    ({}, "'text' is required"),
    ({"text": 5}, "'text' must be string, got int"),
    ({"text": None}, "'text' is required"),
    ({"text": ["a"]}, "'text' must be string, got list"),
    ({"text": "hi", "flow_id": "x", "response": 1}, "'flow_id', 'response' cannot be used as argument names"),
    ({"text": "hi", "stream_queue": 1}, "'stream_queue' cannot be used"),
])
def test_mcp_hostile_tool_arguments_are_an_error_result_naming_them(client: FlaskClient, arguments: dict[str, Any],
                                                                    needle: str) -> None:
    result = mcp(client, call("echo_tool", arguments)).get_json()["result"]
    assert result["isError"] is True and needle in result["content"][0]["text"], result


def test_mcp_tool_arguments_at_the_edges(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    for arguments in ({"text": "hi", "__class__": 1, "__dict__": {}}, {"text": "hi", "x": 1e300},
                      {"text": "x" * 500_000}, {"text": "hi", "deep": [[[[[[[[[[]]]]]]]]]]}):
        result = mcp(client, call("echo_tool", arguments)).get_json()["result"]
        assert result["isError"] is False and result["content"][0]["text"].startswith("Echo: ")
    for top_k, needle in ((-1, "'top_k' must be an integer > 0"), (1e300, "'top_k' must be integer, got float"),
                          (True, "got bool"), ("3", "got str"), (-(10**30), "must be an integer > 0")):
        result = mcp(client, call("retrieve", {"query": "q", "top_k": top_k})).get_json()["result"]
        assert result["isError"] is True and needle in result["content"][0]["text"], result
    for messages, needle in (("x", "'messages' must be array"), ([1], "'messages[0]' must be object"),
                             ([{"role": "wizard", "content": "x"}], "role")):
        result = mcp(client, call("chat", {"messages": messages})).get_json()["result"]
        assert result["isError"] is True and needle in result["content"][0]["text"], result
    result = mcp(client, call("execute_code", {"code": "while True: pass"})).get_json()["result"]
    assert result["isError"] is True and "disabled" in result["content"][0]["text"]
    no_traceback(caplog)


def test_mcp_bad_headers_and_size(app: Flask, client: FlaskClient) -> None:
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    for accept in ("text/html", ""):
        rpc_error(mcp(client, ping, Accept=accept), 406, -32600, "must accept application/json")
    too_big = {**ping, "params": {"x": "a" * (app.config["MAX_CONTENT_LENGTH"] + 1)}}
    response = mcp(client, too_big)
    assert response.status_code == 413 and "exceeds" in response.get_json()["error"]["message"]
    for method in ("GET", "DELETE"):
        response = client.open(MCP, method=method, headers=MCP_HEADERS)
        assert response.status_code == 405 and response.headers["Allow"] == "POST"
        assert "POST" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("content_type", ["text/plain", None])
def test_mcp_a_body_not_declared_json_gets_a_json_rpc_error(client: FlaskClient, content_type: str | None) -> None:
    headers = {k: v for k, v in MCP_HEADERS.items() if k != "Content-Type"}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(MCP, data='{"jsonrpc": "2.0", "id": 1, "method": "ping"}', headers=headers)
    assert response.status_code in (400, 415)
    rpc_error(response, response.status_code, -32600, "Content-Type")


@pytest.mark.parametrize("id", [{"a": 1}, [1], None, 1.5, True], ids=["object", "array", "null", "float", "bool"])
def test_mcp_a_request_with_an_invalid_id_is_an_error_not_a_202(client: FlaskClient, id: Any) -> None:
    response = mcp(client, {"jsonrpc": "2.0", "id": id, "method": "tools/list"})
    assert response.status_code in (200, 400), response.status_code  # not 202: a request needs an answer
    rpc_error(response, response.status_code, -32600, "id")


@pytest.mark.parametrize(("body", "needle"), [
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}, "name"),
    (call(5), "name"),
    (call("echo_tool", 5), "arguments"),
    (call("echo_tool", [1]), "arguments"),
    ({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": 5}}, "cursor"),
])
def test_mcp_wrong_param_types_name_the_param(client: FlaskClient, body: dict[str, Any], needle: str) -> None:
    error = rpc_error(mcp(client, body), 200, -32602)
    assert needle in error["message"] + str(error.get("data") or ""), error


def test_mcp_a_lone_surrogate_is_named(client: FlaskClient) -> None:
    rpc_error(mcp(client, '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", '
                          '"params": {"name": "echo_tool", "arguments": {"text": "\\ud800"}}}'), 400, -32700,
              "surrogate")


def test_mcp_an_unknown_protocol_version_header_is_named(client: FlaskClient) -> None:
    response = mcp(client, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, **{"MCP-Protocol-Version": "1999-01-01"})
    assert response.status_code == 400
    message = response.get_json()["error"]["message"]
    assert "1999-01-01" in message or "mcp-protocol-version" in message.lower(), message
