"""The live left/right balance records of each closed 1 s window. The windows and the rest
baseline learned from the quietest one so far are `processors.dsp.rest_baseline` (shared with
`mimetic dsp`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from processors import records as R
from processors.measures.balance import (activity_level_uv, affected_ratio, asymmetry_index, optional,
                                         pair_active)
from processors.dsp.rest_baseline import (ACTIVATION_K, MIN_REST_WINDOWS, REST_WINDOW_S, ClosedWindow,
                                          RestBaseline, WindowSums)
from processors.worker.device.common import utc
from processors.worker.device.session import ChannelSite

BALANCE_WINDOW_S = REST_WINDOW_S
#: the live window sums are the causal rest baseline's (one window for both)
SlidingBalance = WindowSums
__all__ = ["ACTIVATION_K", "BALANCE_WINDOW_S", "MIN_REST_WINDOWS", "ClosedWindow", "RestBaseline", "SlidingBalance",
           "balance", "pairs", "window_records"]


def balance(left_rms_uv: float, right_rms_uv: float, affected_side: str | None, rest_left_uv: float = 0.0,
            rest_right_uv: float = 0.0) -> tuple[float, float, float | None, float | None]:
    """(left level, right level, AI, ratio affected/healthy) of one pair over a window, by the
    definitions of `processors.measures.balance`: each side's envelope RMS with its rest level
    removed in the power domain. AI and ratio are None when neither side is active (level above
    its rest level) or they are undefined; the ratio also when the affected side is unknown."""
    left = float(activity_level_uv(left_rms_uv * left_rms_uv, rest_left_uv))
    right = float(activity_level_uv(right_rms_uv * right_rms_uv, rest_right_uv))
    if not (math.isfinite(left) and math.isfinite(right)) or not pair_active(left, right, rest_left_uv,
                                                                              rest_right_uv):
        return left, right, None, None
    ai = optional(asymmetry_index(left, right))
    ratio = optional(affected_ratio(left, right, affected_side)) if affected_side in ("L", "R") else None
    return left, right, ai, ratio


def pairs(channel_map: list[ChannelSite], n_channels: int) -> list[tuple[str, int, int]]:
    """(muscle, left channel, right channel) of every muscle with both sides mapped, by muscle."""
    by_site = {(c.muscle, c.side): c.channel for c in channel_map if c.channel < n_channels}
    return [(m, by_site[(m, "L")], by_site[(m, "R")]) for m in sorted({m for m, _s in by_site})
            if (m, "L") in by_site and (m, "R") in by_site]


def window_records(win: ClosedWindow, rest: RestBaseline, *, device_id: str, session_id, t0_us: int,
                   hop_s: float, channel_map: list[ChannelSite], affected: str | None,
                   rest_uv: Callable[[int], float | None] = lambda ch: None,
                   reference_uv: Callable[[int, int], float | None] = lambda cl, cr: None) -> list[R.Record]:
    """The sliding balance records of a closed window: one per active muscle pair, none before the
    rest level is known (activity cannot be told from rest). `rest_uv(ch)`: the session's rest
    level where known (else the quietest window's); `reference_uv(left, right)`: the pair's %MVC
    reference where known, and then the levels are %MVC (``normalized``; the AI is unchanged)."""
    if not rest.ready(len(win.sums)):
        return []
    out: list[R.Record] = []
    t0 = t0_us / 1e6 + win.index * BALANCE_WINDOW_S
    rms = win.rms()
    for muscle, cl, cr in pairs(channel_map, len(win.sums)):
        rl, rr = rest_uv(cl), rest_uv(cr)
        left, right, ai, ratio = balance(rms[cl], rms[cr], affected, rest.level(cl) if rl is None else rl,
                                         rest.level(cr) if rr is None else rr)
        if ai is None:
            continue
        ref = reference_uv(cl, cr)
        if ref is not None:
            left, right = 100.0 * left / ref, 100.0 * right / ref
        out.append(R.BalanceRecord(
            device_id=device_id, session_id=session_id, time=utc(t0), time_end=utc(t0 + win.n * hop_s),
            window_kind="sliding", muscle=muscle, left=left, right=right, ai=ai, ratio=ratio,
            affected_side=affected, normalized=ref is not None))
    return out
