"""PRO scoring (mimetic.domain): any in-range item answers give a score inside the instrument's
range that the wire and the intake models accept; anything out of range is refused (no services)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimetic.domain import PRO_RANGES, check_pro, pro_score


@st.composite
def answers(draw) -> tuple[str, list[int]]:
    inst = draw(st.sampled_from(sorted(PRO_RANGES)))
    _lo, _hi, _better, n, imin, imax = PRO_RANGES[inst]
    return inst, draw(st.lists(st.integers(imin, imax), min_size=n, max_size=n))


@given(answers())
def test_in_range_items_score_inside_the_range(a: tuple[str, list[int]]) -> None:
    inst, items = a
    lo, hi = PRO_RANGES[inst][:2]
    score = check_pro(inst, None, items)
    assert lo <= score <= hi and score == pro_score(inst, items)
    assert check_pro(inst, score, items) == score          # the score given with its items agrees


@given(answers(), st.integers(0, 14), st.sampled_from([-1, 1]))
def test_an_item_out_of_range_is_refused(a: tuple[str, list[int]], i: int, direction: int) -> None:
    inst, items = a
    _lo, _hi, _b, n, imin, imax = PRO_RANGES[inst]
    items[i % n] = imax + 1 if direction > 0 else imin - 1
    with pytest.raises(ValueError, match="item answers"):
        check_pro(inst, None, items)


def test_extremes() -> None:
    assert check_pro("face", None, [5] * 15) == 100 and check_pro("face", None, [1] * 15) == 0
    assert check_pro("saq", None, [1] * 9) == 20 and check_pro("saq", None, [5] * 9) == 100
    with pytest.raises(ValueError, match="outside"):
        check_pro("grc", 8, None)
    with pytest.raises(ValueError, match="does not match"):
        check_pro("saq", 21, [1] * 9)
