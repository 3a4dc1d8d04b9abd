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
        import faust

        from mimetic.config import get_settings
        from processors.worker.app import make_app

        s = get_settings()
        if web_port is not None:
            s = s.model_copy(update={"worker_web_port": web_port})
        fapp = make_app(s)
        worker = faust.Worker(fapp, loglevel=loglevel, quiet=True, redirect_stdouts=False)
        worker.execute_from_commandline()
