"""The FHIR R4 read API of the care-team API (``/fhir``): what clinical systems search.

- :mod:`~pghd.fhir_read.search`: a search's parameters parsed (patient, code, date,
  ``_count``, the continuation cursor, status), pure;
- :mod:`~pghd.fhir_read.cursor`: the opaque continuation cursor of a paged search;
- :mod:`~pghd.fhir_read.paging`: a page cut from sorted InfluxDB rows, whole readings only;
- :mod:`~pghd.fhir_read.flux`: the Flux of a page's queries, pure;
- :mod:`~pghd.fhir_read.interpretation`: which stored finding flags which reading, and its
  v3 ObservationInterpretation code;
- :mod:`~pghd.fhir_read.resources`: Observations (vital-signs profiles), Flags, the
  searchset Bundle and the CapabilityStatement, pure;
- :mod:`~pghd.fhir_read.influx`: the reader that pages through InfluxDB (the I/O).

Served by ``alerts/api/routes/fhir.py``; see docs/fhir.md. Importing this package imports
none of its modules.
"""
