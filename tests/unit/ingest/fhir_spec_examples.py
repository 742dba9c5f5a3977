"""The FHIR R4 specification's own Observation examples, as published, for the tests.

Source: HL7 FHIR R4 (4.0.1), ``http://hl7.org/fhir/R4/<file>``. The files in
``fhir_r4_examples/`` are byte for byte those of the 4.0.1 build of the specification as
the ``fhir-ru/fhir-ru.github.io`` repository keeps it (its ``version.info``:
``FhirVersion=4.0.1-5046061``):

- ``observation-example-heart-rate.json`` (vital signs: 44 /min, effectiveDateTime
  ``1999-07-02``, a date alone),
- ``observation-example-body-temperature.json`` (36.5 Cel, ``1999-07-02``),
- ``observation-example-bloodpressure.json`` (107/60 mm[Hg], ``2012-09-17``),
- ``observation-example-satO2.json`` (95 %, ``2014-12-05T09:30:10+01:00``),
- ``observation-example-respiratory-rate.json`` (26 /min, ``1999-07-02``),
- ``observation-example.json`` (body weight 185 [lb_av], ``2016-03-28``),
- ``observation-example-f001-glucose.json`` (6.3 mmol/L, effectivePeriod with a start
  only, ``2013-04-02T09:30:10+01:00``).

:func:`example` changes only the subject and the date: the date keeps its shape (a date
alone stays a date alone; a time keeps its clock time and offset), so that nothing is
refused as before 2000 or older than the retention.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

__all__ = ["EXAMPLES", "VITAL_SIGNS", "example", "published"]

_DIR = Path(__file__).parent / "fhir_r4_examples"

EXAMPLES = {
    "heart-rate": "observation-example-heart-rate.json",
    "body-temperature": "observation-example-body-temperature.json",
    "blood-pressure": "observation-example-bloodpressure.json",
    "satO2": "observation-example-satO2.json",
    "respiratory-rate": "observation-example-respiratory-rate.json",
    "body-weight": "observation-example.json",
    "glucose": "observation-example-f001-glucose.json",
}
"""Short name -> the published file."""
VITAL_SIGNS = ("heart-rate", "body-temperature", "blood-pressure", "satO2")
"""The four the brief names: the Must show posts them singly and in a batch Bundle."""


def published(name: str) -> dict[str, Any]:
    """The example exactly as published."""
    document: dict[str, Any] = json.loads((_DIR / EXAMPLES[name]).read_text(encoding="utf-8"))
    return document


def example(name: str, *, patient: str, day: date) -> dict[str, Any]:
    """The published example with its subject ``Patient/{patient}`` and its date ``day``."""
    document = published(name)
    document["subject"] = {**document["subject"], "reference": f"Patient/{patient}"}
    if "effectiveDateTime" in document:
        document["effectiveDateTime"] = _on(document["effectiveDateTime"], day)
    else:
        period = document["effectivePeriod"]
        document["effectivePeriod"] = {key: _on(value, day) for key, value in period.items()}
    return document


def _on(value: str, day: date) -> str:
    """``value`` (``YYYY-MM-DD`` and perhaps a time) with its date replaced by ``day``."""
    return day.isoformat() + value[10:]
