"""What a patient sees of their own data: their summary and their charts (``/v1/me``).

- :mod:`pghd.patient_view.summary` (pure): the latest value per channel against the
  patient's usual range, 7- and 30-day trends, nightly resting heart rates, and their open
  findings in the reviewed patient wording (:mod:`pghd.feedback.wording`);
- :mod:`pghd.patient_view.chart` (pure): which resolution a chart of a span is drawn at,
  and the chart itself;
- :mod:`pghd.patient_view.influx` (I/O): reads the points both need from InfluxDB, one
  patient at a time, with a deadline.
"""
