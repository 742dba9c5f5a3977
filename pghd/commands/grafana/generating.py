"""``pghd grafana generate [--check]``: the dashboards' JSON files, written or checked."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["generate"]

logger = logging.getLogger(__name__)


def generate(
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            file_okay=False,
            help="Directory of the JSON files (default: the provisioning directory).",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the files are stale.")
    ] = False,
) -> None:
    """Write the dashboards' JSON (deterministic: unchanged files are not rewritten)."""
    from deploy.grafana import dashboards  # heavy (foundation SDK): lazy

    target = out_dir if out_dir is not None else dashboards.OUTPUT_DIR
    if check:
        expected = dashboards.rendered_files()
        present = {p.name for p in target.glob("*.json")} if target.is_dir() else set()
        stale = sorted(
            name
            for name, text in expected.items()
            if not (target / name).is_file() or (target / name).read_text() != text
        )
        extra = sorted(present - expected.keys())
        for name in stale:
            typer.echo(f"stale: {target / name}", err=True)
        for name in extra:
            typer.echo(f"not generated: {target / name}", err=True)
        if stale or extra:
            typer.echo("run `pghd grafana generate`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{len(expected)} dashboards up to date in {target}")
        return
    paths = dashboards.generate(target)
    for path in paths:
        typer.echo(str(path))
    typer.echo(f"{len(paths)} dashboards generated in {target}")
