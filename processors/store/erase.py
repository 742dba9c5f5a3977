"""The InfluxDB side of an erasure: every point tagged with one patient, deleted.

Each bucket is counted first (a Flux ``count()`` over all time, for the report), then
deleted through the API its version has:

- **InfluxDB 2.x** (a bucket name without ``/``): ``POST /api/v2/delete`` with the predicate
  ``patient_id="<id>"`` over all time, once per bucket;
- **InfluxDB 1.8** (a bucket ``<db>/<retention policy>``): 1.8 has no delete endpoint in its
  2.x compatibility API, so InfluxQL ``DROP SERIES WHERE "patient_id" = '<id>'`` on the
  database, which removes the series from every retention policy of it at once.

The buckets are the one the store writes and its downsampled aggregates (``<db>/downsampled``
on 1.8, ``<bucket>_downsampled`` on 2.x: what ``pghd influx downsample`` and the Flux tasks
write), plus any ``PGHD_INFLUX_ERASE_BUCKETS`` names. A bucket that does not exist holds
nothing to erase and is skipped, except the one the store writes: not finding it means the
token cannot see it, and the erasure is retried rather than reported done.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx

from pghd.contracts import ID_PATTERN

__all__ = ["InfluxEraser", "buckets_to_erase", "count_flux", "drop_series_influxql"]


_EPOCH = "1970-01-01T00:00:00Z"
_FAR = "2262-04-11T00:00:00Z"  # InfluxDB's last representable time (int64 nanoseconds)


def buckets_to_erase(bucket: str, extra: Sequence[str] = ()) -> list[str]:
    """The bucket the store writes, its downsampled bucket, then ``extra`` (no repeats)."""
    if "/" in bucket:
        downsampled = f"{bucket.split('/', 1)[0]}/downsampled"
    else:
        downsampled = f"{bucket}_downsampled"
    out: list[str] = []
    for name in (bucket, downsampled, *extra):
        if name and name not in out:
            out.append(name)
    return out


def _checked(patient_id: str) -> str:
    if not re.fullmatch(ID_PATTERN, patient_id):
        raise ValueError(f"not a patient id: {patient_id!r}")
    return patient_id


def count_flux(bucket: str, patient_id: str) -> str:
    """A Flux query giving one row: how many values ``bucket`` holds for the patient."""
    pid = _checked(patient_id)
    return (
        f'from(bucket: "{bucket}") |> range(start: {_EPOCH}, stop: {_FAR})'
        f' |> filter(fn: (r) => r.patient_id == "{pid}")'
        " |> count() |> group() |> sum()"
    )


def drop_series_influxql(patient_id: str) -> str:
    """The InfluxQL statement that drops every series of the patient (1.8)."""
    return f"DROP SERIES WHERE \"patient_id\" = '{_checked(patient_id)}'"


class InfluxEraser:
    """Counts and deletes a patient's points in every bucket of an InfluxDB."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        org: str,
        buckets: Sequence[str],
        timeout_s: float,
    ) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._org = org
        self._buckets = list(buckets)
        self._timeout_s = timeout_s

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self._token}"} if self._token else {}

    async def erase(self, patient_id: str) -> dict[str, int]:
        """Delete every point of ``patient_id``; ``{"points": n}`` with n counted before.

        Raises ``httpx.HTTPError`` (a failed request) or ``LookupError`` (the bucket the
        store writes is not there, or this token cannot see it) for the caller to retry.
        """
        pid = _checked(patient_id)
        removed = 0
        async with httpx.AsyncClient(timeout=self._timeout_s, headers=self._auth()) as client:
            databases: list[str] = []
            for number, bucket in enumerate(self._buckets):
                if not await self._exists(client, bucket):
                    if number == 0:
                        raise LookupError(
                            f"bucket {bucket} not found: does the store's token read it?"
                        )
                    continue  # a downsampled or extra bucket this deployment does not have
                removed += await self._count(client, bucket, pid)
                if "/" in bucket:
                    database = bucket.split("/", 1)[0]
                    if database not in databases:
                        databases.append(database)
                else:  # deleted even when the count saw nothing (points in the future)
                    await self._delete_v2(client, bucket, pid)
            for database in databases:
                await self._drop_series(client, database, pid)
        return {"points": removed}

    async def _exists(self, client: httpx.AsyncClient, bucket: str) -> bool:
        """Whether ``bucket`` exists (2.x: listed by name; 1.8: the database has that
        retention policy)."""
        if "/" in bucket:
            database, policy = bucket.split("/", 1)
            body = await self._influxql(
                client, database, f'SHOW RETENTION POLICIES ON "{database}"'
            )
            result = body.get("results", [{}])[0]
            if "database not found" in str(result.get("error", "")):
                return False
            if "error" in result:
                raise LookupError(f"InfluxDB refused SHOW RETENTION POLICIES: {result['error']}")
            names = [row[0] for series in result.get("series", []) for row in series["values"]]
            return policy in names
        response = await client.get(
            f"{self._url}/api/v2/buckets", params={"name": bucket, "org": self._org}
        )
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return any(b.get("name") == bucket for b in response.json().get("buckets", []))

    async def _count(self, client: httpx.AsyncClient, bucket: str, pid: str) -> int:
        """Values of ``pid`` in ``bucket`` (an existing bucket), over all time."""
        response = await client.post(
            f"{self._url}/api/v2/query",
            params={"org": self._org},
            json={"query": count_flux(bucket, pid), "dialect": {"header": True}},
            headers={"Accept": "application/csv"},
        )
        response.raise_for_status()
        return _sum_csv(response.text)

    async def _delete_v2(self, client: httpx.AsyncClient, bucket: str, pid: str) -> None:
        response = await client.post(
            f"{self._url}/api/v2/delete",
            params={"org": self._org, "bucket": bucket},
            json={"start": _EPOCH, "stop": _FAR, "predicate": f'patient_id="{pid}"'},
        )
        response.raise_for_status()

    async def _drop_series(self, client: httpx.AsyncClient, database: str, pid: str) -> None:
        body = await self._influxql(client, database, drop_series_influxql(pid))
        for result in body.get("results", []):
            if "error" in result:
                raise LookupError(f"InfluxDB refused DROP SERIES: {result['error']}")

    async def _influxql(self, client: httpx.AsyncClient, database: str, query: str) -> Any:
        """One InfluxQL statement on 1.8's ``/query``; its decoded JSON answer."""
        params = {"db": database, "q": query}
        if ":" in self._token:  # 1.8 takes "user:password" as its token
            user, password = self._token.split(":", 1)
            params |= {"u": user, "p": password}
        response = await client.post(f"{self._url}/query", params=params)
        response.raise_for_status()
        return response.json()


def _sum_csv(text: str) -> int:
    """The ``_value`` column of an annotated-CSV answer, summed (0 when it has no rows)."""
    total = 0
    column: int | None = None
    for line in text.splitlines():
        cells = line.strip().split(",")
        if not line.strip():
            column = None
            continue
        if column is None:
            if "_value" in cells:
                column = cells.index("_value")
            continue
        if column < len(cells) and cells[column]:
            total += int(float(cells[column]))
    return total
