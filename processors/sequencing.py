"""Per-device frame ordering: duplicates, gaps, reordering and counter restarts.

Every frame carries the device's sequence number. The rule (pure, so the worker
and the tests share it):

- ``seq == next_seq``: in order; delivered, then any held frames that now follow.
- ``seq < next_seq``: a *restart* of the device's counter if one of the restart
  conditions below holds; otherwise already delivered (a duplicate or a resend)
  -> dropped and counted, or, if it was never delivered (its gap was declared
  lost, or it is below the epoch's first frame), *late* -> dead-lettered with
  reason ``late``.
- ``seq > next_seq``: a gap. The frame is held (up to ``hold_frames`` frames and
  ``hold_bytes`` bytes of payload, :data:`HOLD_BYTES`) in case the missing ones
  arrive out of order. When the hold is full, the gap is declared lost: ``gap`` is reported with the missing count, the signal chain
  must reset its filter state (no bridging across missing samples), and the held
  frames are delivered in order.

Restart (a new *epoch*). A device's counter restarts on a reboot, a firmware
update or a new session. A frame with ``seq < next_seq`` starts a new epoch when

1. it belongs to a session not seen in this epoch (frames without a session id
   never trigger this), or
2. it is not flagged RESENT and its device time ``t_us`` is later than every
   frame of the epoch so far (a duplicate or a late frame is a copy of, or older
   than, a frame already seen; only a counter that started again can be both
   behind in seq and ahead in time), or
3. it is not flagged RESENT and more than ``restart_window``
   (:data:`RESTART_WINDOW`) below ``next_seq``.

A frame of a session of an earlier epoch that arrives after the restart is late.
At a restart the held frames of the old epoch are delivered (their gaps
declared), then counting starts again at the arriving frame; the counters carry
on across epochs and ``n_restarts`` counts the epochs begun after the first.

The first frame of a device starts the count at its own number.

Bounded state, whatever a device sends: at most ``hold_frames`` held frames of
at most ``hold_bytes`` together (the state must fit one Kafka changelog record;
a frame larger than that is never held), and
the lost and late bookkeeping as merged ``[lo, hi)`` ranges, at most
:data:`MAX_RANGES` of each (the lowest are forgotten first: a frame of a
forgotten lost range that still arrives counts as a duplicate). Every operation
costs O(hold_frames + MAX_RANGES), never anything proportional to a seq value.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

#: a backwards jump of more than this many frames (not flagged RESENT) is a counter restart
RESTART_WINDOW = 4096
#: ranges kept in each of the lost and late-seen lists
MAX_RANGES = 64
#: session ids remembered for the current epoch and for earlier ones
MAX_SESSIONS = 4
#: payload bytes held while waiting for missing frames (the device state is one changelog record)
HOLD_BYTES = 256 * 1024


@dataclass
class RangeSet:
    """Disjoint, merged, sorted half-open ``[lo, hi)`` integer ranges, at most ``cap`` of them."""

    ranges: list[list[int]] = field(default_factory=list)
    cap: int = MAX_RANGES

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self.ranges, [x, float("inf")]) - 1
        return i >= 0 and self.ranges[i][0] <= x < self.ranges[i][1]

    def add(self, lo: int, hi: int) -> None:
        """Add ``[lo, hi)``, merging with overlapping or adjacent ranges."""
        if hi <= lo:
            return
        kept: list[list[int]] = []
        for a, b in self.ranges:
            if b < lo or a > hi:
                kept.append([a, b])
            else:
                lo, hi = min(lo, a), max(hi, b)
        bisect.insort(kept, [lo, hi])
        self.ranges = kept[-self.cap:]

    def discard(self, x: int) -> None:
        """Remove one value (splitting its range)."""
        i = bisect.bisect_right(self.ranges, [x, float("inf")]) - 1
        if i < 0 or not self.ranges[i][0] <= x < self.ranges[i][1]:
            return
        a, b = self.ranges.pop(i)
        parts = [[p, q] for p, q in ((a, x), (x + 1, b)) if q > p]
        self.ranges[i:i] = parts
        self.ranges = self.ranges[-self.cap:]

    def clear(self) -> None:
        self.ranges = []


@dataclass
class Delivery:
    """What to do with the frames after one arrival."""

    frames: list[tuple[int, Any]] = field(default_factory=list)  # (seq, payload) in order
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing seq, missing count)
    duplicate: bool = False
    late: bool = False
    #: a counter restart: ``frames[restart_at:]`` belong to the new epoch (None: no restart)
    restart_at: int | None = None
    restart_reason: str = ""


@dataclass
class SequenceState:
    """Plain-data state of one device's sequence tracking (kept in a stream table)."""

    next_seq: int | None = None
    first_seq: int | None = None
    held: dict[int, Any] = field(default_factory=dict)
    lost: RangeSet = field(default_factory=RangeSet)
    late_seen: RangeSet = field(default_factory=RangeSet)
    #: latest device time of a frame of this epoch (µs); the sessions of this epoch and of earlier
    #: ones (the last MAX_SESSIONS of each)
    max_t_us: int | None = None
    sessions: list[str] = field(default_factory=list)
    old_sessions: list[str] = field(default_factory=list)
    n_in_order: int = 0
    n_duplicates: int = 0
    n_reordered: int = 0
    n_late: int = 0
    n_gaps: int = 0
    n_missing: int = 0
    n_restarts: int = 0

    def to_state(self) -> dict:
        return {
            "next_seq": self.next_seq,
            "first_seq": self.first_seq,
            "held": {str(k): v for k, v in self.held.items()},
            "lost": self.lost.ranges,
            "late_seen": self.late_seen.ranges,
            "epoch": [self.max_t_us, self.sessions, self.old_sessions],
            "counters": [self.n_in_order, self.n_duplicates, self.n_reordered, self.n_late, self.n_gaps,
                         self.n_missing, self.n_restarts],
        }

    @classmethod
    def from_state(cls, d: dict) -> "SequenceState":
        """Also reads the state written before epochs (lost/late as lists of seqs, no epoch)."""
        s = cls(next_seq=d["next_seq"], first_seq=d["first_seq"], held={int(k): v for k, v in d["held"].items()},
                lost=_ranges(d["lost"]), late_seen=_ranges(d["late_seen"]))
        if "epoch" in d:
            s.max_t_us, s.sessions, s.old_sessions = d["epoch"][0], list(d["epoch"][1]), list(d["epoch"][2])
        counters = list(d["counters"]) + [0] * (7 - len(d["counters"]))
        (s.n_in_order, s.n_duplicates, s.n_reordered, s.n_late, s.n_gaps, s.n_missing, s.n_restarts) = counters
        return s


