"""Keeping secrets and patient ids out of the services' access logs.

Query strings carry what must not be logged: ``hub.verify_token`` on webhook handshakes,
``patient_id`` on list queries; paths carry patient ids (``/v1/patients/<id>/...``).
:class:`ScrubQueryStrings` rewrites uvicorn's access-log records so the path is logged
without its query (``?…`` marks that there was one) and with the patient id of a
``/patients/<id>`` path as its pseudonym (:mod:`pghd.pseudonym`), and
:func:`access_log_config` is uvicorn's own logging configuration with that filter on the
access log, for ``uvicorn.run(..., log_config=access_log_config())``.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote

from uvicorn.config import LOGGING_CONFIG

from pghd.pseudonym import pseudonym

__all__ = ["ScrubQueryStrings", "access_log_config", "scrub_query"]


_PATIENT_SEGMENT = re.compile(r"(/patients/)([^/?]+)")


def scrub_query(path: str) -> str:
    """``path`` without its query string (``/v1/x?secret=1`` -> ``/v1/x?…``) and with a
    ``/patients/<id>`` segment's id pseudonymised."""
    base, sep, _ = path.partition("?")
    base = _PATIENT_SEGMENT.sub(lambda m: m.group(1) + pseudonym(unquote(m.group(2))), base)
    return base + ("?…" if sep else "")


class ScrubQueryStrings(logging.Filter):
    """Drops the query string from uvicorn access-log records (their third argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], scrub_query(args[2]), args[3], args[4])
        return True


def access_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, its access log scrubbed of query strings."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["scrub_query"] = {"()": ScrubQueryStrings}
    config["handlers"]["access"]["filters"] = ["scrub_query"]
    return config
