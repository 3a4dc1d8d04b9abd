"""The worker's input cursors (pure): with records delivered out of order, dropped and redelivered the
way Faust does around rebalances, a device state that skips offsets at or below its last applied one
still applies every record exactly once, in order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from processors.worker.cursors import Admit, InputCursors

TP = ("raw.frames", 3)


def _cursors_at(offset: int) -> InputCursors:
    c = InputCursors()
    c.assign([TP])
    c.start(TP, offset)
    return c


def test_the_measured_rebalance_order_applies_each_record_once_in_order() -> None:
    """137 applied, then 141..158 (fetched past records dropped from the buffer), then the seek back
    to the committed 138: 141..158 must wait for 138..140."""
    c = _cursors_at(137)
    assert c.admit(TP, 137) is Admit.APPLY
    assert [c.admit(TP, o) for o in range(141, 159)] == [Admit.HOLE] * 18
    assert [c.admit(TP, o) for o in range(138, 160)] == [Admit.APPLY] * 22
    assert c.next_offset[TP] == 160


def test_redelivered_records_behind_the_cursor_are_admitted_for_the_state_to_skip() -> None:
    c = _cursors_at(10)
    for o in range(10, 20):
        c.admit(TP, o)
    assert c.admit(TP, 12) is Admit.APPLY
    assert c.next_offset[TP] == 20


def test_nothing_is_admitted_between_revocation_and_assignment_or_from_partitions_not_owned() -> None:
    c = _cursors_at(5)
    c.revoke()
    assert c.admit(TP, 5) is Admit.NOT_OWNED
    assert c.unstarted([TP]) == set()
    c.assign([TP])  # kept: the cursor stays valid
    assert c.admit(TP, 5) is Admit.APPLY
    assert c.admit(("raw.frames", 4), 0) is Admit.NOT_OWNED


def test_a_partition_that_leaves_and_comes_back_starts_again_from_the_committed_offset() -> None:
    c = _cursors_at(5)
    c.assign([("raw.frames", 4)])
    assert TP not in c.next_offset
    c.assign([TP])
    assert c.unstarted([TP, ("raw.frames", 9)]) == {TP}
    with pytest.raises(KeyError):
        c.admit(TP, 40)
    c.start(TP, 40)
    assert c.admit(TP, 41) is Admit.HOLE


# A fetcher over a partition of N records: it delivers the record at its position, or jumps ahead
# (records dropped from a buffer), or back (a seek to an older committed offset). A hole makes the
# worker seek the fetcher back to the cursor, as the agent does.
_step = st.one_of(st.just(("deliver", 0)), st.tuples(st.just("skip"), st.integers(1, 7)),
                  st.tuples(st.just("rewind"), st.integers(1, 12)))


@hsettings(max_examples=300, deadline=None)
@given(n=st.integers(1, 60), start=st.integers(0, 5), steps=st.lists(_step, max_size=120))
def test_any_delivery_order_applies_every_record_exactly_once_in_order(n: int, start: int, steps: list) -> None:
    c = _cursors_at(start)
    position, applied_upto, applied = start, start - 1, []

    def deliver() -> None:
        nonlocal position, applied_upto
        offset = position
        position += 1
        verdict = c.admit(TP, offset)
        if verdict is Admit.HOLE:
            position = c.next_offset[TP]  # seek back
        elif verdict is Admit.APPLY and offset > applied_upto:  # the device state's replay rule
            applied.append(offset)
            applied_upto = offset

    for kind, k in steps:
        if kind == "deliver" and position < start + n:
            deliver()
        elif kind == "skip":  # never past the last record: a hole shows only when a later record comes
            position = min(position + k, start + n - 1)
        elif kind == "rewind":
            position = max(start, position - k)
    for _ in range(10 * n + 20):  # then undisturbed delivery to the end
        if position >= start + n:
            break
        deliver()
    assert applied == list(range(start, start + n))
