"""``pghd kafka``: the services' Kafka users and ACLs (``deploy/kafka-acls.json``).

``pghd kafka apply`` connects as the admin that the ``PGHD_KAFKA_*`` security variables
describe (:mod:`pghd.kafka_security`; a super user of the broker), sets the SCRAM password of
every user whose ``PGHD_KAFKA_<USER>_PASSWORD`` is set, and makes each user's ACLs exactly
the spec's. ``pghd kafka acls`` prints the spec's rules (``--cluster``: as the cluster has
them). Without ``--bootstrap`` both talk to the local stack, or to ``127.0.0.1:9092``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from kafka.errors import KafkaError

from deploy.local.acls import DEFAULT_ACL_SPEC, apply_acls, describe_rules, passwords_from_env
from deploy.local.topics import admin_client
from pghd.commands.dev import format_table
from pghd.commands.topics import BootstrapOption, _bootstrap
from pghd.kafka_acls import AclRule, AclSpec, load_acl_spec, password_env
from pghd.kafka_security import KafkaSecurityError

__all__ = ["app"]

app = typer.Typer(
    help="Kafka users and ACLs of the services (deploy/kafka-acls.json).", no_args_is_help=True
)

SpecOption = Annotated[
    Path, typer.Option("--spec", exists=True, dir_okay=False, help="ACL spec JSON file.")
]


def _load(spec: Path) -> AclSpec:
    try:
        return load_acl_spec(spec)
    except ValueError as exc:
        typer.echo(f"error: {spec}: {exc}", err=True)
        raise typer.Exit(2) from exc


def _rows(rules: list[AclRule]) -> list[tuple[str, ...]]:
    grouped: dict[tuple[str, str, str, str], list[str]] = {}
    for rule in sorted(rules):
        where = (rule.user, rule.resource, rule.pattern, rule.name)
        grouped.setdefault(where, []).append(rule.operation)
    return [(*where, ",".join(ops)) for where, ops in grouped.items()]


@app.command()
def apply(
    bootstrap: BootstrapOption = None,
    spec: SpecOption = DEFAULT_ACL_SPEC,
    users: Annotated[
        bool,
        typer.Option(
            help="Set the SCRAM password of each user whose PGHD_KAFKA_<USER>_PASSWORD is set"
            " (--no-users: ACLs only, where users are managed elsewhere)."
        ),
    ] = True,
    require_passwords: Annotated[
        bool,
        typer.Option(help="Fail unless a password is given for every user of the spec."),
    ] = False,
    prune: Annotated[
        bool, typer.Option(help="Delete the users' ALLOW ACLs that the spec does not list.")
    ] = True,
) -> None:
    """Create or update the services' SCRAM users and make their ACLs the spec's."""
    acl_spec = _load(spec)
    passwords = passwords_from_env(acl_spec, os.environ) if users else {}
    missing = [password_env(u) for u in acl_spec.users if u not in passwords]
    if users and require_passwords and missing:
        typer.echo(f"error: no password in {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    server = _bootstrap(bootstrap)
    try:
        reports = apply_acls(
            acl_spec, bootstrap=server, passwords=passwords, users=users, prune=prune
        )
    except KafkaSecurityError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    except (KafkaError, RuntimeError, TimeoutError) as exc:
        typer.echo(f"error: applying {spec.name} on {server} failed: {exc!r}", err=True)
        raise typer.Exit(1) from exc
    rows = [(r.user, r.credential, r.created, r.deleted, r.unchanged) for r in reports]
    typer.echo(format_table(["USER", "PASSWORD", "ACLS CREATED", "DELETED", "UNCHANGED"], rows))


@app.command()
def acls(
    spec: SpecOption = DEFAULT_ACL_SPEC,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="Show the users' ACLs as the cluster has them.")
    ] = False,
    bootstrap: BootstrapOption = None,
) -> None:
    """Print the ACLs of the spec's users, one line per user and resource."""
    acl_spec = _load(spec)
    rules = list(acl_spec.rules)
    if cluster:
        server = _bootstrap(bootstrap)
        try:
            with admin_client(server, client_id="pghd-acls") as admin:
                rules = [r for u in acl_spec.users for r in describe_rules(admin, u)[0]]
        except (KafkaError, KafkaSecurityError) as exc:
            typer.echo(f"error: describing ACLs on {server} failed: {exc!r}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(format_table(["USER", "RESOURCE", "PATTERN", "NAME", "OPERATIONS"], _rows(rules)))
    typer.echo(f"super users (broker super.users): {', '.join(acl_spec.super_users)}")
