"""A patient's data export: readings and findings as FHIR R4 or Open mHealth.

- :mod:`~pghd.export.records`: the stored readings and findings, folded from InfluxDB rows;
- :mod:`~pghd.export.fhir` and :mod:`~pghd.export.omh`: the two formats (pure functions);
- :mod:`~pghd.export.document`: the document written as its items arrive;
- :mod:`~pghd.export.influx`: the reader that pages through a patient's history.

Served by ingest's ``GET /v1/patients/{patient_id}/export`` and ``pghd patients export``
(see docs/security.md). Importing this package imports none of its modules.
"""
