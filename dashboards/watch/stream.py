"""Feeds `LiveState` from Kafka and redraws it: the loop behind `mimetic watch`.

Start-up reads the registry once (device, patient, channel map, the open session
and open alerts), then a consumer of its own (kafka-python, partitions assigned by
hand, no group, nothing committed) reads the device's partition of the derived
topics and of the raw session events (for the current task), starting a few
seconds back in time. Records of other devices on the partition are skipped by
key before decoding; one poll drains what is there, so the view stays at the head
of the stream.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from rich.console import Console
from rich.live import Live

from mimetic import topics
from mimetic.config import Settings
from mimetic.topics import partition_of
from processors import records as R

from .state import LiveState
from .view import render

WANTED_KINDS = {b"envelope", b"quality", b"balance", b"alert", b"session_summary"}
CONTEXT_LOOKBACK_S = 120.0   # session events and summaries: enough to know the current task and map
ALERT_LOOKBACK_S = 600.0     # alert raises/clears replayed over the registry's open alerts
POLL_MS = 50
MAX_POLL_RECORDS = 5000


@dataclass(frozen=True)
class WatchTarget:
    """Who to watch: a device, or a patient (their latest device)."""

    device_id: str | None = None
    patient_code: str | None = None


def resolve_target(s: Settings, target: WatchTarget) -> WatchTarget:
    """The device id (and patient code) of `target`; LookupError when there is none."""
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        if target.device_id is not None:
            row = conn.execute("select d.device_id, p.code from device d left join patient p using (patient_id) "
                               "where d.device_id = %s", (target.device_id,)).fetchone()
            what = f"no device {target.device_id!r}"
        else:
            row = conn.execute("select d.device_id, p.code from device d join patient p using (patient_id) "
                               "where p.code = %s order by d.created_at desc limit 1",
                               (target.patient_code,)).fetchone()
            what = f"no device of patient {target.patient_code!r}"
    if row is None:
        raise LookupError(what)
    return WatchTarget(device_id=row[0], patient_code=row[1])


def initial_state(s: Settings, target: WatchTarget) -> LiveState:
    """What the registry knows: patient, channel map, the open session, open alerts."""
    st = LiveState(device_id=target.device_id or "", patient_code=target.patient_code)
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        row = conn.execute("select d.channel_map, p.affected_side from device d left join patient p "
                           "using (patient_id) where d.device_id = %s", (st.device_id,)).fetchone()
        if row:
            st.set_channel_map(row[0] or [])
            st.affected_side = row[1]
        sess = conn.execute("select session_id::text, therapy_type from session_summary where device_id = %s "
                            "and status = 'open' order by started_at desc limit 1", (st.device_id,)).fetchone()
        if sess:
            st.session_id, st.therapy = sess
        for a in conn.execute("select alert_id, alert_type, severity, channel, raised_at, message from alert "
                              "where device_id = %s and cleared_at is null order by raised_at desc limit 50",
                              (st.device_id,)):
            st.apply_alert(R.AlertRecord(alert_id=a[0], device_id=st.device_id, alert_type=a[1], severity=a[2],
                                         channel=a[3], state="raised", time=a[4], raised_at=a[4], message=a[5]))
    st.records = 0
    return st


class DeviceFeed:
    """The device's records from Kafka, applied to a `LiveState`."""

    def __init__(self, s: Settings, state: LiveState, lookback_s: float):
        from kafka import KafkaConsumer, TopicPartition

        from mimetic.kafka_security import client_kwargs

        self.state = state
        self.key = state.device_id.encode()
        self.events_topic = topics.SESSION_EVENTS.name(s)
        self.consumer = KafkaConsumer(bootstrap_servers=s.bootstrap_servers(), group_id=None, enable_auto_commit=False,
                                      client_id=f"mimetic-watch-{state.device_id}", fetch_max_wait_ms=POLL_MS,
                                      **client_kwargs(s))
        now_ms = int(time.time() * 1000)
        starts: dict = {}
        for spec, back_s in ((topics.FEATURES, lookback_s), (topics.BALANCE, lookback_s),
                             (topics.ALERTS, ALERT_LOOKBACK_S), (topics.SESSIONS, CONTEXT_LOOKBACK_S),
                             (topics.SESSION_EVENTS, CONTEXT_LOOKBACK_S)):
            name = spec.name(s)
            parts = self.consumer.partitions_for_topic(name)
            if not parts:
                raise LookupError(f"no Kafka topic {name} (topic prefix {s.topic_prefix!r})")
            starts[TopicPartition(name, partition_of(self.key, len(parts)))] = now_ms - int(back_s * 1000)
        self.consumer.assign(list(starts))
        found = self.consumer.offsets_for_times(starts)
        ends = self.consumer.end_offsets(list(starts))
        for tp in starts:
            self.consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])

    def poll(self) -> int:
        """Apply what has arrived; returns the number of the device's records applied."""
        from ingest.wire import WireError, decode_event

        n = 0
        batch = self.consumer.poll(timeout_ms=POLL_MS, max_records=MAX_POLL_RECORDS)
        for tp, msgs in batch.items():
            raw_events = tp.topic == self.events_topic
            for m in msgs:
                if m.key != self.key:
                    continue
                try:
                    if raw_events:
                        self.state.apply_event(decode_event(m.value))
                    else:
                        kind = dict(m.headers or ()).get("kind")
                        if kind is not None and kind not in WANTED_KINDS:
                            continue
                        self._apply(R.decode(m.value))
                except (R.DecodeError, WireError, ValueError):
                    continue  # the pipeline dead-letters bad input; the view skips it
                n += 1
        return n

    def _apply(self, rec: R.Record) -> None:
        st = self.state
        if isinstance(rec, R.EnvelopeFrame):
            st.apply_envelope(rec)
        elif isinstance(rec, R.QualityRecord):
            st.apply_quality(rec)
        elif isinstance(rec, R.BalanceRecord):
            st.apply_balance(rec)
        elif isinstance(rec, R.AlertRecord):
            st.apply_alert(rec)
        elif isinstance(rec, R.SessionSummary):
            st.apply_summary(rec)

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def watch(s: Settings, target: WatchTarget, console: Console, *, lookback_s: float = 5.0,
          refresh_per_s: float = 8.0, stop: threading.Event | None = None,
          check: Callable[[], None] | None = None) -> None:
    """Show the live view until `stop` is set (or Ctrl-C); `check` runs about once a second."""
    if target.device_id is None or target.patient_code is None:
        target = resolve_target(s, target)
    state = initial_state(s, target)
    feed = DeviceFeed(s, state, lookback_s)
    period_s = 1.0 / max(0.5, min(refresh_per_s, 30.0))
    try:
        with Live(render(state), console=console, auto_refresh=False, transient=False,
                  vertical_overflow="crop") as live:
            next_draw = next_check = time.monotonic()
            while stop is None or not stop.is_set():
                feed.poll()
                t = time.monotonic()
                if t >= next_draw:
                    live.update(render(state), refresh=True)
                    next_draw = t + period_s
                if check is not None and t >= next_check:
                    check()
                    next_check = t + 1.0
            live.update(render(state), refresh=True)
    finally:
        feed.close()
