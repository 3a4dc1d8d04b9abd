"""mimetic DSP core: pure numpy/scipy functions and small streaming state objects
for facial sEMG. No Kafka, no database here.

Streaming, one object per device (all channels at once):
    chain = MultiChannelChain(ChainConfig(fs_hz=2000, n_channels=8, mains_hz=50))
    out = chain.process(frame_uv)            # (n_channels, n) float64 µV, any n
    out.envelope_uv, out.envelope_index0, out.envelope_times_s, out.quality, out.activations
    chain.set_baselines([...])               # per-channel Baseline / threshold µV (rest task) -> activations
    blob = chain.to_bytes(); chain = MultiChannelChain.from_bytes(blob)   # or to_state()/from_state(dict)
Balance: SlidingBalance (sliding windows), TaskWindowBalance (per task / repetition).
Offline: processors.dsp.offline.process_signals (the `mimetic dsp` command).
"""

from processors.dsp.activation import (Activation, ActivationDetector, Baseline, baseline_from_rest,
                                       detect_activations, estimate_baseline)
from processors.dsp.balance import (SlidingBalance, TaskWindowBalance, affected_ratio, asymmetry_index, pair_balance,
                                    window_balance)
from processors.dsp.chain import ChainConfig, ChainOutput, ChannelChain, MultiChannelChain, QualityWindow
from processors.dsp.envelope import EnvelopeTiming, LinearEnvelope, MovingRMS, linear_envelope, moving_rms
from processors.dsp.state import pack_state, unpack_state
from processors.dsp.filters import (CombNotch, OffsetRemover, SOSFilter, StimBlanker, condition, design_bandpass,
                                    design_notch_sos, make_notch)

__all__ = [
    "Activation", "ActivationDetector", "Baseline", "baseline_from_rest", "detect_activations", "estimate_baseline",
    "SlidingBalance", "TaskWindowBalance", "affected_ratio", "asymmetry_index", "pair_balance", "window_balance",
    "ChainConfig", "ChainOutput", "ChannelChain", "MultiChannelChain", "QualityWindow",
    "EnvelopeTiming", "LinearEnvelope", "MovingRMS", "linear_envelope", "moving_rms",
    "CombNotch", "OffsetRemover", "SOSFilter", "StimBlanker", "condition", "design_bandpass", "design_notch_sos",
    "make_notch", "pack_state", "unpack_state",
]
