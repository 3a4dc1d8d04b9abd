"""Signal faults the simulator injects into the EMG itself: amplifier clipping and mains hum.

Each has an alert the pipeline must raise on the fault's channel (`SIGNAL_FAULT_ALERT`), so
`mimetic bench alerts` can measure recall for `clipping` and `mains_noise`, not only false
alerts. They are planned from a random stream of their own (`plan`), so adding them changes
no other fault, task or report of an existing seed.

* ``clipping``: a slow, large artefact (cable motion, an offset step) drives one channel past
  the converter's range: a sine at `ARTEFACT_HZ` whose peak is 1.05-1.2 times the rail, so
  about 20-37 % of the samples sit at the rails (over the alert's 1 %), while most 25 ms hops
  still move (under the `electrode_off` flat-signal rule: contact is fine).
* ``mains_interference``: a loose ground or an unshielded cable picks up the patient's mains
  (its 50/60 Hz line and odd harmonics, as the simulator's own hum) on one channel at
  60-150 µV peak, 45-110 µV RMS (over `MIMETIC_WORKER_MAINS_ALERT_UV`, 20 µV).

Both last 12-20 s (longer than the alerts' raise delay of 5 s plus a 1 s window), start after
the session's first quarter and end 2 s before it, clear of each other and of the device faults
that would hide them (`HIDING`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

SIGNAL_FAULT_TYPES: tuple[str, ...] = ("clipping", "mains_interference")
#: the alert type each must raise, on its channel
SIGNAL_FAULT_ALERT: dict[str, str] = {"clipping": "clipping", "mains_interference": "mains_noise"}
ARTEFACT_HZ = 0.7
FULL_SCALE_UV = 32767 * 0.1  # the simulator's rail (SCALE_UV per count)
LENGTH_S = (12.0, 20.0)


#: device faults a signal fault must not overlap: they hide the signal it changes (no frames, frames
#: dropped so no 1 s window completes, or the electrode's own pickup on its channel)
HIDING = ("silent_device", "packet_loss", "electrode_liftoff")
MARGIN_S = 2.0


def plan(rng: np.random.Generator, duration_s: float, channels: int, fault_prob: float,
         make: Callable[..., Any], others: list[Any] = ()) -> list[Any]:
    """The signal faults of one session (`make(type, start_s, end_s, channel, details)` builds each),
    each with probability `fault_prob`, placed clear of the session's `HIDING` faults (`others`)
    and of each other; none where no such span is left (short sessions)."""
    out: list[Any] = []
    for ftype in SIGNAL_FAULT_TYPES:
        draw = rng.random()
        length = float(rng.uniform(*LENGTH_S))
        where = float(rng.uniform(0.0, 1.0))
        channel = int(rng.integers(0, channels))
        level = float(rng.uniform(1.05, 1.2)) if ftype == "clipping" else float(rng.uniform(60.0, 150.0))
        if draw >= fault_prob:
            continue
        busy = sorted((f.start_s - MARGIN_S, f.end_s + MARGIN_S) for f in [*others, *out]
                      if f.type in HIDING or f.type in SIGNAL_FAULT_ALERT)
        starts = _free_starts(0.25 * duration_s, duration_s - 2.0, length, busy)
        if not starts:
            continue
        lo, hi = starts[int(where * len(starts)) % len(starts)]
        start = round(lo + where * (hi - lo), 3)
        details = ({"peak_over_rail": round(level, 3), "artefact_hz": ARTEFACT_HZ} if ftype == "clipping"
                   else {"amplitude_uv": round(level, 1)})
        out.append(make(ftype, start, round(start + length, 3), channel, details))
    return out


def _free_starts(lo: float, end: float, length: float, busy: list[tuple[float, float]]
                 ) -> list[tuple[float, float]]:
    """Ranges of start times in [lo, end - length] whose span of `length` avoids every busy span."""
    out, t = [], lo
    for b0, b1 in [*busy, (end, end)]:
        if min(b0, end) - length >= t:
            out.append((t, min(b0, end) - length))
        t = max(t, b1)
    return out


def apply(faults: list[Any], x_uv: np.ndarray, t_s: np.ndarray, mains_table: np.ndarray, tab: np.ndarray) -> None:
    """Add the active signal faults to one block `x_uv` (channels, n) at times `t_s` (in place);
    `mains_table[:, tab]` is the patient's hum (unit fundamental) at those samples."""
    for f in faults:
        if f.type not in SIGNAL_FAULT_ALERT or t_s[-1] < f.start_s or t_s[0] >= f.end_s:
            continue
        m = (t_s >= f.start_s) & (t_s < f.end_s)
        c = f.channel
        if f.type == "clipping":
            peak = f.details["peak_over_rail"] * FULL_SCALE_UV
            x_uv[c, m] += peak * np.sin(2 * np.pi * f.details["artefact_hz"] * (t_s[m] - f.start_s) + np.pi / 2)
        else:
            x_uv[c, m] += f.details["amplitude_uv"] * mains_table[c, tab[m]]
