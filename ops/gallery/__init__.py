"""The built-in ops, registered with ``C`` on import (``OpApp`` imports this package).

Each op lives in ``<name>_op.py`` with its prompts in ``<name>_prompt.yaml``
beside it (English, and ``<key>_zh`` for ``language="zh"``).
"""

from .chat_op import ChatOp
from .echo_tool_op import EchoToolOp
from .extract_json_op import ExtractJsonOp, extract_json
from .index_documents_op import IndexDocumentsOp
from .retrieve_op import RetrieveOp
from .stream_chat_op import StreamChatOp
from .summarize_op import SummarizeOp
from .translate_op import TranslateOp

__all__ = [
    "ChatOp",
    "EchoToolOp",
    "ExtractJsonOp",
    "IndexDocumentsOp",
    "RetrieveOp",
    "StreamChatOp",
    "SummarizeOp",
    "TranslateOp",
    "extract_json",
]
