"""Microcurrent stimulation pulses as a shape: remove biphasic one-sample spikes.

A biphasic stimulation pulse seen by an sEMG amplifier is a positive sample
followed by a negative one (or the reverse): steps of +A, -2A, +A in three
consecutive samples. EMG band-limited below ~450 Hz cannot alternate that fast at
1-2 kHz, so the pattern identifies pulses whose amplitude is comparable to the
EMG itself, where a plain step threshold (`filters.StimBlanker`) would either
miss the pulse or blank strong contractions. Each detected pulse's two samples
are replaced by a straight line between their neighbours.

Streaming: pass the previous frame's last sample (`prev_uv`) so a pulse at the
very start of a frame is caught; a pulse whose first sample ends one frame is
left to `StimBlanker`, which blanks its second half.
"""

from __future__ import annotations

import numpy as np


def remove_biphasic_pulses(x_uv: np.ndarray, min_step_uv: float = 60.0,
                           prev_uv: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(signal with pulses interpolated out, number of pulses removed); x is (n_channels, n)."""
    src = np.asarray(x_uv, dtype=np.float64)
    src = src.reshape(1, -1) if src.ndim == 1 else src
    lead = 1 if prev_uv is not None and len(prev_uv) == src.shape[0] else 0
    # one working copy, with the previous frame's last sample in front when given
    x = np.empty((src.shape[0], src.shape[1] + lead))
    x[:, lead:] = src
    if lead:
        x[:, 0] = prev_uv
    if x.shape[1] < 4:
        return x[:, lead:], 0
    d = np.diff(x, axis=-1)  # d[:, i] = x[:, i+1] - x[:, i]
    a, b, c = d[:, :-2], d[:, 1:-1], d[:, 2:]
    up = (a > min_step_uv) & (b < -1.5 * min_step_uv) & (c > min_step_uv)
    down = (a < -min_step_uv) & (b > 1.5 * min_step_uv) & (c < -min_step_uv)
    # the middle step must be about twice the outer ones (+A, -2A, +A)
    shape = np.abs(b) > 1.2 * np.maximum(np.abs(a), np.abs(c))
    hit = (up | down) & shape  # pulse samples at i+1 and i+2
    ch, i = np.nonzero(hit)
    if ch.size == 0:
        return x[:, lead:], 0
    left, right = x[ch, i], x[ch, i + 3]
    x[ch, i + 1] = left + (right - left) / 3.0
    x[ch, i + 2] = left + 2.0 * (right - left) / 3.0
    return x[:, lead:], int(ch.size)
