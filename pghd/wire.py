"""JSON wire format: orjson out, pydantic validation in."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel

__all__ = ["decode", "encode"]

M = TypeVar("M", bound=BaseModel)


def encode(model: BaseModel) -> bytes:
    """Serialise a contract model to compact JSON bytes."""
    return orjson.dumps(model.model_dump(mode="json", exclude_none=True))


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse and validate ``payload`` as ``model``; raises ``pydantic.ValidationError``."""
    return model.model_validate_json(payload)
