"""``pghd topics``: apply the Kafka topic spec (``deploy/topics.json``) and list topics.

Without ``--bootstrap`` the commands talk to the local stack (``pghd dev up``), or to
``127.0.0.1:9092`` when no local stack is recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from kafka.errors import KafkaError

from deploy.local import stack
from deploy.local.topics import DEFAULT_SPEC, admin_client, apply_topics, describe_topics
from pghd.commands.dev import format_table
from pghd.topics import load_spec

__all__ = ["app"]

logger = logging.getLogger(__name__)

app = typer.Typer(help="Kafka topics: apply the spec, list what exists.", no_args_is_help=True)

FALLBACK_BOOTSTRAP = "127.0.0.1:9092"

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap server (default: the local stack's, else 127.0.0.1:9092).",
    ),
]


def _bootstrap(given: str | None) -> str:
    if given:
        return given
    try:
        recorded = stack.load_state(stack.StackPaths.for_root()).env.get("PGHD_KAFKA_BOOTSTRAP")
    except FileNotFoundError:
        recorded = None
    return recorded or FALLBACK_BOOTSTRAP


def _configs(config: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(config.items())) or "-"


@app.command()
def apply(
    bootstrap: BootstrapOption = None,
    replication_factor: Annotated[
        int, typer.Option(min=1, help="Replication factor of created topics (3 in production).")
    ] = 1,
    spec: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Topic spec JSON file.")
    ] = DEFAULT_SPEC,
) -> None:
    """Create missing topics, grow partitions and set configs to match the spec."""
    server = _bootstrap(bootstrap)
    try:
        specs = load_spec(spec)
    except ValueError as exc:
        typer.echo(f"error: {spec}: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        reports = apply_topics(specs, bootstrap=server, replication_factor=replication_factor)
    except KafkaError as exc:
        typer.echo(f"error: applying topics on {server} failed: {exc!r}", err=True)
        raise typer.Exit(1) from exc
    rows = [(r.name, r.action, r.partitions, r.replication_factor, r.detail) for r in reports]
    typer.echo(format_table(["TOPIC", "ACTION", "PARTITIONS", "RF", "DETAIL"], rows))


@app.command(name="list")
def list_topics(
    bootstrap: BootstrapOption = None,
    internal: Annotated[bool, typer.Option(help="Include internal topics.")] = False,
) -> None:
    """List the cluster's topics with partitions, replication and per-topic overrides."""
    server = _bootstrap(bootstrap)
    try:
        with admin_client(server) as admin:
            topics = describe_topics(admin, include_internal=internal)
    except KafkaError as exc:
        typer.echo(f"error: listing topics on {server} failed: {exc!r}", err=True)
        raise typer.Exit(1) from exc
    rows = [
        (t.name, t.partitions, t.replication_factor, _configs(t.config)) for t in topics.values()
    ]
    typer.echo(format_table(["TOPIC", "PARTITIONS", "RF", "CONFIG"], rows))
