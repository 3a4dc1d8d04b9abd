"""Duplicate and resend marks: recently acknowledged / attempted sequence numbers."""

from __future__ import annotations

from collections import OrderedDict


class SeqMemory:
    """Recently acknowledged / attempted sequence numbers of one (device, kind)."""

    __slots__ = ("acked", "attempted", "limit")

    def __init__(self, limit: int = 8192):
        self.acked: OrderedDict[int, None] = OrderedDict()
        self.attempted: OrderedDict[int, None] = OrderedDict()
        self.limit = limit

    @staticmethod
    def _put(d: OrderedDict, seq: int, limit: int) -> None:
        d[seq] = None
        d.move_to_end(seq)
        while len(d) > limit:
            d.popitem(last=False)

    def classify(self, seq: int) -> tuple[bool, bool]:
        """(dup, resent) marks for a record about to be sent; records the attempt."""
        dup = seq in self.acked
        resent = (not dup) and seq in self.attempted
        self._put(self.attempted, seq, self.limit)
        return dup, resent

    def acked_ok(self, seq: int) -> None:
        self._put(self.acked, seq, self.limit)

