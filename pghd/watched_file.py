"""A JSON file of credentials that is read again when it changes, keeping the last good one.

Operators issue, rotate and revoke credentials by editing a file (or by a secret manager
rewriting it); the services see the change within ``recheck_s`` without a restart.
:class:`WatchedJson` reads the file at most once per ``recheck_s`` and parses it again when
its bytes changed (a digest of the content: an edit that keeps the size and the
modification time, or a copy that keeps an old one, is still seen). A file that no longer
parses is refused as a whole: the previous content stays in force and the error is logged
(and reported to ``on_reload``). At startup a bad file raises, so a service never starts
with credentials other than the ones the operator wrote.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["WatchedJson"]

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class WatchedJson(Generic[M]):
    """The parsed content of ``path`` as ``model``, re-read when the file changes."""

    def __init__(
        self,
        path: Path,
        model: type[M],
        *,
        recheck_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_reload: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._model = model
        self._recheck_s = recheck_s
        self._clock = clock
        self._on_reload = on_reload
        content = path.read_bytes()
        self._value = model.model_validate_json(content)  # bad at startup: raise
        self._stamp = hashlib.sha256(content).digest()
        self._refused: bytes | None = None  # a bad version: said once
        self._checked_at = clock()

    def current(self) -> M:
        """The content now (re-read first when the file changed since it was last read)."""
        now = self._clock()
        if now - self._checked_at < self._recheck_s:
            return self._value
        self._checked_at = now
        stamp: bytes | None = None
        try:
            content = self.path.read_bytes()
            stamp = hashlib.sha256(content).digest()
            if stamp in (self._stamp, self._refused):
                return self._value
            value = self._model.model_validate_json(content)
        except (OSError, ValidationError, ValueError) as exc:
            self._refused = stamp
            logger.error(
                "%s not reloaded, the previous content stays in force: %s",
                self.path,
                str(exc).splitlines()[0],
            )
            if self._on_reload:
                self._on_reload("refused")
            return self._value
        self._value, self._stamp = value, stamp
        logger.info("%s reloaded", self.path)
        if self._on_reload:
            self._on_reload("reloaded")
        return value
