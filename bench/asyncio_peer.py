"""The asyncio peer of ``bench/chat_load.py``: ``POST /api/chat`` in FastAPI, for uvicorn.

The same work as flowbridge's non-streamed ``POST /api/chat``: parse
``{"message"}`` or ``{"messages"}`` (with ``system_prompt``, ``temperature``,
``max_tokens``) with pydantic, send one ``POST {LLM_BASE_URL}/chat/completions``
and answer ``{"response", "model", "usage"}``; an upstream failure is a 502
with the usual ``{"error": {...}}`` body. Every request of a worker goes
through one shared ``aiohttp.ClientSession`` (created at startup, closed at
shutdown). ``GET /healthz`` answers the worker's pid, so the bench can see
that every worker is up.

Run: ``LLM_BASE_URL=http://127.0.0.1:PORT/v1 uvicorn --app-dir bench asyncio_peer:app --workers 2``
(bench/chat_load.py does it). Needs the ``bench`` extra.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiohttp
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

BASE_URL = os.environ.get("LLM_BASE_URL", "http://127.0.0.1:8080/v1").rstrip("/")
MODEL = os.environ.get("LLM_MODEL", "fake-model")
#: seconds one upstream call may take (flowbridge's client defaults to 60 s too)
TIMEOUT = float(os.environ.get("LLM_TIMEOUT", "60"))

_session: aiohttp.ClientSession | None = None


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """Like flowbridge's: one ``message`` or a whole conversation in ``messages``."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(None, min_length=1)
    messages: list[Message] | None = Field(None, min_length=1)
    system_prompt: str | None = None
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=32768)

    @model_validator(mode="after")
    def _one_of(self) -> ChatRequest:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of 'message' or 'messages'")
        return self

    def conversation(self) -> list[dict[str, str]]:
        if self.messages is not None:
            messages = [m.model_dump() for m in self.messages]
        else:
            messages = [{"role": "user", "content": self.message or ""}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    global _session
    # limit=0: no cap on connections, as flowbridge's pool grows with its threads
    _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=TIMEOUT))
    try:
        yield
    finally:
        await _session.close()


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "pid": os.getpid()}


@app.post("/api/chat")
async def chat(body: ChatRequest) -> Any:
    assert _session is not None
    payload = {"model": MODEL, "messages": body.conversation(), "temperature": body.temperature,
               "max_tokens": body.max_tokens}
    try:
        async with _session.post(BASE_URL + "/chat/completions", json=payload) as response:
            if response.status != 200:
                return _error(502, "upstream_error", f"the LLM server answered {response.status}")
            data = await response.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return _error(502, "upstream_unavailable", f"the LLM server failed: {type(exc).__name__}")
    try:
        text = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return _error(502, "bad_upstream_response", "the LLM server's answer has no choices[0].message.content")
    return {"response": text, "model": data.get("model", MODEL), "usage": data.get("usage", {})}


def _error(status: int, type_: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": type_, "message": message}}, status_code=status)
