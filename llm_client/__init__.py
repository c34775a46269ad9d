"""A synchronous client for OpenAI-compatible servers, with a thread-pool async bridge.

>>> with LLMClient() as client:                       # settings from LLM_* variables
...     client.chat("Say hi")
...     await client.chat_async("Say hi")             # inside async code

>>> with FlowbridgeClient("http://127.0.0.1:8000") as fb:   # a flowbridge server's API
...     print(fb.chat_stream("Say hi").text())
"""

from ._bridge import PoolStats
from ._client import LLMClient
from ._completion import ChatCompletion
from ._settings import LLMSettings
from ._streaming import ChatStream, StreamDelta
from .events import (
    EventStream,
    FlowbridgeAPIError,
    FlowbridgeClient,
    StreamError,
    StreamEvent,
    iter_events,
)
from .exceptions import (
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMQueueFullError,
    LLMRateLimitError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
)

__all__ = [
    "ChatCompletion",
    "ChatStream",
    "EventStream",
    "FlowbridgeAPIError",
    "FlowbridgeClient",
    "LLMClient",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMError",
    "LLMQueueFullError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMSettings",
    "LLMStatusError",
    "LLMTimeoutError",
    "PoolStats",
    "StreamDelta",
    "StreamError",
    "StreamEvent",
    "iter_events",
]
