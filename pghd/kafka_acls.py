"""The Kafka ACL spec (``deploy/kafka-acls.json``): one SCRAM user per service and its rights.

:func:`parse_acl_spec` validates the document and expands it into :class:`AclRule` s, one
per (user, resource, operation), all ``ALLOW`` from any host. :meth:`AclSpec.allows` answers
what Kafka's ``StandardAuthorizer`` would for a request, from the spec alone: super users may
do anything, a literal rule matches its name, a prefixed rule every name beginning with it,
and ``READ``/``WRITE``/``DELETE``/``ALTER`` imply ``DESCRIBE``, ``ALTER_CONFIGS`` implies
``DESCRIBE_CONFIGS``; nothing else is allowed (``allow.everyone.if.no.acl.found=false``).
The unit tests ask it who may write each topic. Applying the spec to a cluster is
:mod:`deploy.local.acls`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "CLUSTER",
    "OPERATIONS",
    "RESOURCES",
    "AclRule",
    "AclSpec",
    "load_acl_spec",
    "parse_acl_spec",
    "password_env",
]

#: The one name of the cluster resource.
CLUSTER: Final = "kafka-cluster"
OPERATIONS: Final = (
    "READ",
    "WRITE",
    "CREATE",
    "DELETE",
    "ALTER",
    "DESCRIBE",
    "DESCRIBE_CONFIGS",
    "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE",
    "CLUSTER_ACTION",
)
RESOURCES: Final = ("topic", "group", "cluster")
#: The spec's keys for each (resource, pattern).
_SECTIONS: Final = {
    "topics": ("topic", "literal"),
    "topic_prefixes": ("topic", "prefixed"),
    "groups": ("group", "literal"),
    "group_prefixes": ("group", "prefixed"),
}
_IMPLIED: Final = {
    "DESCRIBE": frozenset({"READ", "WRITE", "DELETE", "ALTER", "DESCRIBE"}),
    "DESCRIBE_CONFIGS": frozenset({"ALTER_CONFIGS", "DESCRIBE_CONFIGS"}),
}


def password_env(user: str) -> str:
    """The variable holding ``user``'s password for ``pghd kafka apply``:
    ``PGHD_KAFKA_<USER>_PASSWORD`` (``care-api``: ``PGHD_KAFKA_CARE_API_PASSWORD``)."""
    return f"PGHD_KAFKA_{user.upper().replace('-', '_')}_PASSWORD"


@dataclass(frozen=True, order=True)
class AclRule:
    """``User:<user>`` may ``operation`` on the ``resource`` named (or prefixed) ``name``."""

    user: str
    resource: str  # topic | group | cluster
    pattern: str  # literal | prefixed
    name: str
    operation: str

    @property
    def principal(self) -> str:
        """Kafka's principal of the user."""
        return f"User:{self.user}"

    def matches(self, resource: str, name: str) -> bool:
        """Whether the rule is about ``name`` of type ``resource``."""
        if resource != self.resource:
            return False
        return name.startswith(self.name) if self.pattern == "prefixed" else name == self.name

    def grants(self, operation: str) -> bool:
        """Whether the rule allows ``operation`` (itself, or one it implies)."""
        return self.operation == operation or self.operation in _IMPLIED.get(operation, ())


@dataclass(frozen=True)
class AclSpec:
    """The users, their rules, and the super users the broker is configured with."""

    mechanism: str
    super_users: tuple[str, ...]
    descriptions: Mapping[str, str]
    rules: tuple[AclRule, ...]

    @property
    def users(self) -> list[str]:
        """The users with rules, in the spec's order."""
        return list(self.descriptions)

    def rules_of(self, user: str) -> list[AclRule]:
        """``user``'s rules."""
        return [rule for rule in self.rules if rule.user == user]

    def allows(self, user: str, operation: str, resource: str, name: str) -> bool:
        """What the authorizer answers ``user`` asking to ``operation`` the ``resource``
        ``name``, under this spec."""
        if user in self.super_users:
            return True
        return any(
            r.user == user and r.matches(resource, name) and r.grants(operation) for r in self.rules
        )

    def who_may(self, operation: str, resource: str, name: str) -> set[str]:
        """The users (super users aside) allowed ``operation`` on ``name``."""
        return {u for u in self.users if self.allows(u, operation, resource, name)}


def _operations(where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: a non-empty list of operations")
    operations = [str(op).upper() for op in value]
    unknown = sorted(set(operations) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"{where}: unknown operations {unknown} (known: {', '.join(OPERATIONS)})")
    if len(set(operations)) != len(operations):
        raise ValueError(f"{where}: an operation is listed twice")
    return operations


def parse_acl_spec(document: Mapping[str, Any]) -> AclSpec:
    """Validate a spec document and expand it into rules; ``ValueError`` says what is wrong."""
    if document.get("schema_version") != 1:
        raise ValueError("schema_version must be 1")
    super_users = document.get("super_users") or []
    if not isinstance(super_users, list) or not all(isinstance(u, str) for u in super_users):
        raise ValueError("super_users: a list of user names")
    principals = document.get("principals")
    if not isinstance(principals, dict) or not principals:
        raise ValueError("principals: a non-empty object of user -> rights")
    rules: list[AclRule] = []
    descriptions: dict[str, str] = {}
    for user, rights in principals.items():
        if not isinstance(user, str) or not user or not user.replace("-", "").isalnum():
            raise ValueError(f"principals: {user!r} is not a user name (letters, digits, -)")
        if user in super_users:
            raise ValueError(f"principals.{user}: a super user needs no ACLs")
        if not isinstance(rights, dict):
            raise ValueError(f"principals.{user}: an object")
        extra = set(rights) - {"description", "cluster", *_SECTIONS}
        if extra:
            raise ValueError(f"principals.{user}: unknown keys {sorted(extra)}")
        descriptions[user] = str(rights.get("description", ""))
        for section, (resource, pattern) in _SECTIONS.items():
            entries = rights.get(section) or {}
            if not isinstance(entries, dict):
                raise ValueError(f"principals.{user}.{section}: an object of name -> operations")
            for name, ops in entries.items():
                if not name:
                    raise ValueError(f"principals.{user}.{section}: an empty name")
                for op in _operations(f"principals.{user}.{section}.{name}", ops):
                    rules.append(AclRule(user, resource, pattern, name, op))
        if "cluster" in rights:
            for op in _operations(f"principals.{user}.cluster", rights["cluster"]):
                rules.append(AclRule(user, "cluster", "literal", CLUSTER, op))
        if not any(rule.user == user for rule in rules):
            raise ValueError(f"principals.{user}: no rights at all")
    return AclSpec(
        mechanism=str(document.get("mechanism", "SCRAM-SHA-512")),
        super_users=tuple(super_users),
        descriptions=descriptions,
        rules=tuple(rules),
    )


def load_acl_spec(path: Path) -> AclSpec:
    """Read and parse the spec at ``path``."""
    return parse_acl_spec(json.loads(path.read_text()))
