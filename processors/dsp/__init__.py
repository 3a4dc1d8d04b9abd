"""mimetic DSP core: pure numpy/scipy functions and small streaming state objects
for facial sEMG. No Kafka, no database here.

Streaming entry point for a device: `MultiChannelChain(ChainConfig(fs_hz, n_channels, ...))`,
`.process(frame)` -> `ChainOutput`, `.to_state()` / `MultiChannelChain.from_state(d)`.
Offline: `processors.dsp.offline.process_recording`.
"""

from processors.dsp.activation import (Activation, ActivationDetector, Baseline, baseline_from_rest,
                                       detect_activations, estimate_baseline)
from processors.dsp.balance import SlidingBalance, affected_ratio, asymmetry_index, pair_balance, window_balance
from processors.dsp.chain import ChainConfig, ChainOutput, ChannelChain, MultiChannelChain, QualityWindow
from processors.dsp.envelope import EnvelopeTiming, LinearEnvelope, MovingRMS, linear_envelope, moving_rms
from processors.dsp.filters import (CombNotch, OffsetRemover, SOSFilter, StimBlanker, condition, design_bandpass,
                                    design_notch_sos, make_notch)

__all__ = [
    "Activation", "ActivationDetector", "Baseline", "baseline_from_rest", "detect_activations", "estimate_baseline",
    "SlidingBalance", "affected_ratio", "asymmetry_index", "pair_balance", "window_balance",
    "ChainConfig", "ChainOutput", "ChannelChain", "MultiChannelChain", "QualityWindow",
    "EnvelopeTiming", "LinearEnvelope", "MovingRMS", "linear_envelope", "moving_rms",
    "CombNotch", "OffsetRemover", "SOSFilter", "StimBlanker", "condition", "design_bandpass", "design_notch_sos",
    "make_notch",
]
