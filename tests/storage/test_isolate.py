"""The bisection that finds the records of a rejected batch (pure, no services)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.storage.isolate import isolate_rejected


class FakeDb:
    """A store whose write of a subset fails iff the subset holds a bad item."""

    def __init__(self, bad: set[int]):
        self.bad = bad
        self.stored: list[int] = []
        self.writes = 0

    async def write(self, subset: Sequence[int]) -> str | None:
        self.writes += 1
        hit = [x for x in subset if x in self.bad]
        if hit:
            return f"bad {hit[0]}"
        self.stored.extend(subset)
        return None


def run(items: list[int], db: FakeDb, reason: str | None = None) -> list[tuple[int, str]]:
    return asyncio.run(isolate_rejected(items, db.write, reason))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 300), data=st.data())
def test_finds_exactly_the_bad_items_and_stores_the_rest(n: int, data) -> None:
    items = list(range(n))
    bad = data.draw(st.sets(st.sampled_from(items), max_size=n) if n else st.just(set()))
    db = FakeDb(bad)
    first = None if not bad else f"bad {min(bad)}"   # the caller's whole-batch rejection
    out = run(items, db, first)
    assert [x for x, _ in out] == sorted(bad)
    assert all(why == f"bad {x}" for x, why in out)
    assert sorted(db.stored) == sorted(set(items) - bad)
    assert len(db.stored) == len(set(db.stored))   # nothing written twice once stored


@given(n=st.integers(1, 5000), data=st.data())
def test_one_bad_item_costs_logarithmic_writes(n: int, data) -> None:
    bad = data.draw(st.integers(0, n - 1))
    db = FakeDb({bad})
    out = run(list(range(n)), db, f"bad {bad}")
    assert out == [(bad, f"bad {bad}")]
    assert db.writes <= 2 * math.ceil(math.log2(n)) + 1


def test_a_whole_batch_unchecked_is_written_once_when_good() -> None:
    db = FakeDb(set())
    assert run(list(range(100)), db) == []
    assert db.writes == 1 and db.stored == list(range(100))


def test_a_rejection_only_in_combination_drops_nothing() -> None:
    """Items 3 and 4 conflict only together: both are stored, in different writes."""
    stored: list[int] = []

    async def write(subset: Sequence[int]) -> str | None:
        if 3 in subset and 4 in subset:
            return "conflict"
        stored.extend(subset)
        return None

    out = asyncio.run(isolate_rejected(list(range(8)), write, "conflict"))
    assert out == [] and sorted(stored) == list(range(8))
