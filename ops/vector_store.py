"""A small in-memory vector store: documents with embeddings, searched by cosine similarity.

Pure Python (no numpy): it is meant for tests, demos and a few thousand
documents per process. Each gunicorn worker has its own store.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["InMemoryVectorStore", "SearchHit", "VectorDoc"]


class VectorDoc(BaseModel):
    """A document and its embedding."""

    id: str
    content: str = ""
    vector: list[float] = Field(min_length=1)
    metadata: dict = Field(default_factory=dict)


class SearchHit(BaseModel):
    """A search result: a copy of the document and its cosine similarity to the query (-1 … 1)."""

    doc: VectorDoc
    score: float

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def content(self) -> str:
        return self.doc.content

    @property
    def metadata(self) -> dict:
        return self.doc.metadata


def _norm(vector: Sequence[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in vector))


class InMemoryVectorStore:
    """Documents by id, with their vectors; thread-safe.

    The ``async_*`` methods call the sync ones directly: everything happens in
    this process's memory and takes microseconds to milliseconds, less than a
    hop to a thread would cost, and the lock is only ever held for that long.

    :param dimension: the length every vector must have; when None, the first
        document inserted sets it.
    """

    def __init__(self, dimension: int | None = None) -> None:
        if dimension is not None and dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension!r}")
        self._lock = threading.Lock()
        self._dimension = dimension
        #: id → (document, norm of its vector)
        self._docs: dict[str, tuple[VectorDoc, float]] = {}

    @property
    def dimension(self) -> int | None:
        return self._dimension

    def __len__(self) -> int:
        with self._lock:
            return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        with self._lock:
            return doc_id in self._docs

    def insert(self, docs: Iterable[VectorDoc | Mapping[str, Any]]) -> int:
        """Add documents, replacing any with the same id; returns how many were given.

        Nothing is inserted when one document is invalid.

        :raises ValueError: naming the document whose vector has the wrong length.
        """
        batch = [
            doc.model_copy(deep=True) if isinstance(doc, VectorDoc) else VectorDoc.model_validate(doc)
            for doc in docs
        ]
        with self._lock:
            dimension = self._dimension if self._dimension is not None else (len(batch[0].vector) if batch else None)
            for doc in batch:
                if len(doc.vector) != dimension:
                    raise ValueError(
                        f"document {doc.id!r} has a vector of length {len(doc.vector)}; this store holds {dimension}"
                    )
            self._dimension = dimension
            for doc in batch:
                self._docs[doc.id] = (doc, _norm(doc.vector))
        return len(batch)

    def search(
        self, query_vector: Sequence[float], top_k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[SearchHit]:
        """The ``top_k`` documents most similar to ``query_vector``, best first.

        :param filter: only documents whose metadata has these exact values.
        :raises ValueError: when the query's length is not the store's dimension.
        """
        query = [float(x) for x in query_vector]
        if self._dimension is not None and len(query) != self._dimension:
            raise ValueError(f"the query vector has length {len(query)}; this store holds {self._dimension}")
        if top_k <= 0:
            return []
        query_norm = _norm(query)
        conditions = dict(filter or {})
        with self._lock:
            candidates = [
                (doc, norm)
                for doc, norm in self._docs.values()
                if all(k in doc.metadata and doc.metadata[k] == v for k, v in conditions.items())
            ]
        scored: list[tuple[float, VectorDoc]] = []
        for doc, norm in candidates:
            if norm == 0 or query_norm == 0:
                score = 0.0
            else:
                score = math.fsum(a * b for a, b in zip(query, doc.vector)) / (norm * query_norm)
            scored.append((score, doc))
        # sorted() is stable: equal scores keep insertion order.
        scored.sort(key=lambda pair: pair[0], reverse=True)
        return [SearchHit(doc=doc.model_copy(deep=True), score=score) for score, doc in scored[:top_k]]

    def get(self, doc_id: str) -> VectorDoc | None:
        """A copy of the document ``doc_id``, or None."""
        with self._lock:
            entry = self._docs.get(doc_id)
        return None if entry is None else entry[0].model_copy(deep=True)

    def delete(self, ids: str | Iterable[str]) -> int:
        """Remove documents by id; returns how many existed."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        with self._lock:
            return sum(self._docs.pop(doc_id, None) is not None for doc_id in ids)

    def clear(self) -> None:
        """Remove every document (the dimension stays)."""
        with self._lock:
            self._docs.clear()

    # -- async twins (see the class doc for why they do not use a thread) -------------------

    async def async_insert(self, docs: Iterable[VectorDoc | Mapping[str, Any]]) -> int:
        return self.insert(docs)

    async def async_search(
        self, query_vector: Sequence[float], top_k: int = 5, filter: Mapping[str, Any] | None = None
    ) -> list[SearchHit]:
        return self.search(query_vector, top_k=top_k, filter=filter)

    async def async_delete(self, ids: str | Iterable[str]) -> int:
        return self.delete(ids)

    async def async_get(self, doc_id: str) -> VectorDoc | None:
        return self.get(doc_id)
