"""Which input records a worker may apply: its own partitions' records, in offset order, without holes.

A device state remembers the last offset it applied per input topic (`DeviceProcessor.applied`) and
skips any record at or below it as a redelivery. That is only sound if no record of the partition is
ever applied before an earlier one. Around a rebalance Faust breaks this (measured in the rebalance
test: a kept partition handed the agent offsets 137, then 141..158, then 138..; records 138-140 had
been fetched before the rebalance, dropped from the stream buffer by `flow_control.clear()`, and the
fetch went on after them until the seek to the committed offset came back for them). The device then
skipped 138-140 forever: lost frames, a sequence gap and a filter restart.

`InputCursors` keeps, per owned input partition, the next offset this worker must apply. A record
past it is a hole: the agent drops it unacknowledged and seeks the partition back to the cursor. A
record of a partition the worker does not own (or while a rebalance is between revocation and
assignment) is dropped unacknowledged too: its owner applies it, and a write from here would be a
stale state racing the owner's. Pure bookkeeping; the agent in `app.py` does the Kafka side.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

TopicPartition = tuple[str, int]  # faust's TP is a NamedTuple of (topic, partition)


class Admit(enum.Enum):
    """What to do with one input record."""

    APPLY = "apply"  # the partition's next record, or one behind the cursor (a redelivery the state skips)
    HOLE = "hole"  # records before it were never applied: drop it, seek back to the cursor
    NOT_OWNED = "not_owned"  # not this worker's partition (or a rebalance is in progress): drop it


@dataclass
class InputCursors:
    """Per owned input partition, the next offset to apply."""

    next_offset: dict[TopicPartition, int] = field(default_factory=dict)
    owned: frozenset[TopicPartition] = frozenset()
    rebalancing: bool = True  # until the first assignment

    def revoke(self) -> None:
        """Partitions are being revoked: nothing is applied until the next assignment."""
        self.rebalancing = True

    def assign(self, assigned: Iterable[TopicPartition]) -> None:
        """A new assignment. Cursors of partitions kept stay valid (no one else consumed them
        meanwhile); those of partitions gone are forgotten, so a partition that comes back starts
        again from the group's committed offset."""
        self.owned = frozenset(assigned)
        self.rebalancing = False
        for tp in [tp for tp in self.next_offset if tp not in self.owned]:
            del self.next_offset[tp]

    def unstarted(self, tps: Iterable[TopicPartition]) -> set[TopicPartition]:
        """Owned partitions among `tps` that have no cursor yet (start them before admitting)."""
        if self.rebalancing:
            return set()
        return {tp for tp in tps if tp in self.owned and tp not in self.next_offset}

    def start(self, tp: TopicPartition, offset: int) -> None:
        """Set the cursor of a newly owned partition: the group's committed offset (or the log start)."""
        self.next_offset[tp] = offset

    def admit(self, tp: TopicPartition, offset: int) -> Admit:
        """Decide one record's fate; advances the cursor past an applied next record."""
        if self.rebalancing or tp not in self.owned:
            return Admit.NOT_OWNED
        nxt = self.next_offset.get(tp)
        if nxt is None:
            raise KeyError(f"{tp} has no cursor: start() it first")
        if offset > nxt:
            return Admit.HOLE
        if offset == nxt:
            self.next_offset[tp] = offset + 1
        return Admit.APPLY
