r"""Every query the dashboards run, in one place: Flux for InfluxDB, PromQL for Prometheus.

Panels take their query text from :data:`FLUX` and :data:`PROMQL` by name, and the tests
run exactly the same text (Flux against a real InfluxDB, PromQL names against the metrics
the three services export), so a dashboard query cannot drift from what was proved.

Flux templates use Grafana's interpolation. The bucket is the data source's *default
bucket*, the macro ``v.defaultBucket`` that Grafana's backend fills in from the data source
settings ("pghd" on InfluxDB 2.x, "pghd/autogen" on 1.8): an operator's choice, never a
viewer's. Every dashboard variable (``patient``, ``channel``) is matched as a whole regular
expression in Grafana's ``regex`` format, ``r.patient_id =~ /^${patient:regex}$/``: Grafana
puts a backslash before each of ``\ ^ $ * + ? . ( ) | [ ] { } /`` in the value (``escapeRegex``
of ``@grafana/data``, which the ``regex`` format of both the Scenes and the legacy
interpolator applies), so a value can neither close the Flux regex literal nor act as a
pattern, and never reaches Flux string interpolation (``${...}`` inside ``"..."``, which a
plain ``r.patient_id == "${patient}"`` left open: the value ``${r.patient_id}`` matched every
patient). A multi-valued variable becomes ``(a|b)``, still matched whole. See
docs/security.md, "Grafana". The Flux macros ``v.timeRangeStart``, ``v.timeRangeStop`` and
``v.windowPeriod`` are the data source's too. Panels that must not lose a quiet patient
(freshness, the patient list) look back a fixed :data:`LOOKBACK` instead of the dashboard's
time range. Only functions both InfluxDB 1.8 (Flux 0.65) and 2.x know are used.
"""

from __future__ import annotations

import re

__all__ = ["FLUX", "FROM", "LOOKBACK", "PROMQL", "THIS_PATIENT", "regex_escape"]

#: What Grafana's ``regex`` format puts a backslash before (``escapeRegex`` of @grafana/data).
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def regex_escape(value: str) -> str:
    """``value`` as Grafana's ``regex`` format writes it: a literal inside ``/.../`` in Flux."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


#: How far back the patient list and the freshness table look for readings.
LOOKBACK = "-30d"

_VITALS = 'r._measurement == "vitals" and r._field == "value"'
#: The selected patient, matched whole in Grafana's ``regex`` format (see the module doc).
THIS_PATIENT = "r.patient_id =~ /^${patient:regex}$/"
_THIS_CHANNEL = THIS_PATIENT + " and r.channel =~ /^${channel:regex}$/"
#: Every query starts from the data source's default bucket (Grafana's macro).
FROM = "from(bucket: v.defaultBucket)"

FLUX: dict[str, str] = {
    # Cohort overview ------------------------------------------------------------------
    # Patients with at least one anomaly in the last 24 h, by severity (one table each).
    "cohort_patients_by_severity": f"""{FROM}
  |> range(start: -24h)
  |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score")
  |> group(columns: ["severity", "patient_id"])
  |> count()
  |> group(columns: ["severity"])
  |> count()
  |> rename(columns: {{_value: "patients"}})
  |> keep(columns: ["severity", "patients"])""",
    # Latest value of every channel of every patient: one row per patient.
    "cohort_latest_vitals": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => {_VITALS})
  |> last()
  |> group(columns: ["patient_id", "channel"])
  |> sort(columns: ["_time"])
  |> last()
  |> keep(columns: ["patient_id", "channel", "_value"])
  |> group()
  |> pivot(rowKey: ["patient_id"], columnKey: ["channel"], valueColumn: "_value")
  |> sort(columns: ["patient_id"])""",
    # Time since each patient's last reading, the stalest first.
    "cohort_freshness": f"""{FROM}
  |> range(start: {LOOKBACK})
  |> filter(fn: (r) => {_VITALS})
  |> last()
  |> group(columns: ["patient_id"])
  |> sort(columns: ["_time"])
  |> last()
  |> map(fn: (r) => ({{
      patient_id: r.patient_id,
      last_reading: r._time,
      age_seconds: float(v: uint(v: now()) - uint(v: r._time)) / 1000000000.0,
  }}))
  |> group()
  |> sort(columns: ["age_seconds"], desc: true)""",
    # Anomalies per window, one series per severity.
    "cohort_anomalies_over_time": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "score")
  |> group(columns: ["severity"])
  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)
  |> rename(columns: {{_value: "anomalies"}})
  |> keep(columns: ["_time", "severity", "anomalies"])""",
    # Patient detail -------------------------------------------------------------------
    # Template variable ``patient``: every patient with a reading (values in ``_value``).
    "patient_ids": f"""{FROM}
  |> range(start: {LOOKBACK})
  |> filter(fn: (r) => {_VITALS})
  |> keep(columns: ["patient_id"])
  |> distinct(column: "patient_id")
  |> group()
  |> distinct()
  |> sort()""",
    # Template variable ``channel``: the channels the selected patient has readings of.
    "patient_channels": f"""{FROM}
  |> range(start: {LOOKBACK})
  |> filter(fn: (r) => {_VITALS} and {THIS_PATIENT})
  |> keep(columns: ["channel"])
  |> distinct(column: "channel")
  |> group()
  |> distinct()
  |> sort()""",
    # One channel's readings (mean per window; every source merged).
    "patient_readings": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => {_VITALS})
  |> filter(fn: (r) => {_THIS_CHANNEL})
  |> group()
  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)
  |> sort(columns: ["_time"])
  |> rename(columns: {{_value: "reading"}})
  |> keep(columns: ["_time", "reading"])""",
    # The resting heart rate the processors compute: one series per kind (nightly: the
    # night's, daily: the day's at rest), points as stored.
    "patient_resting_heart_rate": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "resting_heart_rate" and r._field == "value")
  |> filter(fn: (r) => {THIS_PATIENT})
  |> map(fn: (r) => ({{_time: r._time, _value: r._value, series: r.kind}}))
  |> group(columns: ["series"])
  |> sort(columns: ["_time"])""",
    # The patient's baseline band (low/high) of that channel as it was learnt.
    "patient_baseline_band": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "baselines" and (r._field == "low" or r._field == "high"))
  |> filter(fn: (r) => {_THIS_CHANNEL})
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> group()
  |> keep(columns: ["_time", "low", "high"])
  |> sort(columns: ["_time"])""",
    # The channel's anomalous readings as points, one series per severity.
    "patient_anomaly_points": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "value")
  |> filter(fn: (r) => {_THIS_CHANNEL})
  |> group(columns: ["severity"])
  |> sort(columns: ["_time"])
  |> rename(columns: {{_value: "anomaly"}})
  |> keep(columns: ["_time", "severity", "anomaly"])""",
    # Annotations: every anomaly of the patient, its explanation as the text.
    "patient_anomaly_annotations": f"""{FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "explanation")
  |> filter(fn: (r) => {THIS_PATIENT})
  |> group()
  |> sort(columns: ["_time"])
  |> map(fn: (r) => ({{
      _time: r._time,
      text: r._value,
      channel: r.channel,
      severity: r.severity,
      detector: r.detector,
  }}))""",
    # Annotations: every episode of the patient as a region, from its onset to its latest
    # anomaly (its resolution or withdrawal once it ended), the phase it reached as the text.
    "patient_episode_regions": f"""episodes = {FROM}
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => r._measurement == "anomalies" and r._field == "episode_id")
  |> filter(fn: (r) => {THIS_PATIENT})
  |> group(columns: ["_value"])
  |> sort(columns: ["_time"])
