"""Find the records of a rejected batch that cannot be stored, by bisection.

A batch write is all or nothing. When the database (or the row encoder) rejects
a batch, the sink must still store every good record and dead-letter only the bad
ones. Writing each record alone costs one transaction per record; halving costs,
for one bad record among n, one or two writes per level: at most 2 * log2(n) + 1. Each
subset that writes is stored for good (the writes are idempotent, so a replay of
the same records later is harmless).

Pure: the caller supplies ``write``, which stores a subset or says why not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

#: ``await write(subset)`` -> None when the subset is stored, else the reason it was rejected
WriteSubset = Callable[[Sequence[T]], Awaitable["str | None"]]


async def isolate_rejected(items: Sequence[T], write: WriteSubset,
                           reason: str | None = None) -> list[tuple[T, str]]:
    """Store every item that can be stored; return the others with their reasons, in order.

    ``reason``: why the caller's write of all of ``items`` was just rejected (they are
    then split at once instead of being written again); None to start with a write.

    Halving: a range is written whole; a rejected range is split. When the first half
    of a rejected range stores completely, the second half must hold the bad item and
    is split without a write of its own, so one bad item among n costs between
    log2(n) and 2 * log2(n) + 1 writes. An item is only ever reported after being rejected *alone*
    (a batch that fails only in combination is thus stored in pieces, not dropped),
    so the result is exact for any number of bad items.
    """
    rejected: list[tuple[T, str]] = []

    async def part(lo: int, hi: int, known_bad: bool, why: str | None) -> bool:
        """Store items[lo:hi] but its bad items; True if one was found."""
        if not known_bad:
            why = await write(items[lo:hi])
            if why is None:
                return False
        if hi - lo == 1:
            if why is None:
                why = await write(items[lo:hi])
                if why is None:
                    return False
            rejected.append((items[lo], why))
            return True
        mid = (lo + hi) // 2
        left_bad = await part(lo, mid, False, None)
        right_bad = await part(mid, hi, not left_bad, None)
        return left_bad or right_bad

    if items:
        await part(0, len(items), reason is not None, reason)
    return rejected
