"""*Patient detail*: one patient's channels against their own baseline band, anomalies marked.

The ``patient`` variable lists every patient with readings (a care team's copy: the team's
patients only, see :mod:`.scope`); ``channel`` lists that patient's
channels (all selected by default) and the vital panel repeats once per channel. Each
repeat draws the readings, the baseline band (low to high, filled) and the anomalous
readings as points; an annotation query marks every anomaly of the patient with its
explanation on every panel, another draws each episode (one departure from normal, from its
onset to its resolution) as a region. A panel above draws the resting heart rate the
processors compute, nightly and daily.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from deploy.grafana.dashboards.common import (
    INFLUX,
    builtin_annotations,
    flux,
    flux_annotation,
    flux_variable,
)
from deploy.grafana.dashboards.scope import EVERYONE, Scope

__all__ = ["UID", "patient_detail"]

UID = "pghd-patient"


def _prop(id_val: str, value: object) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val=id_val, value=value)


def _vital_panel(queries: dict[str, str]) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("${channel}")
        .description(
            "Readings (mean per interval), the patient's baseline band and anomalous readings."
        )
        .datasource(INFLUX)
        .with_target(flux("patient_readings", "A", queries=queries))
        .with_target(flux("patient_baseline_band", "B", queries=queries))
        .with_target(flux("patient_anomaly_points", "C", queries=queries))
        .repeat("channel")
        .repeat_direction("h")
        .max_per_row(2)
        .line_width(2)
        .span(12)
        .height(9)
        .override_by_name(
            "high",
            [
                _prop("custom.fillBelowTo", "low"),
                _prop("custom.fillOpacity", 15),
                _prop("custom.lineWidth", 0),
                _prop("color", {"mode": "fixed", "fixedColor": "green"}),
                _prop("displayName", "baseline high"),
            ],
        )
        .override_by_name(
            "low",
            [
                _prop("custom.lineWidth", 0),
                _prop("color", {"mode": "fixed", "fixedColor": "green"}),
                _prop("displayName", "baseline low"),
            ],
        )
        .override_by_query(
            "C",
            [
                _prop("custom.drawStyle", "points"),
                _prop("custom.pointSize", 9),
                _prop("custom.showPoints", "always"),
                _prop("color", {"mode": "fixed", "fixedColor": "red"}),
                _prop("displayName", "anomaly (${__field.labels.severity})"),
            ],
        )
        .show_points(common.VisibilityMode.NEVER)
    )


def _resting_panel(queries: dict[str, str]) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Resting heart rate (computed)")
        .description(
            "The resting heart rate the processors compute from the heart rate and the steps:"
            " nightly (inside the night's sleep session, without steps; judged night by night)"
            " and daily (heart rate at rest, 12 still minutes)."
        )
        .datasource(INFLUX)
        .with_target(flux("patient_resting_heart_rate", "A", queries=queries))
        .line_width(2)
        .span(12)
        .height(7)
        .unit("bpm")
        .show_points(common.VisibilityMode.ALWAYS)
    )


def patient_detail(scope: Scope = EVERYONE) -> dash.Dashboard:
    """The *Patient detail* dashboard builder (a care team's copy: ``scope``)."""
    queries = scope.queries
    channel = (
        flux_variable("channel", query="patient_channels", label="Channel", queries=queries)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )
    return (
        dash.Dashboard(scope.title("Patient detail"))
        .uid(scope.uid(UID))
        .description("One patient's vitals against their own baseline, with anomalies.")
        .tags(["pghd", "care-team"])
        .editable()
        .time("now-7d", "now")
        .refresh("1m")
        .timezone("browser")
        .annotation(builtin_annotations())
        .with_variable(
            flux_variable("patient", query="patient_ids", label="Patient", queries=queries)
        )
        .with_variable(channel)
        .annotation(
            flux_annotation(
                "patient_anomaly_annotations", title="Anomalies", color="red", queries=queries
            )
        )
        .annotation(
            flux_annotation(
                "patient_episode_regions", title="Episodes", color="orange", queries=queries
            )
        )
        .with_panel(_resting_panel(queries))
        .with_panel(_vital_panel(queries))
    )
