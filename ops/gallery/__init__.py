"""The built-in ops, registered with ``C`` on import (``OpApp`` imports this package).

Each op lives in ``<name>_op.py`` with its prompts in ``<name>_prompt.yaml``
beside it (English, and ``<key>_zh`` for ``language="zh"``).
"""

from .chat_op import ChatOp
from .echo_tool_op import EchoToolOp
from .execute_code_op import ExecuteCodeOp
from .extract_json_op import ExtractJsonOp, extract_json
from .gen_system_prompt_op import GenSystemPromptOp
from .index_documents_op import IndexDocumentsOp
from .mock_search_op import MockSearchOp
from .react_agent_op import ReactAgentOp
from .retrieve_op import RetrieveOp
from .stream_chat_op import StreamChatOp
from .summarize_op import SummarizeOp
from .think_tool_op import ThinkToolOp
from .token_count_op import TokenCountOp
from .translate_op import TranslateOp

__all__ = [
    "ChatOp",
    "EchoToolOp",
    "ExecuteCodeOp",
    "ExtractJsonOp",
    "GenSystemPromptOp",
    "IndexDocumentsOp",
    "MockSearchOp",
    "ReactAgentOp",
    "RetrieveOp",
    "StreamChatOp",
    "SummarizeOp",
    "ThinkToolOp",
    "TokenCountOp",
    "TranslateOp",
    "extract_json",
]
