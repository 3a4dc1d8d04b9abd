"""Terminal output shared by the `mimetic` sub-commands."""

from __future__ import annotations

import typer
from rich.console import Console

console = Console()
err = Console(stderr=True)


def fail(msg: str, code: int = 1) -> None:
    """Print a one-line error (what went wrong and what to do next) and exit with `code`."""
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)
