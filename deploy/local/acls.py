"""Apply the Kafka ACL spec (``deploy/kafka-acls.json``) to a cluster: SCRAM users and ACLs.

:func:`apply_acls` connects as an admin (a super user; its settings from
:mod:`pghd.kafka_security` unless given) with kafka-python's ``KafkaAdminClient`` and, for
every user of the spec:

1. creates or updates its ``SCRAM-SHA-512`` credential when a password is given for it
   (``AlterUserScramCredentials``: new salt, the new password takes effect for the next
   connection; connections made before stay authenticated). A user without a password is
   left as it is (reported), so ACLs can be applied alone where an operator manages users;
2. creates the ACLs of the spec it lacks and, with ``prune``, deletes its ``ALLOW`` ACLs that
   the spec no longer lists (``DENY`` rules someone added by hand are left alone);
3. waits until the broker describes the new state, so a client connecting afterwards is
   judged by it.

Users that are not in the spec are not touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from deploy.local.topics import admin_client
from pghd.kafka_acls import AclRule, AclSpec, password_env
from pghd.kafka_security import KafkaSecurity

__all__ = [
    "DEFAULT_ACL_SPEC",
    "AclReport",
    "apply_acls",
    "describe_rules",
    "passwords_from_env",
]

logger = logging.getLogger(__name__)

DEFAULT_ACL_SPEC = Path(__file__).resolve().parents[1] / "kafka-acls.json"
_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "cluster": ResourceType.CLUSTER,
}
_PATTERN = {
    "literal": ACLResourcePatternType.LITERAL,
    "prefixed": ACLResourcePatternType.PREFIXED,
}


@dataclass(frozen=True, slots=True)
class AclReport:
    """What :func:`apply_acls` did for one user."""

    user: str
    credential: str  # "set" | "kept (no password given)" | "not managed"
    created: int
    deleted: int
    unchanged: int


def passwords_from_env(spec: AclSpec, env: Mapping[str, str]) -> dict[str, str]:
    """The passwords ``env`` holds for the spec's users (``PGHD_KAFKA_<USER>_PASSWORD``)."""
    found = {user: env.get(password_env(user), "").strip() for user in spec.users}
    return {user: password for user, password in found.items() if password}


def _to_kafka(rule: AclRule) -> ACL:
    return ACL(
        principal=rule.principal,
        host="*",
        operation=ACLOperation[rule.operation],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(
            _RESOURCE[rule.resource], rule.name, _PATTERN[rule.pattern]
        ),
    )


def _from_kafka(acl: Any) -> AclRule | None:
    """The spec's rule for a described ACL; None for what the spec cannot express (DENY, a
    host other than any, another resource type or pattern)."""
    if acl.permission_type != ACLPermissionType.ALLOW or acl.host != "*":
        return None
    resources = {v: k for k, v in _RESOURCE.items()}
    patterns = {v: k for k, v in _PATTERN.items()}
    pattern = acl.resource_pattern
    if pattern.resource_type not in resources or pattern.pattern_type not in patterns:
        return None
    user = str(acl.principal).removeprefix("User:")
    return AclRule(
        user=user,
        resource=resources[pattern.resource_type],
        pattern=patterns[pattern.pattern_type],
        name=pattern.resource_name,
        operation=acl.operation.name,
    )


def _user_filter(user: str) -> ACLFilter:
    return ACLFilter(
        principal=f"User:{user}",
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )


def describe_rules(admin: Any, user: str) -> tuple[set[AclRule], list[Any]]:
    """``user``'s ALLOW rules as the cluster has them, and its other ACLs (as described)."""
    acls, _ = admin.describe_acls(_user_filter(user))
    rules: set[AclRule] = set()
    other: list[Any] = []
    for acl in acls:
        rule = _from_kafka(acl)
        if rule is None:
            other.append(acl)
        else:
            rules.add(rule)
    return rules, other


def _check_created(result: Mapping[str, Sequence[Any]], user: str) -> None:
    failed = list(result.get("failed", []))
    if failed:
        raise RuntimeError(f"creating ACLs of {user} failed: {failed!r}")


def _check_deleted(results: Sequence[tuple[Any, Any, Any]], user: str) -> None:
    for _filter, _matched, error in results:
        if getattr(error, "errno", 0):
            raise RuntimeError(f"deleting ACLs of {user} failed: {error!r}")


def apply_acls(
    spec: AclSpec,
    *,
    bootstrap: str,
    passwords: Mapping[str, str],
    security: KafkaSecurity | None = None,
    users: bool = True,
    prune: bool = True,
    timeout: float = 30.0,
) -> list[AclReport]:
    """Make the cluster at ``bootstrap`` hold ``spec``'s users (those with a password in
    ``passwords``, unless ``users`` is false) and exactly its ACLs for them."""
    unknown = sorted(set(passwords) - set(spec.users))
    if unknown:
        raise ValueError(f"passwords for users the spec does not name: {unknown}")
    mechanism = ScramMechanism[spec.mechanism.replace("-", "_")]
    reports: list[AclReport] = []
    client = admin_client(bootstrap, timeout=timeout, security=security, client_id="pghd-acls")
    with client as admin:
        if users and passwords:
            outcome = admin.alter_user_scram_credentials(
                [UserScramCredentialUpsertion(u, mechanism, p) for u, p in passwords.items()]
            )
            refused = {u: why for u, why in outcome.items() if why}
            if refused:
                raise RuntimeError(f"setting SCRAM credentials failed: {refused}")
        for user in spec.users:
            wanted = set(spec.rules_of(user))
            have, _other = describe_rules(admin, user)
            missing = sorted(wanted - have)
            stale = sorted(have - wanted) if prune else []
            if missing:
                _check_created(admin.create_acls([_to_kafka(r) for r in missing]), user)
            if stale:
                _check_deleted(admin.delete_acls([_to_kafka(r) for r in stale]), user)
            _wait_described(admin, user, wanted=wanted, gone=set(stale), timeout=timeout)
            if not users:
                credential = "not managed"
            elif user in passwords:
                credential = "set"
            else:
                credential = "kept (no password given)"
            reports.append(
                AclReport(
                    user=user,
                    credential=credential,
                    created=len(missing),
                    deleted=len(stale),
                    unchanged=len(wanted & have),
                )
            )
            logger.info("kafka user %s: %s", user, reports[-1])
    return reports


def _wait_described(
    admin: Any, user: str, *, wanted: set[AclRule], gone: set[AclRule], timeout: float
) -> None:
    """Wait until the broker's authorizer describes ``wanted`` and none of ``gone``."""
    deadline = time.monotonic() + timeout
    while True:
        have, _ = describe_rules(admin, user)
        if wanted <= have and not (gone & have):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ACLs of {user} were not applied within {timeout:g} s")
        time.sleep(0.1)