def _ranges(items: list) -> RangeSet:
    """A RangeSet from stored ranges, or from single seqs (the older form)."""
    rs = RangeSet()
    for x in items[-MAX_RANGES * 4:]:
        lo, hi = (x, x + 1) if isinstance(x, int) else (x[0], x[1])
        rs.add(lo, hi)
    return rs


def accept(state: SequenceState, seq: int, payload: Any, hold_frames: int = 4, *, t_us: int | None = None,
           session: str | None = None, resent: bool = False, restart_window: int = RESTART_WINDOW,
           hold_bytes: int = HOLD_BYTES) -> Delivery:
    """Apply the rule above to one arriving frame; mutates `state`.

    ``t_us`` (device time), ``session`` (session id, None if the frame has none) and ``resent``
    (the device's RESENT flag, not the gateway's retry hint) feed the restart conditions; without
    them only condition 3 applies.
    """
    out = Delivery()
    if state.next_seq is None:
        _start_epoch(state, seq)
    elif session is not None and session in state.old_sessions and session not in state.sessions:
        return _late(state, seq, out)  # a frame of a session of an earlier epoch
    elif seq < state.next_seq:
        reason = _restart_reason(state, seq, t_us, session, resent, restart_window)
        if reason:
            _deliver_held(state, out)
            out.restart_at, out.restart_reason = len(out.frames), reason
            state.n_restarts += 1
            _start_epoch(state, seq)
    if session is not None and session not in state.sessions:
        state.sessions = (state.sessions + [session])[-MAX_SESSIONS:]
    if seq < state.next_seq:
        if seq in state.lost or (seq < state.first_seq and seq not in state.late_seen):
            state.lost.discard(seq)
            if seq < state.first_seq:
                state.late_seen.add(seq, seq + 1)
            return _late(state, seq, out)
        state.n_duplicates += 1
        out.duplicate = True
        return out
    if seq in state.held:
        state.n_duplicates += 1
        out.duplicate = True
        return out
    if t_us is not None and (state.max_t_us is None or t_us > state.max_t_us):
        state.max_t_us = t_us
    state.held[seq] = payload
    _drain(state, out)
    while state.held and (len(state.held) > hold_frames or _held_bytes(state) > hold_bytes):
        _declare_gap(state, out)  # the hold is full: the missing frames are lost
        _drain(state, out)
    return out


def _held_bytes(state: SequenceState) -> int:
    return sum(len(p) for p in state.held.values() if isinstance(p, (bytes, bytearray, memoryview)))


def _restart_reason(state: SequenceState, seq: int, t_us: int | None, session: str | None, resent: bool,
                    restart_window: int) -> str:
    if session is not None and session not in state.sessions:
        return "new_session"
    if resent:
        return ""
    if t_us is not None and state.max_t_us is not None and t_us > state.max_t_us:
        return "newer_device_time"
    if state.next_seq - seq > restart_window:
        return "backward_jump"
    return ""


def _start_epoch(state: SequenceState, seq: int) -> None:
    state.next_seq = state.first_seq = seq
    state.held.clear()
    state.lost.clear()
    state.late_seen.clear()
    state.max_t_us = None
    state.old_sessions = (state.old_sessions + state.sessions)[-MAX_SESSIONS:]
    state.sessions = []


def _late(state: SequenceState, seq: int, out: Delivery) -> Delivery:
    state.n_late += 1
    out.late = True
    return out


def _declare_gap(state: SequenceState, out: Delivery) -> None:
    first_held = min(state.held)
    missing = first_held - state.next_seq
    out.gaps.append((state.next_seq, missing))
    state.n_gaps += 1
    state.n_missing += missing
    state.lost.add(state.next_seq, first_held)
    state.next_seq = first_held


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


def _deliver_held(state: SequenceState, out: Delivery) -> None:
    while state.held:
        if min(state.held) > state.next_seq:
            _declare_gap(state, out)
        _drain(state, out)


def flush(state: SequenceState) -> Delivery:
    """Give up on every missing frame before the held ones (device went quiet): deliver them."""
    out = Delivery()
    _deliver_held(state, out)
    return out