onset = episodes |> first() |> keep(columns: ["_time", "_value", "channel"])
latest = episodes
  |> last()
  |> keep(columns: ["_time", "_value", "phase"])
  |> rename(columns: {{_time: "timeEnd"}})
join(tables: {{onset: onset, latest: latest}}, on: ["_value"])
  |> group()
  |> map(fn: (r) => ({{
      _time: r._time,
      timeEnd: r.timeEnd,
      text: r.channel + " episode (" + r.phase + ")",
      channel: r.channel,
      episode_id: r._value,
  }}))
  |> sort(columns: ["_time"])""",
}

_RATE = "[$__rate_interval]"

PROMQL: dict[str, str] = {
    "readings_accepted_rate": f"sum by (metric) (rate(readings_accepted_total{_RATE}))",
    "readings_rejected_rate": f"sum by (reason) (rate(readings_rejected_total{_RATE}))",
    "http_requests_rate": f"sum by (route, status) (rate(http_requests_total{_RATE}))",
    "http_error_ratio": (
        f'sum(rate(http_requests_total{{status=~"5.."}}{_RATE}))'
        f" / sum(rate(http_requests_total{_RATE}))"
    ),
    "kafka_produce_p50": (
        f"histogram_quantile(0.5, sum by (le) (rate(kafka_produce_seconds_bucket{_RATE})))"
    ),
    "kafka_produce_p95": (
        f"histogram_quantile(0.95, sum by (le) (rate(kafka_produce_seconds_bucket{_RATE})))"
    ),
    "kafka_produce_p99": (
        f"histogram_quantile(0.99, sum by (le) (rate(kafka_produce_seconds_bucket{_RATE})))"
    ),
    "kafka_produce_by_outcome": (f"sum by (outcome) (rate(kafka_produce_seconds_count{_RATE}))"),
    # processors
    "readings_judged_rate": f"sum(rate(readings_judged_total{_RATE}))",
    "duplicates_dropped_rate": f"sum by (where) (rate(duplicates_dropped_total{_RATE}))",
    "anomalies_emitted_rate": f"sum by (severity) (rate(anomalies_emitted_total{_RATE}))",
    "influx_write_p95": (
        f"histogram_quantile(0.95, sum by (le) (rate(influx_write_seconds_bucket{_RATE})))"
    ),
    "influx_write_failures_rate": f"sum(rate(influx_write_failures_total{_RATE}))",
    "store_points_written_rate": f"sum(rate(store_points_written_total{_RATE}))",
    "store_points_refused_rate": f"sum(rate(store_points_refused_total{_RATE}))",
    # processors and alerts: every worker reports every partition of its group, hence max.
    "consumer_lag_by_group": (
        "sum by (group, topic) (max by (group, topic, partition) (kafka_consumer_lag))"
    ),
    "dead_letters_rate": f"sum by (job, reason) (rate(dead_letters_total{_RATE}))",
    # alerts
    "alerts_opened_per_hour": "sum by (severity) (increase(alerts_opened_total[1h]))",
    "alerts_resolved_per_hour": "sum by (severity) (increase(alerts_resolved_total[1h]))",
    "notifications_rate": f"sum by (channel, outcome) (rate(notifications_total{_RATE}))",
    "alerts_undelivered": "sum by (state) (alerts_undelivered)",
    "grafana_annotation_failures_rate": (
        f'sum by (outcome) (rate(grafana_annotations_total{{outcome!="written"}}{_RATE}))'
    ),
}
