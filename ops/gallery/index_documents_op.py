"""``IndexDocumentsOp``: embed documents and add them to the vector store."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ..services import C
from ..tool_call import ToolAttr, ToolCall
from ..tool_op import BaseAsyncToolOp
from ..vector_store import VectorDoc
from ._common import check_positive_int

#: The JSON schema of one item of the ``documents`` input.
DOCUMENT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string"},
        {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "content": {"type": "string"},
                "metadata": {"type": "object"},
            },
            "required": ["content"],
        },
    ]
}


def document_id(content: str) -> str:
    """The id of a document given without one: the first 12 hex digits of its content's SHA-1."""
    return hashlib.sha1(content.encode("utf-8")).hexdigest()[:12]


def parse_documents(op_name: str, documents: Any) -> list[tuple[str, str, dict]]:
    """``(id, content, metadata)`` of each document: a string, or ``{id?, content, metadata?}``.

    :raises ValueError: naming the first document that is not one of those.
    """
    if not isinstance(documents, list):
        raise ValueError(f"{op_name}: 'documents' must be a list, got {type(documents).__name__}")
    parsed: list[tuple[str, str, dict]] = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            doc = {"content": doc}
        if not isinstance(doc, Mapping):
            raise ValueError(f"{op_name}: documents[{i}] must be a string or {{id?, content, metadata?}}")
        content, doc_id, metadata = doc.get("content"), doc.get("id"), doc.get("metadata")
        metadata = {} if metadata is None else metadata
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"{op_name}: documents[{i}] needs a non-empty string 'content'")
        if doc_id is not None and (not isinstance(doc_id, str) or not doc_id):
            raise ValueError(f"{op_name}: documents[{i}].id must be a non-empty string")
        if not isinstance(metadata, Mapping):
            raise ValueError(f"{op_name}: documents[{i}].metadata must be an object")
        parsed.append((doc_id or document_id(content), content, dict(metadata)))
    return parsed


@C.register_op()
class IndexDocumentsOp(BaseAsyncToolOp):
    """Embed ``documents`` and insert them into the vector store (a document with a known id is replaced).

    The output ``index_documents_result`` is how many were indexed; their ids
    are in ``response.metadata["indexed_ids"]``. When the run streams, a
    ``progress`` chunk follows each embeddings batch.

    :param batch_size: texts per embeddings request.
    """

    def __init__(self, batch_size: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = check_positive_int(batch_size, "batch_size")

    def build_tool_call(self) -> ToolCall:
        return ToolCall(
            description="Add documents to the vector store, for RetrieveOp to find.",
            input_schema={
                "documents": {
                    "type": "array",
                    "description": "the documents: strings, or objects {id?, content, metadata?}",
                    "required": True,
                    "items": DOCUMENT_SCHEMA,
                },
            },
            output_schema={
                f"{self.short_name}_result": ToolAttr(type="integer", description="how many documents were indexed"),
            },
        )

    async def async_execute(self) -> None:
        documents = parse_documents(self.name, self.input_dict["documents"])
        vectors: list[list[float]] = []
        for start in range(0, len(documents), self.batch_size):
            batch = [content for _id, content, _meta in documents[start : start + self.batch_size]]
            vectors.extend(await self.embedding_model.async_embed(batch))
            if self.context.streaming:
                await self.context.add_stream_progress(len(vectors), len(documents), "embedded")
        await self.vector_store.async_insert(
            [
                VectorDoc(id=doc_id, content=content, vector=vector, metadata=metadata)
                for (doc_id, content, metadata), vector in zip(documents, vectors, strict=True)
            ]
        )
        self.context.response.metadata["indexed_ids"] = [doc_id for doc_id, _content, _meta in documents]
        self.set_output(len(documents))

    async def async_after_execute(self) -> None:
        await super().async_after_execute()
        if self.save_answer:
            # response.answer holds text or JSON, not a bare number.
            self.context.response.answer = str(self.output)
