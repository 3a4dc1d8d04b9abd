"""A realistic patient/device simulator for facial sEMG therapy sessions, with ground truth.

Pure and deterministic (numpy, seeded): no I/O here. `ingest/send.py` streams what
this module produces to the gateway or to Kafka; `mimetic simulate` is the CLI.

Signal model, per channel (one muscle on one side), in µV::

    x(t) = env(t) * e(t)                      EMG: e is unit-variance Gaussian noise band-passed
                                              50-180 Hz (Butterworth, 2 sections, streaming state):
                                              spectral peak near 95 Hz, median frequency ~100-110 Hz
         + mains(t)                           50 or 60 Hz and 3rd/5th harmonics, per-channel amplitude
         + n(t)                               amplifier white noise (~0.8 µV RMS)
         + motion(t)                          sparse low-frequency half-sine bumps (cable/face movement)
         + stim(t)                            microcurrent sessions: biphasic pulses (+A, -A, one sample
                                              each) at the stimulation frequency, A ~ 3 µV per µA
         (+ faults: electrode lift-off, impedance drift; see below)

    env(t) = sqrt(rest² + (peak · side · a(t))²)   the CLEAN amplitude (RMS) of the EMG component

During each contraction e(t) fatigues: its spectrum compresses towards lower frequencies at a
per-patient rate while its variance stays 1 (``ingest/sim_fatigue.py``, with the fatigue truth
per contraction); ``Simulation(hold_s=...)`` holds every task that long (sustained contractions).

``a(t)`` is the activation of the muscle: during a window of its own task (``MUSCLES``) it
is the repetition's effort (0.5-0.9; 1.0 during MVC calibration) times a smooth
profile (onset latency 0.15-0.35 s, 0.2 s raised-cosine rise, release at the stop
marker + 0.1 s, 0.2 s fall). ``side`` is 1 on the healthy side (times a small natural
asymmetry) and the patient's recovery strength ``s_k`` on the affected side. Rest is
2-5 µV RMS; full contractions 100-300 µV.

Recovery: ``s_k = s_0 + (s_max - s_0) · (1 - exp(-k / tau))`` for responders (k = session
index, tau 3-6 sessions), ``s_k = s_0`` ± 0.02 for non-responders.

Synkinesis (patients flagged with it): on the affected side only, the non-target muscle
of a pair co-activates inside the target task's windows with activation
``level · effort · profile``: smile -> orbicularis_oculi, eye_closure_tight -> zygomaticus.

Ground truth (the `truth` dict, see :func:`Simulation.truth`):

* asymmetry index of muscle m in a session, by the one definition of
  ``processors.measures.balance``: ``AI = (L - R) / (L + R)`` where L and R are the activity
  levels of m's left/right channel, ``sqrt(mean(env^2) - rest^2)`` over every sample inside the
  windows [task_start, task_stop) of m's own task (all repetitions): in this model exactly the
  RMS of ``peak · side · a(t)``, the muscle's own activity. ``ratio_affected_healthy`` is the
  same two levels, affected over healthy; ``left_pct_mvc``/``right_pct_mvc`` the levels as a
  percentage of the healthy side's level in the ``mvc_calibration`` window.
* synkinesis of (target task T, muscle N): the activity level of N on each side inside T's
  windows, ``index = (affected - healthy) / (affected + healthy)``, and the injected ``level``.
* every fault with its start/end (device time µs and seconds into the session); network
  faults list the affected sequence numbers.

Faults: ``electrode_liftoff`` (channel goes to mains pickup ~150 µV + 20 µV noise, impedance
> 1 MΩ), ``impedance_drift`` (impedance climbs to ~60-120 kΩ, noise and hum grow with it),
``low_battery`` (battery starts ~14 % and falls below 10 %), ``over_current`` (measured
stimulation current 1.3-1.6x the prescribed limit, microcurrent only), ``packet_loss``
(frames in the window dropped with probability 0.3: seq gaps), ``duplicates`` (frames sent
twice), ``reordering`` (adjacent frames swapped), ``silent_device`` (the device stalls:
nothing is sent, no frame is generated, the next frame has the next seq but a later
timestamp), and the signal faults of `ingest.sim_faults`: ``clipping`` (an artefact drives one
channel past the converter's range) and ``mains_interference`` (hum picked up on one channel).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import signal as sps

from ingest import sim_faults, wire
from ingest.sim_fatigue import fatigue_truth, session_model
from mimetic.domain import ETIOLOGIES, MUSCLES, Side, channel_name
from processors.measures import (affected_ratio, asymmetry_index, mvc_reference_uv, pair_active, pct_mvc,
                                 synkinesis_index, window_level_uv)

#: channel pairs are filled in this order (2 channels per muscle)
MONTAGE_ORDER: tuple[str, ...] = (
    "zygomaticus", "orbicularis_oculi", "frontalis", "orbicularis_oris", "levator_labii",
    "depressor_anguli_oris", "corrugator", "mentalis", "platysma",
)
#: RMS µV of a full voluntary contraction, healthy side
PEAK_UV: dict[str, float] = {
    "frontalis": 180.0, "corrugator": 120.0, "orbicularis_oculi": 200.0, "zygomaticus": 250.0,
    "levator_labii": 160.0, "orbicularis_oris": 220.0, "depressor_anguli_oris": 130.0,
    "mentalis": 150.0, "platysma": 110.0,
}
#: (target task, non-target muscle) pairs where synkinesis is injected
SYNKINESIS_PAIRS: tuple[tuple[str, str], ...] = (("smile", "orbicularis_oculi"), ("eye_closure_tight", "zygomaticus"))

DEVICE_FAULT_TYPES = ("electrode_liftoff", "impedance_drift", "low_battery", "over_current", "packet_loss",
                      "duplicates", "reordering", "silent_device")
FAULT_TYPES = DEVICE_FAULT_TYPES + sim_faults.SIGNAL_FAULT_TYPES
#: the alert type (processors.records.ALERT_TYPES) the pipeline must raise for an injected fault;
#: duplicates and reordering are repaired and counted, not alerted
FAULT_ALERT = {"electrode_liftoff": "electrode_off", "impedance_drift": "impedance", "low_battery": "battery_low",
               "over_current": "over_current", "packet_loss": "data_gap", "silent_device": "device_silent",
               **sim_faults.SIGNAL_FAULT_ALERT}
STIM_UV_PER_UA = 3.0
SCALE_UV = 0.1  # µV per count: ±3.2 mV range
EMG_BAND_HZ = (50.0, 180.0)
AI_DEFINITION = ("processors.measures.balance: ai = (L - R) / (L + R); L, R = activity level of the muscle's "
                 "left/right channel, sqrt(mean(env^2) - rest^2), env the clean EMG amplitude (µV) at every "
                 "sample inside [task_start, task_stop) of the muscle's own task (mimetic.domain.MUSCLES), all "
                 "repetitions of the session, rest the channel's rest amplitude: the RMS of the muscle's own "
                 "activity. left_pct_mvc/right_pct_mvc: 100 * level / the healthy side's level over the "
                 "mvc_calibration window (processors.measures.normalisation); mvc_*_uv: those MVC levels")
SYNKINESIS_DEFINITION = ("processors.measures.synkinesis: for (target task T, muscle N): activity level of N on the "
                         "affected and healthy side over T's windows (as for ai); index = (affected - healthy) / "
                         "(affected + healthy); level = injected co-activation as a fraction of N's healthy peak")


_SESSION_NS = uuid.UUID("6d696d65-7469-6373-696d-756c61746f72")


def default_channel_map(n_channels: int) -> list[dict[str, Any]]:
    """Muscle pairs in MONTAGE_ORDER: channel 2i = muscle i left, 2i+1 = right."""
    if n_channels < 2 or n_channels % 2 or n_channels // 2 > len(MONTAGE_ORDER):
        raise ValueError(f"channels must be an even number in 2..{2 * len(MONTAGE_ORDER)}")
    out = []
    for i, m in enumerate(MONTAGE_ORDER[: n_channels // 2]):
        out.append({"channel": 2 * i, "muscle": m, "side": "L"})
        out.append({"channel": 2 * i + 1, "muscle": m, "side": "R"})
    return out


def patient_code(rng: np.random.Generator) -> str:
    alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
    return "P-" + "".join(alphabet[i] for i in rng.integers(0, len(alphabet), 5))


@dataclass
class PatientProfile:
    index: int
    code: str
    affected_side: Side
    responder: bool
    etiology: str
    strength0: float
    strength_max: float
    tau_sessions: float
    synkinesis_level0: float  # 0 = none
    natural_asym: float       # healthy-side multiplier on the LEFT side (≈1)
    mains_hz: float
    peak_scale: dict[str, float]
    branch_factor: dict[str, float]  # per-muscle impairment spread around the patient's strength
    seed: int
    #: whether the device states its mains frequency in session_start (else the worker detects it)
    states_mains: bool = False

    def muscle_strength(self, muscle: str, k: int) -> float:
        return float(np.clip(self.strength(k) * self.branch_factor[muscle], 0.05, 1.0))

    def strength(self, k: int) -> float:
        if self.responder:
            return self.strength0 + (self.strength_max - self.strength0) * (1 - math.exp(-k / self.tau_sessions))
        wobble = np.random.default_rng([self.seed, k, 99]).uniform(-0.02, 0.02)
        return float(np.clip(self.strength0 + wobble, 0.05, 1.0))

    def synkinesis(self, k: int) -> float:
        if self.synkinesis_level0 <= 0:
            return 0.0
        return self.synkinesis_level0 * (1 - 0.3 * (1 - math.exp(-k / 6))) if self.responder else self.synkinesis_level0

    @classmethod
    def random(cls, index: int, seed: int) -> "PatientProfile":
        rng = np.random.default_rng([seed, index, 1])
        responder = bool(index % 3 != 2) if index < 3 else bool(rng.random() < 0.65)
        syn = float(rng.uniform(0.12, 0.3)) if (index % 2 == 1 or rng.random() < 0.3) else 0.0
        return cls(
            index=index, code=patient_code(rng), affected_side=Side("L" if rng.random() < 0.5 else "R"),
            responder=responder, etiology=str(rng.choice(ETIOLOGIES[:4])),
            strength0=float(rng.uniform(0.2, 0.5)), strength_max=float(rng.uniform(0.85, 0.97)),
            tau_sessions=float(rng.uniform(1.5, 4.0)), synkinesis_level0=syn,
            natural_asym=float(rng.uniform(0.97, 1.03)), mains_hz=50.0 if rng.random() < 0.7 else 60.0,
            peak_scale={m: float(rng.uniform(0.8, 1.2)) for m in MUSCLES},
            branch_factor={m: float(rng.uniform(0.8, 1.15)) for m in MUSCLES}, seed=seed,
            states_mains=index % 2 == 0,
        )

    def as_truth(self) -> dict[str, Any]:
        return {"code": self.code, "affected_side": self.affected_side.value, "responder": self.responder,
                "etiology": self.etiology, "synkinesis": self.synkinesis_level0 > 0,
                "baseline_strength": round(self.strength0, 4), "mains_hz": self.mains_hz}


@dataclass
class TaskWindow:
    task: str
    repetition: int
    start_s: float
    stop_s: float
    effort: float
    latency_s: float


@dataclass
class Fault:
    type: str
    start_s: float
    end_s: float
    channel: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


def build_protocol(duration_s: float, tasks: list[str], rng: np.random.Generator,
                   hold_s: float | None = None) -> list[TaskWindow]:
    """Rest baseline, MVC calibration, then the tasks in turn with rests, until the end;
    `hold_s` makes every task a sustained contraction of that length (fatigue protocols)."""
    w: list[TaskWindow] = []
    short = duration_s < 40
    hold, gap = (2.0, 1.5) if short else (3.0, 2.5)
    task_hold = hold if hold_s is None else float(hold_s)
    w.append(TaskWindow("rest", 1, 0.5, 2.5, 0.0, 0.0))
    w.append(TaskWindow("mvc_calibration", 1, 3.0, 3.0 + hold, 1.0, float(rng.uniform(0.15, 0.35))))
    t = 3.0 + hold + gap
    reps: dict[str, int] = {}
    i = 0
    while t + task_hold <= duration_s - 2.0 and tasks:
        task = tasks[i % len(tasks)]
        reps[task] = reps.get(task, 0) + 1
        w.append(TaskWindow(task, reps[task], t, t + task_hold, float(rng.uniform(0.5, 0.9)),
                            float(rng.uniform(0.15, 0.35))))
        t += task_hold + gap
        i += 1
    return w


def _profile(t: np.ndarray, win: TaskWindow) -> np.ndarray:
    """Smooth 0..1 activation profile of one window at times t (s)."""
    rise, fall = 0.2, 0.2
    on = win.start_s + win.latency_s
    off = win.stop_s + 0.1
    up = np.clip((t - on) / rise, 0, 1)
    down = np.clip((off + fall - t) / fall, 0, 1)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


@dataclass
class SessionPlan:
    session_id: uuid.UUID
    index: int
    therapy_type: str
    t0_us: int
    duration_s: float
    fs_hz: int
    channel_map: list[dict[str, Any]]
    stimulation: dict[str, Any] | None
    windows: list[TaskWindow]
    faults: list[Fault]
    discomfort: int
    skin_reaction: str
    strength: float
    synkinesis_level: float
    #: the mains frequency stated in session_start, None when the device does not state it
    stated_mains_hz: int | None = None


class SessionSynth:
    """Generates one session of one device frame by frame (stateful streaming filters)."""

    def __init__(self, patient: PatientProfile, plan: SessionPlan, rng: np.random.Generator,
                 frame_ms: int = 50, filt_state: np.ndarray | None = None):
        self.p, self.plan, self.rng = patient, plan, rng
        fs = plan.fs_hz
        self.fs = fs
        self.n_per_frame = max(1, int(round(fs * frame_ms / 1000)))
        cm = sorted(plan.channel_map, key=lambda e: e["channel"])
        self.C = len(cm)
        self.muscles = [e["muscle"] for e in cm]
        self.sides = [Side(e["side"]) for e in cm]
        hi = min(EMG_BAND_HZ[1], 0.45 * fs)
        self.sos = sps.butter(2, [EMG_BAND_HZ[0], hi], btype="bandpass", fs=fs, output="sos")
        imp = np.zeros(int(fs * 2)); imp[0] = 1.0
        self.norm = 1.0 / math.sqrt(float(np.sum(sps.sosfilt(self.sos, imp) ** 2)))
        self.zi = filt_state if filt_state is not None else np.zeros((self.sos.shape[0], self.C, 2))
        r = np.random.default_rng([patient.seed, patient.index, plan.index, 2])
        pair_rest = {m: float(r.uniform(2.0, 5.0)) for m in MUSCLES}
        self.rest_uv = np.array([pair_rest[m] for m in self.muscles]) * r.uniform(0.92, 1.08, self.C)
        self.mains_amp = r.uniform(1.0, 8.0, self.C)
        self.mains_phase = r.uniform(0, 2 * np.pi, self.C)
        self.stim_coupling = r.uniform(0.5, 1.5, self.C)
        self.impedance0 = r.uniform(5.0, 15.0, self.C)
        self.battery0 = float(r.uniform(60, 95))
        self.temp0 = float(r.uniform(32.5, 34.5))
        # per channel: peak µV * side factor
        side_gain = np.array([
            (patient.muscle_strength(m, plan.index) if s == patient.affected_side
             else (patient.natural_asym if s == Side.LEFT else 1.0))
            for m, s in zip(self.muscles, self.sides)])
        self.peak = np.array([PEAK_UV[m] * patient.peak_scale[m] for m in self.muscles]) * side_gain
        self.healthy_peak = np.array([PEAK_UV[m] * patient.peak_scale[m] for m in self.muscles])
        # motion artifacts: Poisson, ~1 per 20 s
        n_mot = int(r.poisson(plan.duration_s / 20))
        self.motion = [(float(r.uniform(0, plan.duration_s)), float(r.uniform(0.2, 0.8)),
                        float(r.uniform(40, 250)) * (1 if r.random() < 0.5 else -1),
                        r.random(self.C) < 0.6) for _ in range(n_mot)]
        self.sample_index = 0
        self.n_total = int(round(plan.duration_s * fs))
        mvc = [w for w in plan.windows if w.task == "mvc_calibration"]
        self._stim_on_s = (mvc[0].stop_s + 0.5) if mvc else 0.0
        # mains with harmonics is periodic over 1 s (integer Hz): one table per channel, indexed by sample
        ph = 2 * np.pi * patient.mains_hz * (np.arange(fs) / fs)[None, :] + self.mains_phase[:, None]
        self._mains_table = np.sin(ph) + 0.3 * np.sin(3 * ph) + 0.15 * np.sin(5 * ph)
        self._mains_fund = np.sin(ph)
        # noise is drawn and filtered in chunks of ~0.5 s (amortises the per-call overhead), then sliced
        self._chunk = max(self.n_per_frame, (fs // 2 // self.n_per_frame) * self.n_per_frame)
        self._emg = np.empty((self.C, 0))
        self._white = np.empty((self.C, 0))
        self.fatigue = session_model(self.muscles, self.sides, patient.affected_side, plan.synkinesis_level,
                                     plan.windows, MUSCLES, SYNKINESIS_PAIRS, fs, (EMG_BAND_HZ[0], hi),
                                     [patient.seed, patient.index, plan.index, 6])

    # --- clean amplitudes -------------------------------------------------------

    def activation(self, t: np.ndarray) -> np.ndarray:
        """a(t) per channel, shape (C, len(t)), including synkinesis on the affected side."""
        a = np.zeros((self.C, t.size))
        lo, hi = float(t[0]), float(t[-1])
        for w in self.plan.windows:
            if w.effort <= 0 or w.stop_s + 0.5 < lo or w.start_s > hi:
                continue
            prof = _profile(t, w) * w.effort
            for c, m in enumerate(self.muscles):
                if w.task == "mvc_calibration" or MUSCLES[m] == w.task:
                    a[c] += prof
                elif self.sides[c] == self.p.affected_side and self.plan.synkinesis_level > 0:
                    for task, mus in SYNKINESIS_PAIRS:
                        if w.task == task and m == mus:
                            # expressed relative to the healthy peak, so divide out the side gain later
                            a[c] += prof * self.plan.synkinesis_level * (self.healthy_peak[c] / self.peak[c])
        return a

    def envelope(self, t: np.ndarray) -> np.ndarray:
        a = self.activation(t)
        return np.sqrt(self.rest_uv[:, None] ** 2 + (self.peak[:, None] * a) ** 2)

    # --- faults helpers -------------------------------------------------------------

    def _faults(self, kind: str) -> list[Fault]:
        return [f for f in self.plan.faults if f.type == kind]

    def impedance(self, t: float) -> np.ndarray:
        z = self.impedance0 * (1 + 0.002 * t / 60)
        for f in self._faults("impedance_drift"):
            if t >= f.start_s:
                frac = min(1.0, (t - f.start_s) / max(1e-6, f.end_s - f.start_s))
                z[f.channel] += frac * (f.details["target_kohm"] - self.impedance0[f.channel])
        for f in self._faults("electrode_liftoff"):
            if f.active(t):
                z[f.channel] = f.details["impedance_kohm"]
        return z

    # --- streaming -------------------------------------------------------------------

    def next_block(self) -> tuple[float, np.ndarray, bool] | None:
        """(t_start_s, µV block (C, n), stim_active) of the next frame, or None at the end."""
        if self.sample_index >= self.n_total:
            return None
        n = min(self.n_per_frame, self.n_total - self.sample_index)
        idx = self.sample_index + np.arange(n)
        t = idx / self.fs
        t0 = float(t[0])
        self.sample_index += n
        if self._emg.shape[1] < n:
            z = self.rng.standard_normal((2, self.C, self._chunk))
            emg, self.zi = sps.sosfilt(self.sos, z[0], axis=-1, zi=self.zi)
            self._emg = np.concatenate([self._emg, emg * self.norm], axis=1)
            self._white = np.concatenate([self._white, z[1]], axis=1)
        emg, self._emg = self._emg[:, :n], self._emg[:, n:]
        emg = self.fatigue.apply(emg, t)  # spectral compression during contractions (ingest.sim_fatigue)
        white, self._white = self._white[:, :n], self._white[:, n:]
        x = emg * self.envelope(t)
        tab = idx % self.fs
        mains_amp = self.mains_amp.copy()
        noise_amp = np.full(self.C, 0.8)
        for f in self._faults("impedance_drift"):
            zc = self.impedance(t0)[f.channel]
            mains_amp[f.channel] *= max(1.0, zc / 15.0)
            noise_amp[f.channel] *= math.sqrt(max(1.0, zc / 15.0))
        x += mains_amp[:, None] * self._mains_table[:, tab]
        x += noise_amp[:, None] * white
        for start, dur, amp, mask in self.motion:
            if start + dur < t0 or start > t[-1]:
                continue
            bump = np.where((t >= start) & (t < start + dur), np.sin(np.pi * (t - start) / dur), 0.0)
            x[mask] += amp * bump
        stim_active = False
        st = self.plan.stimulation
        if st is not None and t0 >= self.stim_on_s:
            stim_active = True
            cur = st["current_ua"]
            for f in self._faults("over_current"):
                if f.active(t0):
                    cur = f.details["current_ua"]
            period = self.fs / st["frequency_hz"]
            k0 = math.ceil((idx[0] - self.stim_on_s * self.fs) / period)
            k1 = math.floor((idx[-1] - self.stim_on_s * self.fs) / period)
            for k in range(k0, k1 + 1):
                i = int(round(self.stim_on_s * self.fs + k * period)) - int(idx[0])
                if 0 <= i < n:
                    x[:, i] += STIM_UV_PER_UA * cur * self.stim_coupling
                    if i + 1 < n:
                        x[:, i + 1] -= STIM_UV_PER_UA * cur * self.stim_coupling
        sim_faults.apply(self.plan.faults, x, t, self._mains_table, tab)
        for f in self._faults("electrode_liftoff"):
            m = (t >= f.start_s) & (t < f.end_s)
            if m.any():
                c = f.channel
                pickup = 150 * self._mains_fund[c, tab] + 20 * white[c] + 60 * np.sin(2 * np.pi * 0.7 * t)
                x[c, m] = pickup[m]
        return t0, x, stim_active

    @property
    def stim_on_s(self) -> float:
        """Stimulation runs from 0.5 s after MVC calibration to the end of the session."""
        return self._stim_on_s


def quantize(x_uv: np.ndarray, scale_uv: float = SCALE_UV) -> np.ndarray:
    return np.clip(np.rint(x_uv / np.float32(scale_uv)), -32768, 32767).astype(np.int16)


@dataclass
class SimRecord:
    """One thing a simulated device sends, in send order."""

    kind: str            # wire.KIND_FRAME / KIND_TELEMETRY / KIND_EVENT
    t_s: float           # seconds into the session (for real-time pacing)
    item: Any            # wire.Frame, wire.Telemetry or an event model
    session_index: int


class _Plans(Sequence["SessionPlan"]):
    """One patient's session plans, each made on first access and kept (streaming mutates them)."""

    def __init__(self, make: Callable[["PatientProfile", int], "SessionPlan"], patient: "PatientProfile", n: int):
        self._make, self._patient, self._n = make, patient, n
        self._made: dict[int, SessionPlan] = {}

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, k):  # type: ignore[override]
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._n))]
        if k < 0:
            k += self._n
        if not 0 <= k < self._n:
            raise IndexError(k)
        if k not in self._made:
            self._made[k] = self._make(self._patient, k)
        return self._made[k]


