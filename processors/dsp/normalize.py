"""Envelope scaling per channel: envelope / (envelope reference of a maximal voluntary
contraction) x 100. The reference is plain data (a dict), so it can live in a stream
table or a database row and be applied to any later session.

This is a signal-level helper (plots, per-channel displays). The clinical %MVC of a
muscle pair is `processors.measures.normalisation`: activity levels against ONE
reference per pair, the healthy side's MVC. Scaling each side by its own MVC, as this
module does when given both sides' references, cancels the asymmetry the clinic
measures (the affected side's MVC is weak too); do not compute AI from its output.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from processors.dsp.filters import as_2d


def mvc_reference(envelope: np.ndarray, channel_names: list[str], envelope_fs_hz: float,
                  plateau_s: float = 0.5, rest_uv: list[float] | None = None) -> dict[str, Any]:
    """Reference from a calibration window: per channel, the highest mean envelope over
    any `plateau_s` stretch (robust to a single spike, unlike the max sample).

    Returns {"kind": "mvc", "plateau_s": ..., "channels": {name: {"mvc_uv": x, "rest_uv": r}}}.
    """
    env = as_2d(envelope)
    if env.shape[0] != len(channel_names):
        raise ValueError("one name per envelope row expected")
    n = max(1, min(env.shape[1], int(round(plateau_s * envelope_fs_hz))))
    chans = {}
    for i, name in enumerate(channel_names):
        e = env[i]
        if e.size == 0:
            raise ValueError("empty calibration window")
        best = float(np.max(np.convolve(e, np.ones(n) / n, mode="valid")))
        chans[name] = {"mvc_uv": best, "rest_uv": 0.0 if rest_uv is None else float(rest_uv[i])}
    return {"kind": "mvc", "plateau_s": float(plateau_s), "channels": chans}


def normalize(envelope: np.ndarray, channel_names: list[str], reference: dict[str, Any],
              subtract_rest: bool = False) -> np.ndarray:
    """Envelope in µV -> %MVC, per channel, using a reference from `mvc_reference`.

    Channels missing from the reference or with a non-positive MVC become NaN (no blow-up).
    """
    env = as_2d(envelope)
    out = np.full(env.shape, np.nan)
    for i, name in enumerate(channel_names):
        ref = reference["channels"].get(name)
        if not ref:
            continue
        rest = ref.get("rest_uv", 0.0) if subtract_rest else 0.0
        span = ref["mvc_uv"] - rest
        if span > 0:
            out[i] = (env[i] - rest) / span * 100.0
    return out
