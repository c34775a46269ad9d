"""InMemoryVectorStore: insert, cosine search, filters, delete, dimensions, async twins."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from pydantic import ValidationError

from ops.vector_store import InMemoryVectorStore, SearchHit, VectorDoc


@pytest.fixture
def store() -> InMemoryVectorStore:
    store = InMemoryVectorStore()
    store.insert([
        VectorDoc(id="x", content="east", vector=[1, 0, 0], metadata={"kind": "axis", "lang": "en"}),
        VectorDoc(id="y", content="north", vector=[0, 1, 0], metadata={"kind": "axis", "lang": "zh"}),
        VectorDoc(id="xy", content="north-east", vector=[1, 1, 0], metadata={"kind": "diagonal"}),
        {"id": "neg", "content": "west", "vector": [-1, 0, 0]},
    ])
    return store


def test_search_orders_by_cosine_similarity(store: InMemoryVectorStore) -> None:
    hits = store.search([2, 0, 0], top_k=4)
    assert [hit.id for hit in hits] == ["x", "xy", "y", "neg"]
    assert [hit.score for hit in hits] == pytest.approx([1.0, 1 / math.sqrt(2), 0.0, -1.0])
    first = hits[0]
    assert isinstance(first, SearchHit) and first.content == "east" and first.metadata == {"kind": "axis", "lang": "en"}
    assert first.doc.vector == [1.0, 0.0, 0.0]


def test_top_k(store: InMemoryVectorStore) -> None:
    assert [hit.id for hit in store.search([1, 0.1, 0], top_k=2)] == ["x", "xy"]
    assert store.search([1, 0, 0], top_k=0) == []
    assert len(store.search([1, 0, 0], top_k=100)) == 4


def test_filter_is_metadata_equality(store: InMemoryVectorStore) -> None:
    assert [hit.id for hit in store.search([1, 1, 0], filter={"kind": "axis"})] == ["x", "y"]
    assert [hit.id for hit in store.search([1, 1, 0], filter={"kind": "axis", "lang": "zh"})] == ["y"]
    assert store.search([1, 1, 0], filter={"missing": None}) == []
    assert len(store.search([1, 1, 0], filter={})) == 4


def test_zero_vectors_score_zero(store: InMemoryVectorStore) -> None:
    assert all(hit.score == 0.0 for hit in store.search([0, 0, 0]))
    store.insert([VectorDoc(id="zero", vector=[0, 0, 0])])
    zero_hit = next(hit for hit in store.search([1, 0, 0], top_k=10) if hit.id == "zero")
    assert zero_hit.score == 0.0


def test_ties_keep_insertion_order() -> None:
    store = InMemoryVectorStore()
    store.insert([VectorDoc(id=str(i), vector=[1, 1]) for i in range(5)])
    assert [hit.id for hit in store.search([1, 1], top_k=5)] == ["0", "1", "2", "3", "4"]


def test_insert_replaces_the_same_id(store: InMemoryVectorStore) -> None:
    store.insert([VectorDoc(id="x", content="replaced", vector=[0, 0, 1])])
    assert len(store) == 4
    assert store.get("x").content == "replaced"
    assert store.search([0, 0, 1], top_k=1)[0].id == "x"


def test_dimension_is_set_by_the_first_insert_and_checked() -> None:
    store = InMemoryVectorStore()
    assert store.dimension is None
    assert store.search([1, 2, 3]) == []  # empty store: any query
    store.insert([VectorDoc(id="a", vector=[1, 2])])
    assert store.dimension == 2
    with pytest.raises(ValueError, match="'bad'"):
        store.insert([VectorDoc(id="ok", vector=[1, 1]), VectorDoc(id="bad", vector=[1, 2, 3])])
    assert "ok" not in store and len(store) == 1  # nothing from the failed batch
    with pytest.raises(ValueError, match="length 3"):
        store.search([1, 2, 3])


def test_fixed_dimension() -> None:
    store = InMemoryVectorStore(dimension=3)
    with pytest.raises(ValueError, match="'short'"):
        store.insert([VectorDoc(id="short", vector=[1, 2])])
    with pytest.raises(ValueError, match="dimension"):
        InMemoryVectorStore(dimension=0)


def test_docs_need_a_vector() -> None:
    with pytest.raises(ValidationError):
        VectorDoc(id="empty", vector=[])
    with pytest.raises(ValidationError):
        VectorDoc(id="none")


def test_get_delete_clear(store: InMemoryVectorStore) -> None:
    assert store.get("missing") is None
    assert store.delete(["x", "y", "missing"]) == 2
    assert store.delete("xy") == 1 and store.delete("xy") == 0
    assert "x" not in store and len(store) == 1
    store.clear()
    assert len(store) == 0 and store.dimension == 3


def test_the_store_holds_copies(store: InMemoryVectorStore) -> None:
    doc = VectorDoc(id="c", vector=[0, 0, 1], metadata={"tags": ["a"]})
    store.insert([doc])
    doc.metadata["tags"].append("changed outside")
    store.get("c").metadata["tags"].append("changed via get")
    store.search([0, 0, 1], top_k=1)[0].metadata["tags"].append("changed via a hit")
    assert store.get("c").metadata == {"tags": ["a"]}


def test_async_twins(store: InMemoryVectorStore) -> None:
    async def main() -> None:
        assert await store.async_insert([VectorDoc(id="z", content="up", vector=[0, 0, 1])]) == 1
        hits = await store.async_search([0, 0, 1], top_k=1)
        assert hits[0].id == "z" and hits[0].score == pytest.approx(1.0)
        assert (await store.async_get("z")).content == "up"
        assert await store.async_delete(["z"]) == 1
        assert await store.async_search([0, 0, 1], top_k=1, filter={"kind": "diagonal"}) == [
            SearchHit(doc=store.get("xy"), score=0.0)
        ]

    asyncio.run(main())


def test_concurrent_inserts_and_searches() -> None:
    store = InMemoryVectorStore(dimension=2)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(50):
                store.insert([VectorDoc(id=f"{i}-{j}", vector=[i + 1, j])])
                store.search([1, 1], top_k=3)
        except BaseException as exc:  # recorded for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(store) == 200
