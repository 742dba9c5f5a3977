"""Write a batch of lines, setting aside the lines InfluxDB refuses for good.

:func:`write_isolating` sends the lines in requests of at most ``chunk`` lines. A request
InfluxDB refuses (:data:`~processors.store.outcome.Outcome.REFUSED`) is split in halves and
each half written again, down to single lines: a line refused on its own is returned with
InfluxDB's reason, and every other line is stored. A poison line thus costs about
``2 * log2(chunk)`` extra requests, and never stops the lines around it. Re-writing lines a
partial write already stored is harmless (same series, field and time: same point).

Transient and configuration failures are raised to the caller, which retries the whole
batch (:mod:`processors.store.stage`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from processors.store.outcome import Outcome, classify, describe

__all__ = ["Refused", "write_isolating"]

Write = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Refused:
    """A line InfluxDB will not take, with its answer."""

    index: int
    line: str
    reason: str


async def write_isolating(
    lines: Sequence[str], *, write: Write, chunk: int = 5000
) -> list[Refused]:
    """Write ``lines`` with ``write``; return the lines refused on their own, in order."""
    refused: list[Refused] = []
    for start in range(0, len(lines), chunk):
        await _write_part(
            lines, start=start, stop=min(start + chunk, len(lines)), write=write, out=refused
        )
    return refused


async def _write_part(
    lines: Sequence[str], *, start: int, stop: int, write: Write, out: list[Refused]
) -> None:
    try:
        await write(lines[start:stop])
        return
    except Exception as exc:
        if classify(exc) is not Outcome.REFUSED:
            raise
        if stop - start == 1:
            out.append(Refused(index=start, line=lines[start], reason=describe(exc)))
            return
    middle = (start + stop) // 2
    await _write_part(lines, start=start, stop=middle, write=write, out=out)
    await _write_part(lines, start=middle, stop=stop, write=write, out=out)
