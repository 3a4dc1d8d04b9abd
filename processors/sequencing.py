"""Per-device frame ordering: duplicates, gaps and reordering, by a documented rule.

Every frame carries the device's sequence number. The rule (pure, so the worker
and the tests share it):

- ``seq == next_seq``: in order; delivered, then any held frames that now follow.
- ``seq < next_seq``: already delivered (a duplicate or a resend) -> dropped and
  counted, or, if it was never delivered (its gap was declared lost, or it is
  older than the device's first frame), *late* -> dead-lettered with reason ``late``.
- ``seq > next_seq``: a gap. The frame is held (up to ``hold_frames`` frames) in
  case the missing ones arrive out of order. When the hold is full, the gap is
  declared lost: ``gap`` is reported with the missing count, the signal chain
  must reset its filter state (no bridging across missing samples), and the held
  frames are delivered in order.

The first frame of a device starts the count at its own number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Delivery:
    """What to do with the frames after one arrival."""

    frames: list[tuple[int, Any]] = field(default_factory=list)  # (seq, payload) in order
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing seq, missing count)
    duplicate: bool = False
    late: bool = False


@dataclass
class SequenceState:
    """Plain-data state of one device's sequence tracking (kept in a stream table)."""

    next_seq: int | None = None
    first_seq: int | None = None
    held: dict[int, Any] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    late_seen: set[int] = field(default_factory=set)
    n_in_order: int = 0
    n_duplicates: int = 0
    n_reordered: int = 0
    n_late: int = 0
    n_gaps: int = 0
    n_missing: int = 0

    def to_state(self) -> dict:
        return {
            "next_seq": self.next_seq,
            "first_seq": self.first_seq,
            "held": {str(k): v for k, v in self.held.items()},
            "lost": sorted(self.lost)[-256:],
            "late_seen": sorted(self.late_seen)[-256:],
            "counters": [self.n_in_order, self.n_duplicates, self.n_reordered, self.n_late, self.n_gaps,
                         self.n_missing],
        }

    @classmethod
    def from_state(cls, d: dict) -> "SequenceState":
        s = cls(next_seq=d["next_seq"], first_seq=d["first_seq"], held={int(k): v for k, v in d["held"].items()}, lost=set(d["lost"]), late_seen=set(d["late_seen"]))
        (s.n_in_order, s.n_duplicates, s.n_reordered, s.n_late, s.n_gaps, s.n_missing) = d["counters"]
        return s


def accept(state: SequenceState, seq: int, payload: Any, hold_frames: int = 4) -> Delivery:
    """Apply the rule above to one arriving frame; mutates `state`."""
    out = Delivery()
    if state.next_seq is None:
        state.next_seq = state.first_seq = seq
    if seq < state.next_seq:
        if seq in state.lost or (seq < state.first_seq and seq not in state.late_seen):
            state.lost.discard(seq)
            state.late_seen.add(seq)
            if len(state.late_seen) > 1024:
                state.late_seen = set(sorted(state.late_seen)[-256:])
            state.n_late += 1
            out.late = True
        else:
            state.n_duplicates += 1
            out.duplicate = True
        return out
    if seq in state.held:
        state.n_duplicates += 1
        out.duplicate = True
        return out
    if seq > state.next_seq:
        state.held[seq] = payload
        if len(state.held) <= hold_frames:
            return out
        # the hold is full: the missing frames are lost
        first_held = min(state.held)
        missing = first_held - state.next_seq
        out.gaps.append((state.next_seq, missing))
        state.n_gaps += 1
        state.n_missing += missing
        state.lost.update(range(state.next_seq, first_held))
        if len(state.lost) > 4096:
            state.lost = set(sorted(state.lost)[-1024:])
        state.next_seq = first_held
    else:
        state.held[seq] = payload
    _drain(state, out)
    return out


def _drain(state: SequenceState, out: Delivery) -> None:
    first = True
    while state.next_seq in state.held:
        seq = state.next_seq
        out.frames.append((seq, state.held.pop(seq)))
        if first and not out.gaps:
            state.n_in_order += 1
        else:
            state.n_reordered += 1
        first = False
        state.next_seq = seq + 1


def flush(state: SequenceState) -> Delivery:
    """Give up on every missing frame before the held ones (device went quiet): deliver them."""
    out = Delivery()
    while state.held:
        first_held = min(state.held)
        if first_held > state.next_seq:
            missing = first_held - state.next_seq
            out.gaps.append((state.next_seq, missing))
            state.n_gaps += 1
            state.n_missing += missing
            state.lost.update(range(state.next_seq, first_held))
            state.next_seq = first_held
        _drain(state, out)
    return out
