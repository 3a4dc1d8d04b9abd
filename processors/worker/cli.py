"""`mimetic worker`: run the stream processor (Faust)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @app.command("worker")
    def worker_cmd(
        loglevel: Annotated[str, typer.Option(help="crit, error, warn, info or debug")] = "warn",
        web_port: Annotated[int | None, typer.Option(help="Override MIMETIC_WORKER_WEB_PORT.")] = None,
    ) -> None:
        """Run the stream worker: device topics -> DSP, balance, alerts, sessions -> derived topics."""
        import os

        import faust

        from mimetic.config import get_settings
        from processors.worker.app import make_app

        os.umask(0o077)   # Faust's own files and directories under run/faust: the owner's only
        s = get_settings()
        if web_port is not None:
            s = s.model_copy(update={"worker_web_port": web_port})
        fapp = make_app(s)
        worker = faust.Worker(fapp, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        # at warn and above Faust's terminal spinner sets the root logger to DEBUG to spin on every
        # record, so every library's debug message was formatted (measured: ~4% of the worker's CPU)
        worker.spinner = None
        worker.execute_from_commandline()

    @bench_app.command("pipeline")
    def bench_pipeline_cmd(
        devices: Annotated[str, typer.Option(help="Comma-separated device counts to try, in order.")] = "10,25,50,100",
        duration: Annotated[float, typer.Option(help="Seconds of real-time streaming per step.")] = 30.0,
        out: Annotated[str, typer.Option(help="Where to write the JSON report.")] = "bench/results/pipeline.json",
        workers: Annotated[int, typer.Option(help="Worker processes in the group (one per core).")] = 1,
        catch_up: Annotated[str, typer.Option(
            help="DEVICES:SECONDS, e.g. 50:60: afterwards, time how fast that backlog drains when the "
                 "workers start with it already in Kafka (the throughput ceiling); empty to skip.")] = "",
    ) -> None:
        """Devices in real time through Kafka, worker and sink: sustained devices, latency, memory, storage."""
        import json
        from pathlib import Path

        from mimetic.config import REPO_ROOT, get_settings
        from processors.worker.bench import run_pipeline_bench

        counts = [int(x) for x in devices.split(",") if x.strip()]
        path = Path(out) if Path(out).is_absolute() else REPO_ROOT / out
        backlog = None
        if catch_up:
            try:
                n_dev, secs = catch_up.split(":")
                backlog = (int(n_dev), float(secs))
            except ValueError:
                raise typer.BadParameter("expected DEVICES:SECONDS, for example 50:60",
                                         param_hint="--catch-up") from None
        report = run_pipeline_bench(get_settings(), counts, duration, path, log=typer.echo, workers=workers,
                                    catch_up=backlog)
        typer.echo(json.dumps({k: report[k] for k in ("max_sustained_devices",)}))
        for step in report["steps"]:
            typer.echo(f"{step['devices']:>4} devices: stored {step['stored_rate_fps']:.0f} frames/s "
                       f"({step['samples_per_s'] / 1e6:.2f} M samples/s), latency {step['latency_ms']}, "
                       f"workers {step['worker_rss_mb']} MB, CPU s worker {step['worker_cpu_s']} sink {step['sink_cpu_s']} "
                       f"broker {step['broker_cpu_s']} postgres {step['postgres_cpu_s']} bench {step['bench_cpu_s']} "
                       f"(over {step['duration_s']:.0f} s), sustained={step['sustained']}")
        if report["catch_up"]:
            c = report["catch_up"]
            typer.echo(f"catch-up: {c['backlog_s']:.0f} s of {c['devices']} devices: first row after "
                       f"{c['first_row_after_s']} s, then drained in {c['drain_s']} s: {c['frames_per_s']} frames/s, "
                       f"{c['backlog_s_per_wall_s']}x real time")
        typer.echo(f"wrote {path}")

    @bench_app.command("alerts")
    def bench_alerts_cmd(
        sessions: Annotated[int, typer.Option(help="Sessions per fault kind and mains frequency.")] = 6,
        duration: Annotated[float, typer.Option(help="Seconds per session with a fault.")] = 120.0,
        fault_free: Annotated[int, typer.Option(help="Fault-free sessions per mains frequency.")] = 40,
        fault_free_s: Annotated[float, typer.Option(help="Seconds per fault-free session.")] = 1800.0,
        channels: Annotated[int, typer.Option(help="Channels per device (even).")] = 2,
        fs: Annotated[int, typer.Option(help="Sampling rate (Hz); the cost is about per sample and frame.")] = 2000,
        seed: Annotated[int, typer.Option(help="Simulation seed.")] = 0,
        out: Annotated[str, typer.Option(help="Where to write the JSON report.")] = "bench/results/alerts.json",
        workers: Annotated[int, typer.Option(help="Processes (devices run in parallel; same results).")] = 2,
    ) -> None:
        """Alert quality against the simulator's truth: recall, false alerts, raise/clear latency."""
        from pathlib import Path

        from mimetic.config import REPO_ROOT, get_settings
        from processors.worker.alert_bench import BenchShape, markdown, run_alert_bench
        from processors.worker.device import WorkerParams

        s = get_settings()
        shape = BenchShape(sessions=sessions, duration_s=duration, fault_free_sessions=fault_free,
                           fault_free_s=fault_free_s, channels=channels, fs_hz=fs, seed=seed)
        path = Path(out) if Path(out).is_absolute() else REPO_ROOT / out
        report = run_alert_bench(shape, WorkerParams.from_settings(s), s.worker_tick_interval_s, path,
                                 log=typer.echo, workers=workers)
        typer.echo(markdown(report))
        typer.echo(f"{report['cpu_s']} s CPU, {report['wall_s']} s wall; wrote {path}")
