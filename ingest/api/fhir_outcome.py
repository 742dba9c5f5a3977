"""What ingest's ``POST /v1/fhir`` answers per entry: issue types of refusal reasons, and
the status of a batch or transaction response entry. The FHIR answers themselves
(OperationOutcomes, :class:`~pghd.service.fhir_outcome.FhirRoute`) are shared with the
care-team API's read API: :mod:`pghd.service.fhir_outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["entry_status", "issue_code"]

_CODE_BY_REASON = {
    "invalid": "invalid",
    "unit": "code-invalid",
    "range": "value",
    "time": "value",
    "consent": "forbidden",
    "unlinked-source": "forbidden",
    "unknown-account": "not-found",
    "unsupported": "not-supported",
    "status": "business-rule",
}
_FORBIDDEN = {"consent", "unlinked-source"}


def issue_code(err: Mapping[str, Any], reason: str | None) -> str:
    """The FHIR issue type of an item error: its own, else the one of its refusal reason."""
    own = err.get("code")
    return str(own) if own else _CODE_BY_REASON.get(reason or "invalid", "invalid")


def entry_status(*, accepted: bool, reason: str | None) -> str:
    """``Bundle.entry.response.status`` of one entry of a batch or transaction."""
    if accepted:
        return "201 Created"
    return "403 Forbidden" if reason in _FORBIDDEN else "400 Bad Request"
