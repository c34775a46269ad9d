"""PerThread: one object per thread, closed together, never shared with (or closed in) a forked child."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from async_utils import PerThread


class Thing:
    _ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(self._ids)
        self.thread = threading.get_ident()
        self.closed_in: int | None = None  # the pid that closed it


def make() -> tuple[PerThread[Thing], list[Thing]]:
    closed: list[Thing] = []

    def close(thing: Thing) -> None:
        thing.closed_in = os.getpid()
        closed.append(thing)

    return PerThread(Thing, close), closed


def test_each_thread_gets_its_own_object_and_keeps_it() -> None:
    things, _ = make()
    mine = things.get()
    assert things.get() is mine and mine.thread == threading.get_ident()
    with ThreadPoolExecutor(4) as pool:
        theirs = list(pool.map(lambda _: things.get(), range(40)))
    assert mine not in theirs
    assert all(t.thread != mine.thread for t in theirs)
    assert len({t.id for t in theirs}) == len({t.thread for t in theirs})  # one per pool thread


def test_close_closes_every_threads_object_once_and_get_makes_new_ones() -> None:
    things, closed = make()
    first = things.get()
    other = ThreadPoolExecutor(1).submit(things.get).result()
    things.close()
    assert closed == [first, other]
    things.close()  # idempotent
    assert closed == [first, other]
    second = things.get()
    assert second is not first and second.closed_in is None


def test_close_mine_closes_only_the_calling_threads_object() -> None:
    things, closed = make()
    mine = things.get()
    with ThreadPoolExecutor(1) as pool:
        theirs = pool.submit(things.get).result()
        assert pool.submit(things.get).result() is theirs
        pool.submit(things.close_mine).result()
        assert closed == [theirs]
        assert pool.submit(things.get).result() is not theirs
    things.close_mine()
    things.close_mine()  # nothing left to close
    assert closed == [theirs, mine]


def test_the_factorys_error_passes_through_and_nothing_is_kept() -> None:
    calls: list[int] = []

    def factory() -> Any:
        calls.append(1)
        raise OSError("cannot open")

    things: PerThread[Any] = PerThread(factory, lambda _: None)
    for _ in range(2):
        with pytest.raises(OSError, match="cannot open"):
            things.get()
    assert len(calls) == 2  # tried again


def _in_forked_child(things: PerThread[Thing], parents: Thing) -> None:
    child = things.get()
    things.close()
    assert child is not parents and child.closed_in == os.getpid() and parents.closed_in is None


def test_a_forked_child_makes_its_own_and_never_closes_the_parents() -> None:
    things, closed = make()
    parents = things.get()
    child = multiprocessing.get_context("fork").Process(target=_in_forked_child, args=(things, parents))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert things.get() is parents and parents.closed_in is None  # untouched in the parent
    things.close()
    assert closed == [parents] and parents.closed_in == os.getpid()
