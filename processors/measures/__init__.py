"""Clinical measures, one definition each: pure functions over numpy arrays.

balance        activity level (rest removed in the power domain), asymmetry index, affected/healthy ratio
normalisation  %MVC against one reference per muscle pair (the healthy side's MVC)
synkinesis     co-activation index of a non-target muscle, affected vs healthy side
activation     activation features (onset, offset, duration, peak, area) and task latency
fatigue        median / mean frequency and their slope over a sustained contraction

Every other part of mimetic (worker, offline DSP, simulator truth) calls these;
the database's session analysis restates the balance and synkinesis formulas in
SQL and a test keeps the two equal.
"""

from processors.measures.activation import (ActivationFeatures, TaskSpan, activation_features, onset_latency_s,
                                            task_of)
from processors.measures.balance import (activity_level_uv, affected_ratio, asymmetry_index, optional,
                                         pair_active, ratio_from_ai, rest_level_uv, window_level_uv)
from processors.measures.normalisation import mvc_reference_uv, pct_mvc
from processors.measures.synkinesis import DEFAULT_FLAG_THRESHOLD, synkinesis_flag, synkinesis_index

__all__ = [
    "ActivationFeatures", "TaskSpan", "activation_features", "onset_latency_s", "task_of",
    "activity_level_uv", "affected_ratio", "asymmetry_index", "optional", "pair_active", "ratio_from_ai", "rest_level_uv",
    "window_level_uv", "mvc_reference_uv", "pct_mvc", "DEFAULT_FLAG_THRESHOLD", "synkinesis_flag",
    "synkinesis_index",
]
