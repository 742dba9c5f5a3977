"""JSON wire format: orjson out, pydantic validation in; the records of keyed compacted topics."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import orjson
from pydantic import BaseModel

__all__ = ["decode", "decode_keyed", "encode"]

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    """Serialise a contract model to compact JSON bytes."""
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True))


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse and validate ``payload`` as ``model``; raises ``pydantic.ValidationError``."""
    return model.model_validate_json(payload)


def decode_keyed(
    model: type[M],
    key: bytes | None,
    value: bytes | None,
    *,
    owner: Callable[[M], str],
    what: str,
    key_name: str = "id",
) -> tuple[str, M | None]:
    """One record of a compacted topic keyed by the id of what it carries (``owner``):
    ``(id, the decoded value)``, or ``(id, None)`` for a tombstone. ``what`` and
    ``key_name`` name the value and its id in errors.

    Raises ``ValueError`` (or pydantic's ``ValidationError``, one of them) on a record
    without a key, keyed by another id than its value's, or that does not decode.
    """
    if key is None:
        raise ValueError(f"{what} record without a key")
    ident = key.decode("utf-8")
    if value is None:
        return ident, None
    decoded = decode(model, value)
    if owner(decoded) != ident:
        raise ValueError(f"{what} record keyed by another {key_name}")
    return ident, decoded
