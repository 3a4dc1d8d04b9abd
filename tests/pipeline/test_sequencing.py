"""The per-device sequence rule: duplicates dropped, reordering repaired, gaps declared, late frames flagged."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.sequencing import SequenceState, accept, flush


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
