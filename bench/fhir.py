"""FHIR throughput: readings/s through ``POST /v1/fhir`` in Bundles of 100 Observations.

Beside it, in the same run and on the same ingest process, the same readings through
``POST /v1/measurements`` in batches of 100: the ratio is the cost of FHIR (parsing and
validating every Observation with fhir.resources, FHIRPath bookkeeping, the response Bundle).
``python -m bench.fhir`` measures only this, on its own Kafka and InfluxDB.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.runs import ingest_rate
from bench.workloads import posted_readings
from deploy.local.ephemeral import ephemeral_stack
from deploy.local.harness import API_KEY, Pipeline, running_pipeline

__all__ = ["BUNDLE_SIZE", "fhir_bundles", "fhir_rate", "fhir_vs_measurements", "main"]

BUNDLE_SIZE = 100


def _observation(reading: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"bench-{n}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{reading['patient_id']}"},
        "effectiveDateTime": reading["effective_time"],
        "valueQuantity": {
            "value": reading["value"],
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "device": {"reference": f"Device/{reading['device_id']}"},
    }


def fhir_bundles(readings: list[dict[str, Any]], *, size: int = BUNDLE_SIZE) -> list[bytes]:
    """The heart-rate ``readings`` as encoded batch Bundles of ``size`` Observations."""
    out = []
    for start in range(0, len(readings), size):
        entries = [
            {
                "fullUrl": f"urn:uuid:bench-{start + i}",
                "resource": _observation(r, start + i),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i, r in enumerate(readings[start : start + size])
        ]
        out.append(orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    return out


async def fhir_rate(
    pipeline: Pipeline, bundles: list[bytes], *, readings: int, clients: int
) -> float:
    """POST ``bundles`` from ``clients`` concurrent clients; return readings/s."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bundles:
        queue.put_nowait(body)
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/fhir+json"}

    async def client() -> None:
        async with httpx.AsyncClient(
            base_url=pipeline.ingest_url, headers=headers, timeout=60
        ) as http:
            while not queue.empty():
                response = await http.post("/v1/fhir", content=queue.get_nowait())
                statuses = {e["response"]["status"] for e in response.json().get("entry", [])}
                if response.status_code != 200 or statuses != {"201 Created"}:
                    raise RuntimeError(f"ingest refused a bench Bundle: {response.text[:300]}")

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return readings / (time.perf_counter() - began)


def fhir_vs_measurements(
    pipeline: Pipeline, readings: list[dict[str, Any]], *, clients: int = 4
) -> tuple[float, float]:
    """(FHIR readings/s, measurements readings/s) for the same readings, 100 per request."""
    pipeline.enroll_for(readings)  # consent is enforced
    # Warm both paths up on distinct readings (same size), then measure on the rest.
    asyncio.run(ingest_rate(pipeline, readings[:BUNDLE_SIZE], batch=BUNDLE_SIZE, clients=1))
    asyncio.run(
        fhir_rate(pipeline, fhir_bundles(readings[:BUNDLE_SIZE]), readings=BUNDLE_SIZE, clients=1)
    )
    measured = readings[BUNDLE_SIZE:]
    base = asyncio.run(ingest_rate(pipeline, measured, batch=BUNDLE_SIZE, clients=clients))
    bundles = fhir_bundles(measured)
    ours = asyncio.run(fhir_rate(pipeline, bundles, readings=len(measured), clients=clients))
    return ours, base


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fhir", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    readings = posted_readings(patients=200, per_patient=args.readings // 200, seed=5)
    with (
        tempfile.TemporaryDirectory(prefix="pghd-bench-fhir-") as tmp,
        ephemeral_stack(Path(tmp)) as stack,
        running_pipeline(
            stack_env=stack.env(),
            influx=stack.influx,
            workdir=Path(tmp) / "a",
            services=("ingest",),
        ) as pipeline,
    ):
        ours, base = fhir_vs_measurements(pipeline, readings, clients=args.clients)
    print(
        f"FHIR Bundles of {BUNDLE_SIZE}: {ours:,.1f} readings/s; POST /v1/measurements batches"
        f" of {BUNDLE_SIZE}: {base:,.1f} readings/s; ratio {ours / base:.2f}x"
    )


if __name__ == "__main__":
    main()
