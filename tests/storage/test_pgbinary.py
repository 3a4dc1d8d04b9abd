"""The binary encoders refuse values their column types cannot hold (pure, no services)."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.storage import pgbinary
from processors.storage.writer import COPY_SPECS

from .helpers import T0

ENV = np.zeros((2, 3), dtype=np.float32)


@given(st.integers(-(2 ** 70), 2 ** 70))
def test_int_checkers_accept_exactly_their_range(v: int) -> None:
    for copy_type, bits in (("int2", 16), ("int4", 32), ("int8", 64)):
        check = pgbinary.value_checker(copy_type)
        fits = -(2 ** (bits - 1)) <= v < 2 ** (bits - 1)
        if fits:
            check(v)
        else:
            with pytest.raises(pgbinary.EncodeError):
                check(v)


@pytest.mark.parametrize("v", [1e39, -1e300, 3.5e38])
def test_float4_checker_refuses_finite_values_beyond_float32(v: float) -> None:
    with pytest.raises(pgbinary.EncodeError):
        pgbinary.value_checker("float4")(v)
    with pytest.raises(pgbinary.EncodeError):
        pgbinary.value_checker("float4[]")([1.0, v])


@pytest.mark.parametrize("v", [math.nan, math.inf, -math.inf, 3.4e38, 0.0, None])
def test_float4_checker_leaves_representable_values_to_the_columns(v) -> None:
    pgbinary.value_checker("float4")(v)   # NaN/inf are float4 values; a CHECK may still refuse them


@pytest.mark.parametrize("seq", [2 ** 63, 2 ** 64 - 1, -(2 ** 63) - 1])
def test_envelope_row_refuses_a_seq_out_of_int8(seq: int) -> None:
    with pytest.raises(pgbinary.EncodeError, match="seq"):
        pgbinary.envelope_row(T0, "dev-1", seq, uuid.uuid4(), 100.0, ENV, 0, False)


@pytest.mark.parametrize("fs_hz", [math.nan, math.inf, 0.0, -5.0, 1e300])
def test_envelope_row_refuses_a_rate_that_is_no_rate(fs_hz: float) -> None:
    with pytest.raises(pgbinary.EncodeError):
        pgbinary.envelope_row(T0, "dev-1", 1, None, fs_hz, ENV, 0, False)


def test_envelope_row_refuses_clipped_out_of_int4() -> None:
    with pytest.raises(pgbinary.EncodeError):
        pgbinary.envelope_row(T0, "dev-1", 1, None, 100.0, ENV, 2 ** 31, False)


def test_every_numeric_copy_column_is_checked() -> None:
    for spec in COPY_SPECS.values():
        for name, copy_type in spec.columns:
            if copy_type.startswith(("int", "float")):
                assert pgbinary.value_checker(copy_type) is not None, (spec.table, name)
