"""The per-device sequence rule: duplicates dropped, reordering repaired, gaps declared, late frames flagged."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.sequencing import (HOLD_BYTES, MAX_RANGES, RESTART_WINDOW, RangeSet, SequenceState, accept,
                                   flush)


def _run(seqs: list[int], hold: int = 4) -> tuple[list[int], SequenceState, list[tuple[int, int]], int, int]:
    s = SequenceState()
    delivered: list[int] = []
    gaps: list[tuple[int, int]] = []
    late = dup = 0
    for q in seqs:
        d = accept(s, q, f"p{q}", hold_frames=hold)
        delivered += [q2 for q2, _ in d.frames]
        gaps += d.gaps
        late += d.late
        dup += d.duplicate
    d = flush(s)
    delivered += [q2 for q2, _ in d.frames]
    gaps += d.gaps
    return delivered, s, gaps, late, dup


def test_in_order_stream_is_delivered_unchanged() -> None:
    delivered, s, gaps, late, dup = _run(list(range(100, 150)))
    assert delivered == list(range(100, 150)) and not gaps and not late and not dup
    assert s.n_in_order == 50


def test_swapped_frames_are_put_back_in_order() -> None:
    delivered, s, gaps, *_ = _run([0, 1, 3, 2, 4, 6, 5, 7])
    assert delivered == list(range(8)) and not gaps
    assert s.n_reordered == 2


def test_duplicates_are_dropped_and_counted() -> None:
    delivered, s, _gaps, _late, dup = _run([0, 1, 1, 2, 2, 2, 3, 5, 5, 4])
    assert delivered == [0, 1, 2, 3, 4, 5]
    assert dup == 4 and s.n_duplicates == 4


def test_lost_frames_become_a_gap_and_a_late_arrival_is_flagged() -> None:
    seqs = [0, 1, 2] + list(range(5, 12)) + [3]  # 3 and 4 lost; 3 shows up after the hold gave up
    delivered, s, gaps, late, _dup = _run(seqs, hold=4)
    assert delivered == [0, 1, 2] + list(range(5, 12))
    assert gaps == [(3, 2)]
    assert late == 1 and s.n_missing == 2


def test_state_round_trips_through_plain_data() -> None:
    s = SequenceState()
    for q in [0, 1, 4, 5]:
        accept(s, q, q)
    s2 = SequenceState.from_state(s.to_state())
    assert s2.to_state() == s.to_state()
    assert [q for q, _ in accept(s2, 2, 2).frames] == [2]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200), seed=st.integers(0, 10_000), p_dup=st.floats(0, 0.3), p_swap=st.floats(0, 0.3),
       p_loss=st.floats(0, 0.2))
def test_every_frame_is_delivered_at_most_once_and_in_order(n: int, seed: int, p_dup: float, p_swap: float,
                                                            p_loss: float) -> None:
    rng = random.Random(seed)
    seqs = [q for q in range(n) if rng.random() >= p_loss or q == 0]
    for i in range(len(seqs) - 1):
        if rng.random() < p_swap:
            seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
    out: list[int] = []
    for q in seqs:
        out.append(q)
        if rng.random() < p_dup:
            out.append(q)
    delivered, s, gaps, late, dup = _run(out)
    assert delivered == sorted(set(delivered))  # strictly increasing: in order, no duplicates
    assert set(delivered) | {q for q in set(seqs) if q < delivered[0]} <= set(seqs)
    # everything sent was either delivered or arrived late after its gap was declared
    assert len(set(seqs)) == len(delivered) + late
    assert sum(m for _f, m in gaps) == s.n_missing


# --- bounded state, counter restarts (epochs) ------------------------------------------------------

SEQ_MAX = 2**63 - 1
_seqs = st.one_of(st.integers(0, 40), st.integers(0, SEQ_MAX), st.sampled_from([0, 1, SEQ_MAX, SEQ_MAX - 1]),
                  st.integers(SEQ_MAX - 40, SEQ_MAX))


def _state_size(s: SequenceState) -> int:
    return len(str(s.to_state()))


@settings(max_examples=300, deadline=None)
@given(arrivals=st.lists(st.tuples(_seqs, st.integers(0, 10**6), st.booleans(),
                                   st.sampled_from([None, "a", "b", "c"])), max_size=120),
       hold=st.integers(1, 6))
def test_any_seq_stream_keeps_the_state_bounded_and_every_arrival_counted_once(arrivals, hold) -> None:
    s = SequenceState()
    delivered = dup = late = restarts = 0
    last = -1
    for i, (q, t, resent, sid) in enumerate(arrivals):
        d = accept(s, q, i, hold_frames=hold, t_us=t, session=sid, resent=resent)
        outcomes = [d.duplicate, d.late, any(p == i for _q, p in d.frames) or i in s.held.values()]
        assert sum(outcomes) == 1, (q, d)  # exactly one fate per arrival
        for j, (q2, _p) in enumerate(d.frames):  # in order within an epoch
            last = -1 if j == d.restart_at else last
            assert q2 > last
            last = q2
        delivered += len(d.frames)
        dup += d.duplicate
        late += d.late
        restarts += d.restart_at is not None
        assert len(s.held) <= hold
        assert len(s.lost.ranges) <= MAX_RANGES and len(s.late_seen.ranges) <= MAX_RANGES
        assert len(s.sessions) <= 4 and len(s.old_sessions) <= 4
        assert _state_size(s) < 20_000
    delivered += len(flush(s).frames)
    assert not s.held
    assert delivered + dup + late == len(arrivals)
    assert (s.n_in_order + s.n_reordered, s.n_duplicates, s.n_late, s.n_restarts) == (delivered, dup, late,
                                                                                     restarts)
    assert SequenceState.from_state(s.to_state()).to_state() == s.to_state()


@settings(max_examples=100, deadline=None)
@given(jumps=st.lists(st.integers(1, SEQ_MAX // 64), min_size=1, max_size=60))
def test_huge_forward_jumps_cost_nothing_per_missing_frame(jumps) -> None:
    s = SequenceState()
    q = 0
    accept(s, q, None, hold_frames=0)
    for j in jumps:
        q = min(q + j, SEQ_MAX)
        accept(s, q, None, hold_frames=0)
    assert s.n_missing == q + 1 - (s.n_in_order + s.n_reordered)  # every seq up to q: delivered or missing
    assert len(s.lost.ranges) <= MAX_RANGES and _state_size(s) < 10_000


def test_a_frame_in_a_huge_lost_range_is_late_once_and_splits_the_range() -> None:
    s = SequenceState()
    for q in (0, 10**9, 10**9 + 1):
        accept(s, q, q, hold_frames=1)
    assert s.lost.ranges == [[1, 10**9]] and s.n_missing == 10**9 - 1
    d = accept(s, 5 * 10**8, "x", hold_frames=1, resent=True)
    assert d.late and s.lost.ranges == [[1, 5 * 10**8], [5 * 10**8 + 1, 10**9]]
    assert accept(s, 5 * 10**8, "x", hold_frames=1, resent=True).duplicate  # a second copy
    for q in range(2, 2 + 3 * MAX_RANGES, 2):  # splitting keeps at most MAX_RANGES ranges
        accept(s, q, q, hold_frames=1, resent=True)
    assert len(s.lost.ranges) == MAX_RANGES


def test_range_set_merges_adjacent_and_overlapping_ranges() -> None:
    r = RangeSet(cap=3)
    r.add(10, 20)
    r.add(20, 25)
    r.add(5, 11)
    assert r.ranges == [[5, 25]] and 5 in r and 24 in r and 25 not in r and 4 not in r
    r.add(30, 31)
    r.add(40, 41)
    r.add(50, 51)
    assert r.ranges == [[30, 31], [40, 41], [50, 51]]  # the lowest forgotten first
    r.discard(40)
    assert r.ranges == [[30, 31], [50, 51]]


def test_a_counter_restart_of_a_new_session_starts_a_new_epoch() -> None:
    s = SequenceState()
    for q in range(120):
        accept(s, q, ("a", q), t_us=1000 * q, session="A")
    d = accept(s, 0, ("b", 0), t_us=10**6, session="B")
    assert d.restart_at == 0 and d.restart_reason == "new_session" and d.frames == [(0, ("b", 0))]
    for q in range(1, 120):
        assert accept(s, q, ("b", q), t_us=10**6 + 1000 * q, session="B").frames == [(q, ("b", q))]
    assert s.n_restarts == 1 and s.n_in_order == 240 and s.n_duplicates == 0
    # a straggler of the session before the restart is late, not a restart and not a hold
    d = accept(s, 119, ("a", 119), t_us=119_000, session="A")
    assert d.late and s.n_restarts == 1 and s.next_seq == 120


def test_a_counter_restart_without_a_session_is_found_by_device_time() -> None:
    s = SequenceState()
    for q in range(50, 60):
        accept(s, q, q, t_us=1000 * q)
    assert accept(s, 55, 55, t_us=55_000).duplicate  # a copy: same device time
    assert accept(s, 40, 40, t_us=40_000).late  # below the first frame, older: late
    d = accept(s, 3, 3, t_us=70_000)  # behind in seq, ahead in time: the counter started again
    assert d.restart_reason == "newer_device_time" and d.frames == [(3, 3)] and s.first_seq == 3


def test_a_large_backward_jump_is_a_restart_unless_flagged_resent() -> None:
    s = SequenceState()
    for q in range(10_000, 10_010):
        accept(s, q, q)
    assert accept(s, 10_000 - RESTART_WINDOW, "r", resent=True).late  # a resend from long ago
    d = accept(s, 0, "new", resent=False)
    assert d.restart_reason == "backward_jump" and d.frames == [(0, "new")]


def test_held_frames_of_the_old_epoch_are_delivered_before_the_new_one() -> None:
    s = SequenceState()
    for q in (0, 1, 3, 4):  # 2 is missing; 3 and 4 held
        accept(s, q, q, hold_frames=4, session="A")
    d = accept(s, 0, "b0", hold_frames=4, session="B")
    assert [q for q, _ in d.frames] == [3, 4, 0] and d.gaps == [(2, 1)] and d.restart_at == 2


def test_the_hold_is_bounded_in_bytes_too() -> None:
    s = SequenceState()
    big = b"x" * (HOLD_BYTES // 2 + 1)
    accept(s, 0, big)
    assert accept(s, 2, big).frames == [] and list(s.held) == [2]  # one big frame fits: waiting for 1
    d = accept(s, 3, big)  # two do not: the gap is declared at once, though the hold has room for 4 frames
    assert d.gaps == [(1, 1)] and [q for q, _ in d.frames] == [2, 3] and not s.held
    huge = b"x" * (HOLD_BYTES + 1)
    d = accept(s, 6, huge)  # larger than the budget alone: never held
    assert d.gaps == [(4, 2)] and [q for q, _ in d.frames] == [6]
