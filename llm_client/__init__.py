"""A synchronous client for OpenAI-compatible servers, with a thread-pool async bridge.

>>> with LLMClient() as client:                       # settings from LLM_* variables
...     client.chat("Say hi")
...     await client.chat_async("Say hi")             # inside async code
"""

from ._bridge import PoolStats
from ._client import ChatCompletion, LLMClient
from ._settings import LLMSettings
from ._streaming import ChatStream
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
]