class Simulation:
    """Patients x sessions for one clinic; iterate :meth:`device_records` per device; :meth:`truth` after."""

    def __init__(self, *, patients: int = 3, sessions: int = 2, duration_s: float = 60.0, fs_hz: int = 2000,
                 channels: int = 8, seed: int = 0, frame_ms: int = 50, start_us: int | None = None,
                 session_gap_s: float = 86400.0, fault_prob: float = 0.35, clinic_id: str = "sim-clinic",
                 device_prefix: str | None = None, therapy_types: tuple[str, ...] = ("microcurrent", "biofeedback_exercise"),
                 course: Sequence[Any] | None = None, time_scale: float | None = None,
                 hold_s: float | None = None):
        if duration_s < 20:
            raise ValueError("sessions must last at least 20 s (calibration + one task each)")
        if course is not None:  # every course's sessions, one a day, ending about now
            sessions = max(c.planned_sessions for c in course)
        self.n_patients, self.n_sessions, self.duration_s = patients, sessions, float(duration_s)
        self.fs_hz, self.channels, self.seed, self.frame_ms = fs_hz, channels, seed, frame_ms
        self.clinic_id = clinic_id
        self.channel_map = default_channel_map(channels)
        self.start_us = start_us if start_us is not None else (wire.now_us() // 1_000_000 - int(sessions * session_gap_s)) * 1_000_000
        self.session_gap_s = session_gap_s
        self.fault_prob = fault_prob
        self.therapy_types = therapy_types
        self.hold_s = hold_s  # task hold (s): None for the standard protocol
        prefix = device_prefix or f"sim{seed}"
        #: ingest.cohort.CoursePatient per patient: its recovery, course type and current limit drive the sessions
        self.course = list(course) if course is not None else None
        self.patients = ([c.profile() for c in self.course] if self.course is not None
                         else [PatientProfile.random(i, seed) for i in range(patients)])
        self.n_patients = patients = len(self.patients)
        #: with a course: session k lasts max(20 s, planned minutes x 60 x time_scale), else duration_s
        self.time_scale = time_scale
        self.device_ids = [f"{prefix}-{i:03d}" for i in range(patients)]
        #: per patient, its sessions' plans; each is made on first use (a benchmark device plans 1000 hour-long
        #: sessions and streams a few seconds of the first), from its own seed, so order does not matter
        self.plans: list[_Plans] = [_Plans(self._plan, p, self.course[p.index].planned_sessions
                                           if self.course is not None else sessions) for p in self.patients]
        self._sent: dict[tuple[int, int], dict[str, Any]] = {}

    def _plan(self, p: PatientProfile, k: int) -> SessionPlan:
        rng = np.random.default_rng([self.seed, p.index, k, 3])
        tasks = list(dict.fromkeys(MUSCLES[e["muscle"]] for e in self.channel_map))
        duration_s = (max(20.0, self.course[p.index].planned_minutes * 60 * self.time_scale)
                      if self.course is not None and self.time_scale else self.duration_s)
        windows = build_protocol(duration_s, tasks, rng, self.hold_s)
        therapy = self.therapy_types[(p.index + k) % len(self.therapy_types)]
        if self.course is not None:
            therapy = self.course[p.index].session_therapy
        stim = None
        if therapy == "microcurrent":
            limit = float(rng.choice([200.0, 300.0, 400.0]))
            if self.course is not None:
                limit = float(self.course[p.index].current_limit_ua)
            stim = {"current_limit_ua": limit, "current_ua": round(limit * float(rng.uniform(0.5, 0.8)), 1),
                    "frequency_hz": float(rng.choice([10.0, 20.0, 30.0])), "pulse_width_us": 500.0,
                    "waveform": "biphasic"}
        faults = self._faults(rng, therapy, windows, duration_s)
        faults += sim_faults.plan(np.random.default_rng([self.seed, p.index, k, 7]), duration_s,
                                  self.channels, self.fault_prob, Fault, faults)
        t0 = self.start_us + int(k * self.session_gap_s * 1e6) + p.index * 1_000_000
        return SessionPlan(
            # deterministic for a given seed AND start time: re-running a seed later gives new session ids
            session_id=uuid.uuid5(_SESSION_NS, f"{self.seed}/{self.device_ids[p.index]}/{k}/{self.start_us}"),
            index=k, therapy_type=therapy, t0_us=t0, duration_s=duration_s, fs_hz=self.fs_hz,
            channel_map=self.channel_map, stimulation=stim, windows=windows, faults=faults,
            discomfort=int(rng.integers(0, 4)) + (3 if any(f.type == "over_current" for f in faults) else 0),
            skin_reaction="redness" if any(f.type == "over_current" for f in faults) else "none",
            strength=p.strength(k), synkinesis_level=p.synkinesis(k),
            stated_mains_hz=int(p.mains_hz) if p.states_mains else None,
        )

    def _faults(self, rng: np.random.Generator, therapy: str, windows: list[TaskWindow],
                duration_s: float | None = None) -> list[Fault]:
        d = self.duration_s if duration_s is None else duration_s
        out: list[Fault] = []
        for ftype in DEVICE_FAULT_TYPES:
            if rng.random() >= self.fault_prob:
                continue
            if ftype == "over_current" and therapy != "microcurrent":
                continue
            length = max(3.0, float(rng.uniform(0.08, 0.15)) * d)
            start = float(np.round(rng.uniform(0.25 * d, max(0.25 * d, 0.9 * d - length)), 3))
            end = round(min(d - 1.0, start + length), 3)
            f = Fault(ftype, start, end)
            if ftype in ("electrode_liftoff", "impedance_drift"):
                f.channel = int(rng.integers(0, self.channels))
                f.details = ({"impedance_kohm": float(rng.uniform(1500, 3000))} if ftype == "electrode_liftoff"
                             else {"target_kohm": float(rng.uniform(60, 120))})
                if ftype == "impedance_drift":
                    f.end_s = round(d, 3)  # drift does not recover within the session
            elif ftype == "low_battery":
                f.start_s, f.end_s = 0.0, round(d, 3)
                f.details = {"start_pct": 14.0, "end_pct": 6.0, "threshold_pct": 10.0}
            elif ftype == "over_current":
                f.details = {"factor": float(rng.uniform(1.3, 1.6))}
            elif ftype == "packet_loss":
                f.details = {"probability": 0.3}
            elif ftype == "silent_device":
                f.end_s = round(min(d - 1.0, start + max(10.0, length)), 3)
            out.append(f)
        return out

    # --- streaming -------------------------------------------------------------------

    def device_records(self, patient_index: int) -> Iterator[SimRecord]:
        """Everything device `patient_index` sends, session after session, in send order."""
        p = self.patients[patient_index]
        device_id = self.device_ids[patient_index]
        seqs = {"frame": 0, "telemetry": 0, "event": 0}
        zi = None
        for plan in self.plans[patient_index]:
            sent = self._sent.setdefault((patient_index, plan.index), {
                "frames_generated": 0, "frames_sent": 0, "dropped_seqs": [], "duplicated_seqs": [],
                "reordered_seqs": [], "first_seq": None, "last_seq": None, "telemetry_sent": 0, "events_sent": 0})
            rng = np.random.default_rng([self.seed, p.index, plan.index, 4])
            net_rng = np.random.default_rng([self.seed, p.index, plan.index, 5])
            synth = SessionSynth(p, plan, rng, self.frame_ms, zi)
            for f in plan.faults:
                if f.type == "over_current":
                    f.details["current_ua"] = round(plan.stimulation["current_limit_ua"] * f.details["factor"], 1)
                    f.details["limit_ua"] = plan.stimulation["current_limit_ua"]
            events = self._events(device_id, plan)
            ev_i = 0
            next_tel = 0.0
            held: SimRecord | None = None  # a frame held back for reordering

            def us(t_s: float) -> int:
                return plan.t0_us + int(round(t_s * 1e6))

            while True:
                blk = synth.next_block()
                t_block = blk[0] if blk else plan.duration_s
                while ev_i < len(events) and events[ev_i][0] <= t_block:
                    t_ev, payload = events[ev_i]
                    ev_i += 1
                    seqs["event"] += 1
                    ev = wire.event_from_json({**payload, "seq": seqs["event"], "t_us": us(t_ev)}, device_id)
                    sent["events_sent"] += 1
                    yield SimRecord(wire.KIND_EVENT, t_ev, ev, plan.index)
                silent = any(f.type == "silent_device" and f.active(t_block) for f in plan.faults)
                while next_tel <= t_block and blk is not None:
                    if not silent:
                        seqs["telemetry"] += 1
                        sent["telemetry_sent"] += 1
                        yield SimRecord(wire.KIND_TELEMETRY, next_tel,
                                        self._telemetry(device_id, plan, synth, next_tel, seqs["telemetry"], us(next_tel)),
                                        plan.index)
                    next_tel += 1.0
                if blk is None:
                    break
                t0, x, stim_active = blk
                if silent:
                    continue  # the device stalls: nothing generated, seq does not advance
                seqs["frame"] += 1
                seq = seqs["frame"]
                sent["frames_generated"] += 1
                sent["first_seq"] = sent["first_seq"] or seq
                sent["last_seq"] = seq
                fr = wire.Frame(device_id=device_id, seq=seq, t_us=us(t0), fs_hz=self.fs_hz, scale_uv=SCALE_UV,
                                samples=quantize(x), session_id=plan.session_id, stim_active=stim_active)
                rec = SimRecord(wire.KIND_FRAME, t0, fr, plan.index)
                active = {f.type for f in plan.faults if f.active(t0)}
                if "packet_loss" in active and net_rng.random() < 0.3:
                    sent["dropped_seqs"].append(seq)
                    continue
                if "reordering" in active and held is None and net_rng.random() < 0.5:
                    held = rec
                    continue
                sent["frames_sent"] += 1
                yield rec
                if held is not None:
                    sent["reordered_seqs"].append(held.item.seq)
                    sent["frames_sent"] += 1
                    yield held
                    held = None
                if "duplicates" in active and net_rng.random() < 0.3:
                    sent["duplicated_seqs"].append(seq)
                    sent["frames_sent"] += 1
                    yield SimRecord(wire.KIND_FRAME, t0, fr, plan.index)
            if held is not None:
                sent["frames_sent"] += 1
                yield held
            while ev_i < len(events):
                t_ev, payload = events[ev_i]
                ev_i += 1
                seqs["event"] += 1
                sent["events_sent"] += 1
                yield SimRecord(wire.KIND_EVENT, t_ev,
                                wire.event_from_json({**payload, "seq": seqs["event"], "t_us": us(t_ev)}, device_id),
                                plan.index)
            zi = synth.zi

    def _events(self, device_id: str, plan: SessionPlan) -> list[tuple[float, dict[str, Any]]]:
        sid = str(plan.session_id)
        ev: list[tuple[float, dict[str, Any]]] = [(0.0, {
            "type": "session_start", "session_id": sid, "therapy_type": plan.therapy_type, "fs_hz": plan.fs_hz,
            "channel_map": plan.channel_map, "stimulation": plan.stimulation, "protocol": "mimetic-sim-v1",
            **({"mains_hz": plan.stated_mains_hz} if plan.stated_mains_hz else {})})]
        for w in plan.windows:
            ev.append((w.start_s, {"type": "task_start", "session_id": sid, "task": w.task, "repetition": w.repetition}))
            ev.append((w.stop_s, {"type": "task_stop", "session_id": sid, "task": w.task, "repetition": w.repetition}))
        ev.append((plan.duration_s - 1.0, {"type": "patient_report", "session_id": sid,
                                           "discomfort": plan.discomfort, "skin_reaction": plan.skin_reaction}))
        ev.append((plan.duration_s, {"type": "session_end", "session_id": sid, "reason": "completed"}))
        ev.sort(key=lambda e: e[0])
        return ev

    def _telemetry(self, device_id: str, plan: SessionPlan, synth: SessionSynth, t: float, seq: int,
                   t_us: int) -> wire.Telemetry:
        battery = synth.battery0 - 2.0 * t / 600
        for f in plan.faults:
            if f.type == "low_battery":
                battery = f.details["start_pct"] + (f.details["end_pct"] - f.details["start_pct"]) * t / plan.duration_s
        current = 0.0
        if plan.stimulation is not None and t >= synth.stim_on_s:
            current = plan.stimulation["current_ua"] * (1 + 0.02 * math.sin(t))
            for f in plan.faults:
                if f.type == "over_current" and f.active(t):
                    current = f.details["current_ua"]
        errors = ["ELECTRODE_OPEN"] if any(f.type == "electrode_liftoff" and f.active(t) for f in plan.faults) else []
        return wire.Telemetry(
            device_id=device_id, seq=seq, t_us=t_us, session_id=plan.session_id,
            battery_pct=round(max(0.0, battery), 2), temperature_c=round(synth.temp0 + 0.5 * t / plan.duration_s, 2),
            impedance_kohm=[round(float(z), 2) for z in synth.impedance(t)],
            stim_current_ua=round(current, 1), signal_strength_dbm=round(-60 + 5 * math.sin(t / 7), 1),
            firmware_errors=errors)

    # --- truth ------------------------------------------------------------------------

    def session_truth(self, patient_index: int, plan: SessionPlan) -> dict[str, Any]:
        p = self.patients[patient_index]
        synth = SessionSynth(p, plan, np.random.default_rng(0), self.frame_ms)
        fs = plan.fs_hz

        def levels(task: str) -> tuple[np.ndarray, int]:
            """Per channel, the activity level over all of the task's windows (NaN, 0 without any)."""
            ws = [w for w in plan.windows if w.task == task]
            if not ws:
                return np.full(synth.C, np.nan), 0
            idx = np.concatenate([np.arange(math.ceil(w.start_s * fs), math.ceil(w.stop_s * fs)) for w in ws])
            env = synth.envelope(idx / fs)
            return np.array([window_level_uv(env[c], float(synth.rest_uv[c])) for c in range(synth.C)]), len(ws)

        mvc, _ = levels("mvc_calibration")

        chan = {(m, s): c for c, (m, s) in enumerate(zip(synth.muscles, synth.sides))}
        muscles: dict[str, Any] = {}
        for m in dict.fromkeys(synth.muscles):
            if (m, Side.LEFT) not in chan or (m, Side.RIGHT) not in chan:
                continue
            lev, n = levels(MUSCLES[m])
            if n == 0:
                continue
            cl, cr = chan[(m, Side.LEFT)], chan[(m, Side.RIGHT)]
            left, right = float(lev[cl]), float(lev[cr])
            ref = mvc_reference_uv(float(mvc[cl]), float(mvc[cr]), p.affected_side)
            rl, rr = float(synth.rest_uv[cl]), float(synth.rest_uv[cr])
            ai = asymmetry_index(left, right) if pair_active(left, right, rl, rr) else np.nan
            muscles[m] = {"task": MUSCLES[m], "ai": _round(ai, 5),
                          "left_uv": round(left, 3), "right_uv": round(right, 3),
                          "ratio_affected_healthy": _round(affected_ratio(left, right, p.affected_side)
                                                            if np.isfinite(ai) else np.nan, 5),
                          "repetitions": n,
                          "rest_left_uv": round(float(synth.rest_uv[cl]), 3),
                          "rest_right_uv": round(float(synth.rest_uv[cr]), 3),
                          "mvc_left_uv": round(float(mvc[cl]), 3), "mvc_right_uv": round(float(mvc[cr]), 3),
                          "left_pct_mvc": _round(pct_mvc(left, ref), 3),
                          "right_pct_mvc": _round(pct_mvc(right, ref), 3)}
        syn = []
        for task, m in SYNKINESIS_PAIRS:
            if (m, Side.LEFT) not in chan or (m, Side.RIGHT) not in chan:
                continue
            lev, n = levels(task)
            if n == 0:
                continue
            ca, ch = chan[(m, p.affected_side)], chan[(m, p.affected_side.other)]
            aff, hea = float(lev[ca]), float(lev[ch])
            syn.append({"target_task": task, "muscle": m, "level": round(plan.synkinesis_level, 4),
                        "present": plan.synkinesis_level > 0, "affected_uv": round(aff, 3),
                        "healthy_uv": round(hea, 3),
                        "index": _round(synkinesis_index(aff, hea, synth.rest_uv[ca], synth.rest_uv[ch]), 5)})

        def us(t_s: float) -> int:
            return plan.t0_us + int(round(t_s * 1e6))

        faults = []
        for f in plan.faults:
            d = {"type": f.type, "start_s": f.start_s, "end_s": f.end_s, "start_us": us(f.start_s),
                 "end_us": us(f.end_s), "channel": f.channel,
                 "channel_name": (channel_name(synth.muscles[f.channel], synth.sides[f.channel])
                                  if f.channel is not None else None),
                 "details": dict(f.details)}
            faults.append(d)
        sent = self._sent.get((patient_index, plan.index), {})
        return {
            "session_id": str(plan.session_id), "index": plan.index, "therapy_type": plan.therapy_type,
            "start_us": plan.t0_us, "end_us": us(plan.duration_s), "duration_s": plan.duration_s,
            "strength_affected": round(plan.strength, 5), "synkinesis_level": round(plan.synkinesis_level, 5),
            "stimulation": plan.stimulation,
            "stimulation_on_s": round(synth.stim_on_s, 3) if plan.stimulation else None,
            "muscles": muscles, "synkinesis": syn, "fatigue": fatigue_truth(synth),
            "tasks": [{"task": w.task, "repetition": w.repetition, "start_us": us(w.start_s), "stop_us": us(w.stop_s),
                       "start_s": w.start_s, "stop_s": w.stop_s, "effort": round(w.effort, 4)} for w in plan.windows],
            "faults": faults,
            "report": {"discomfort": plan.discomfort, "skin_reaction": plan.skin_reaction},
            "sent": sent or None,
        }

    def truth(self) -> dict[str, Any]:
        """Ground truth; the `sent` blocks are filled once the device streams have been consumed."""
        return {
            "schema": "mimetic.simulator.truth/1",
            "seed": self.seed, "clinic_id": self.clinic_id, "fs_hz": self.fs_hz, "channels": self.channels,
            "duration_s": self.duration_s, "frame_ms": self.frame_ms, "scale_uv": SCALE_UV,
            "channel_map": self.channel_map,
            "definitions": {"asymmetry_index": AI_DEFINITION, "synkinesis": SYNKINESIS_DEFINITION,
                            "stimulation_pulses": "microcurrent sessions: a pulse at session time stimulation_on_s "
                            "+ k / frequency_hz (rounded to a sample) on every channel: one sample of +A then one "
                            "of -A, A = 3 µV per µA of current x a per-channel coupling of 0.5-1.5; frames with "
                            "pulses have stim_active set",
                            "faults": "start_s/end_s are seconds into the session, start_us/end_us device time"},
            "patients": [
                {**p.as_truth(), "device_id": self.device_ids[i],
                 "sessions": [self.session_truth(i, plan) for plan in self.plans[i]]}
                for i, p in enumerate(self.patients)
            ],
        }


def _round(v: float | np.ndarray, digits: int) -> float | None:
    """A measure for the truth document: rounded, None where undefined."""
    f = float(v)
    return round(f, digits) if math.isfinite(f) else None


class DeviceStream:
    """An endless simulated device for benchmarks: encoded frames of ``frame_ms`` each.

    >>> s = DeviceStream("bench-001", seed=1)
    >>> t_us, frame_bytes = next(s.frames())

    Sessions of ``session_s`` follow each other back to back (no faults by default);
    ``records()`` also yields telemetry and events (SimRecord, items are wire models).
    """

    def __init__(self, device_id: str, *, fs_hz: int = 2000, channels: int = 8, seed: int = 0, frame_ms: int = 50,
                 session_s: float = 600.0, t0_us: int | None = None, fault_prob: float = 0.0,
                 sessions: int = 1000):
        if not wire.DEVICE_ID_RE.match(device_id):
            raise ValueError("device id must match [A-Za-z0-9._-]{3,64}")
        self.device_id = device_id
        self.sim = Simulation(patients=1, sessions=sessions, duration_s=session_s, fs_hz=fs_hz, channels=channels,
                              seed=seed, frame_ms=frame_ms, start_us=t0_us if t0_us is not None else wire.now_us(),
                              session_gap_s=session_s, fault_prob=fault_prob, device_prefix="x")
        self.sim.device_ids[0] = device_id

    def records(self) -> Iterator[SimRecord]:
        return self.sim.device_records(0)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(device time µs of the first sample, binary frame) for every frame, in send order."""
        for r in self.records():
            if r.kind == wire.KIND_FRAME:
                yield r.item.t_us, wire.encode_frame(r.item)

    def kafka_records(self, source: str = "bench") -> Iterator[tuple[str, int, bytes, bytes, list]]:
        """(kind, device time µs, key, value, headers) exactly as the gateway would write them; send
        each to ``wire.topic_spec_for(kind).name(settings)``."""
        for r in self.records():
            key, value, headers = wire.encode_record(r.item, source=source)
            yield r.kind, r.item.t_us, key, value, headers
