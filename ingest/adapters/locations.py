"""Where each reading field came from in the posted document.

Adapters hand :func:`ingest.intake.triage` readings in ``ReadingIn`` shape; triage names the
fields it refuses in that shape (``unit``, ``effective_time``...). A :class:`Located`
candidate carries, for each such field, the place in the posted document the adapter took
it from (a JSON pointer, or a FHIRPath expression), so routes can point at the client's own
elements with :func:`relocate`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingest.intake import Candidate

__all__ = ["Located", "relocate"]


@dataclass(frozen=True)
class Located:
    """A candidate and, per ``ReadingIn`` field, where it came from in the posted document."""

    candidate: Candidate
    elements: Mapping[str, str] = field(default_factory=dict)


def relocate(errors: Iterable[dict[str, Any]], located: Located) -> list[dict[str, Any]]:
    """``errors`` of one item with each pointer moved to the element its field came from.

    Errors about a field the adapter did not map (or about the whole item) point at the item.
    Errors the adapter made itself already point into the document and are left as they are.
    """
    own = set(map(id, located.candidate.errors))
    out: list[dict[str, Any]] = []
    for err in errors:
        if id(err) in own:
            out.append(err)
            continue
        name = (err.get("field") or "").split(".")[0]
        out.append({**err, "pointer": located.elements.get(name, located.candidate.pointer)})
    return out
