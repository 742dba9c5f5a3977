"""``pghd dev``: the local stack without Docker (real Kafka and InfluxDB under ``.local/``).

``up`` installs on first run and is idempotent, ``down`` stops everything the stack
started (app services included), ``status`` shows a table, ``env`` prints shell exports.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer

from deploy.local import stack
from deploy.local.process import ToolMissingError
from pghd.pseudonym import KEY_ENV, pseudonym

__all__ = ["app", "export_lines", "format_table"]

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Run the local stack (Kafka, InfluxDB) from .local/ without Docker.",
    no_args_is_help=True,
)

RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Repository root (default: $PGHD_ROOT, else the one pghd is installed from).",
        show_default=False,
    ),
]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain-text table with left-aligned columns (stable for scripts and tests)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def export_lines(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines (shell-quoted) for a POSIX shell."""
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in sorted(env.items()))


def _echo(line: str) -> None:
    typer.echo(line, err=True)


@app.command()
def up(
    root: RootOption = None,
    kafka_port: Annotated[
        int | None, typer.Option(help="Kafka port [default: last run's, else 9092].")
    ] = None,
    controller_port: Annotated[
        int | None, typer.Option(help="KRaft controller port [default: last run's, else 9093].")
    ] = None,
    influx_port: Annotated[
        int | None, typer.Option(help="InfluxDB HTTP port [default: last run's, else 8086].")
    ] = None,
) -> None:
    """Start Kafka and InfluxDB (installing them on first run) and apply the topic spec.

    A port that is taken is replaced by a free one; `pghd dev env` shows the ones used.
    """
    try:
        state = stack.up(
            root=root,
            kafka_port=kafka_port,
            controller_port=controller_port,
            influx_port=influx_port,
            progress=_echo,
        )
    except ToolMissingError as exc:
        _echo(f"error: {exc}")
        raise typer.Exit(2) from exc
    except (RuntimeError, TimeoutError) as exc:
        _echo(f"error: {exc}")
        _echo("(run `pghd dev down` to stop whatever did start)")
        raise typer.Exit(1) from exc
    _echo("==> local stack is up:")
    for key, value in sorted(state.env.items()):
        _echo(f"    {key}={value}")
    _echo('    load it into a shell with: eval "$(pghd dev env)"')


@app.command()
def down(root: RootOption = None) -> None:
    """Stop every process the local stack started (services, InfluxDB, Kafka)."""
    stack.down(root=root, progress=_echo)


@app.command()
def status(root: RootOption = None) -> None:
    """Show the stack's processes: pid, port, alive and healthy."""
    rows = stack.status(root=root)
    if not rows:
        typer.echo("local stack is not running (no .local/run/stack.json)")
        raise typer.Exit(1)
    table = [
        (
            s.name,
            s.kind,
            s.pid,
            s.port if s.port is not None else "-",
            "yes" if s.alive else "no",
            "yes" if s.healthy else "no",
            s.log,
        )
        for s in rows
    ]
    typer.echo(format_table(["COMPONENT", "KIND", "PID", "PORT", "ALIVE", "HEALTHY", "LOG"], table))
    if not all(s.healthy for s in rows):
        raise typer.Exit(1)


@app.command()
def env(root: RootOption = None) -> None:
    """Print ``export PGHD_...=...`` lines for the running stack (use with eval)."""
    state = stack.load_state(stack.StackPaths.for_root(root))
    if not state.env:
        typer.echo("local stack is not running: run `pghd dev up` first", err=True)
        raise typer.Exit(1)
    typer.echo(export_lines(state.env), nl=False)


@app.command("pseudonym")
def pseudonym_of(
    patient_ids: Annotated[list[str], typer.Argument(help="Patient ids to look up.")],
) -> None:
    """Print the log pseudonym of each patient id (with PGHD_LOG_PSEUDONYM_KEY, the key the
    services log with), to find a patient's lines in the logs."""
    if not os.environ.get(KEY_ENV):
        typer.echo(f"error: set {KEY_ENV} to the key the services log with", err=True)
        raise typer.Exit(1)
    for patient_id in patient_ids:
        typer.echo(f"{patient_id}\t{pseudonym(patient_id)}")
