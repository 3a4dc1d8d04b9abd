"""Envelope storage layouts measured: COPY throughput and size on the real database.

Layout A (chosen): one row per device frame, 2-D real[][] (channels x samples).
Layout B: one row per channel and frame, 1-D real[].
Both go through the sink's path: binary COPY into a temp staging table, then
INSERT ... SELECT ... ON CONFLICT DO NOTHING into a hypertable with the natural-key
unique index. Scratch hypertables are created and dropped in the given database.

`mimetic bench storage` (or `python -m processors.storage.bench`) prints JSON.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg

from mimetic.config import Settings
from processors.storage import pgbinary

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _frames(devices: int, channels: int, fps: int, seconds: float, samples: int):
    sessions = [uuid.uuid4() for _ in range(devices)]
    rng = np.random.default_rng(0)
    n = int(fps * seconds)
    block = rng.random((64, channels, samples), dtype=np.float32) * 100
    for i in range(n):
        t = T0 + timedelta(seconds=i / fps)
        for d in range(devices):
            yield t, f"bench-dev-{d:04d}", i, sessions[d], block[(i + d) % 64]


def bench_envelope_layouts(s: Settings, devices: int = 100, channels: int = 8, fps: int = 20,
                           seconds: float = 10.0, samples: int = 2, env_fs: float = 40.0) -> dict:
    frames = list(_frames(devices, channels, fps, seconds, samples))
    out: dict = {"devices": devices, "channels": channels, "frames_per_s_per_device": fps,
                 "samples_per_channel_per_frame": samples, "seconds_of_data": seconds,
                 "frames": len(frames), "needed_frames_per_s": devices * fps}
    with psycopg.connect(s.db_dsn(), autocommit=True) as conn:
        for name in ("bench_env_2d", "bench_env_ch"):
            conn.execute(f"drop table if exists {name}")
        conn.execute("""create table bench_env_2d (time timestamptz not null, device_id text not null,
            seq bigint not null, session_id uuid, fs_hz real not null, env real[] not null,
            clipped integer not null default 0, stim_blanked boolean not null default false,
            unique (device_id, time, seq))""")
        conn.execute("""create table bench_env_ch (time timestamptz not null, device_id text not null,
            channel smallint not null, seq bigint not null, session_id uuid, fs_hz real not null,
            env real[] not null, unique (device_id, channel, time))""")
        for name in ("bench_env_2d", "bench_env_ch"):
            conn.execute(f"select create_hypertable('{name}', by_range('time', interval '1 hour'))")
            conn.execute(f"create index on {name} (session_id, time desc)")
        try:
            out["frame_2d"] = _run(conn, "bench_env_2d", pgbinary.ENVELOPE_COLUMNS, (
                pgbinary.envelope_row(t, dev, seq, sess, env_fs, env, 0, False)
                for t, dev, seq, sess, env in frames), len(frames), len(frames), devices, seconds)
            out["channel_1d"] = _run(conn, "bench_env_ch", pgbinary.CHANNEL_ROW_COLUMNS, (
                pgbinary.channel_row(t, dev, c, seq, sess, env_fs, env[c])
                for t, dev, seq, sess, env in frames for c in range(channels)),
                len(frames) * channels, len(frames), devices, seconds)
        finally:
            for name in ("bench_env_2d", "bench_env_ch"):
                conn.execute(f"drop table if exists {name}")
    return out


def _run(conn: psycopg.Connection, table: str, columns, rows, n_rows: int, n_frames: int, devices: int,
         seconds: float, batch: int = 20000) -> dict:
    cols = ", ".join(columns)
    conn.execute(f"create temp table stg_{table} (like {table}) on commit delete rows")
    encode_s = copy_s = insert_s = 0.0
    rows = iter(rows)
    done = 0
    while done < n_rows:
        t0 = time.perf_counter()
        chunk = [pgbinary.SIGNATURE]
        for _ in range(min(batch, n_rows - done)):
            chunk.append(next(rows))
        chunk.append(pgbinary.TRAILER)
        data = b"".join(chunk)
        t1 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"copy stg_{table} ({cols}) from stdin (format binary)") as copy:
                copy.write(data)
            t2 = time.perf_counter()
            cur.execute(f"insert into {table} ({cols}) select {cols} from stg_{table} on conflict do nothing")
        t3 = time.perf_counter()
        encode_s += t1 - t0
        copy_s += t2 - t1
        insert_s += t3 - t2
        done += len(chunk) - 2
    total = encode_s + copy_s + insert_s
    size = conn.execute(f"select hypertable_size('{table}')").fetchone()[0]
    device_hours = devices * seconds / 3600
    return {
        "rows": n_rows, "encode_s": round(encode_s, 3), "copy_s": round(copy_s, 3),
        "insert_on_conflict_s": round(insert_s, 3),
        "rows_per_s": round(n_rows / total), "frames_per_s": round(n_frames / total),
        "copy_only_rows_per_s": round(n_rows / (encode_s + copy_s)),
        "bytes": size, "mb_per_device_hour": round(size / device_hours / 1e6, 1),
    }


def main() -> None:  # python -m processors.storage.bench
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=2, help="envelope samples per channel per frame")
    args = ap.parse_args()
    print(json.dumps(bench_envelope_layouts(Settings(), devices=args.devices, seconds=args.seconds,
                                            samples=args.samples), indent=2))


if __name__ == "__main__":
    main()


def bench_sink(s: Settings, devices: int = 100, seconds: float = 10.0, fps: int = 20, samples: int = 2) -> dict:
    """Sink throughput: preload the derived topics, then time the sink draining them.

    Uses its own topic prefix and a scratch database `<pg_database>_bench` (created,
    migrated, dropped), so it never touches real data.
    """
    import asyncio

    from mimetic import topics
    from mimetic.db import drop_database, fresh_database
    from mimetic.db.migrate import migrate
    from mimetic.kafka_admin import ensure_topics
    from processors import records as r
    from processors.sink import SINK_TOPICS, Sink

    tag = uuid.uuid4().hex[:6]
    bs = s.model_copy(update={"topic_prefix": f"bench-{tag}", "pg_database": f"{s.pg_database}_bench",
                              "sink_group": f"bench-sink-{tag}"})
    fresh_database(bs)
    try:
        migrate(bs.db_dsn())
        ensure_topics(bs, (*SINK_TOPICS, topics.DEAD_LETTERS))
        env_fs = fps * samples
        recs = [r.EnvelopeFrame(device_id=dev, session_id=sess, seq=seq, time=t, fs_hz=env_fs,
                                n_channels=env.shape[0], env=np.ascontiguousarray(env, "<f4").tobytes())
                for t, dev, seq, sess, env in _frames(devices, 8, fps, seconds, samples)]
        out: dict = {"devices": devices, "seconds_of_data": seconds, "frames": len(recs),
                     "needed_frames_per_s": devices * fps, "batch_size": bs.sink_batch_size}

        async def go() -> None:
            from aiokafka import AIOKafkaProducer

            from mimetic.kafka_security import client_kwargs

            p = AIOKafkaProducer(bootstrap_servers=bs.bootstrap_servers(), acks="all", linger_ms=5,
                                 max_batch_size=512 * 1024, **client_kwargs(bs))
            await p.start()
            t0 = time.perf_counter()
            topic = topics.FEATURES.name(bs)
            for rec in recs:
                key, value, headers = r.to_message(rec)
                await p.send(topic, value=value, key=key, headers=headers)
            await p.flush()
            await p.stop()
            out["produce_s"] = round(time.perf_counter() - t0, 2)
            sink = Sink(bs)
            task = asyncio.create_task(sink.run())
            await sink.started.wait()
            t0 = time.perf_counter()
            while sink.metrics.value("mimetic_sink_rows_written_total", table="envelope") < len(recs):
                await asyncio.sleep(0.05)
                if task.done():
                    task.result()
            dt = time.perf_counter() - t0
            sink.stop()
            await task
            out["sink_s"] = round(dt, 2)
            out["sink_frames_per_s"] = round(len(recs) / dt)
            out["sink_batches"] = sink.metrics.value("mimetic_sink_batches_total")
            out["headroom_x"] = round(len(recs) / dt / (devices * fps), 1)

        asyncio.run(go())
        return out
    finally:
        drop_database(bs)
        try:
            from kafka import KafkaAdminClient

            from mimetic.kafka_security import client_kwargs

            ka = KafkaAdminClient(bootstrap_servers=s.bootstrap_servers(), **client_kwargs(s))
            ka.delete_topics([t.name(bs) for t in (*SINK_TOPICS, topics.DEAD_LETTERS)])
            ka.close()
        except Exception:
            pass
