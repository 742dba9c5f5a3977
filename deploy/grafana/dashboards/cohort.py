"""*Cohort overview*: who needs a look now, what their vitals are, whose data stopped coming."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from deploy.grafana.dashboards.common import INFLUX, builtin_annotations, flux
from deploy.grafana.dashboards.patient import UID as PATIENT_UID
from deploy.grafana.dashboards.scope import EVERYONE, Scope

__all__ = ["UID", "cohort_overview", "patient_link"]

UID = "pghd-cohort"


def patient_link(scope: Scope = EVERYONE) -> str:
    """The data link from a patient's row to the scope's patient detail board (the id
    percent-encoded, as a URL parameter must be)."""
    return (
        f"/d/{scope.uid(PATIENT_UID)}/patient-detail"
        "?var-patient=${__data.fields.patient_id:percentencode}&${__url_time_range}"
    )


#: Series of the severity panels are named for their ``severity`` label.
SEVERITY_NAME = "${__field.labels.severity}"
_SEVERITY_COLOURS = {"info": "blue", "warning": "orange", "critical": "red"}


def _severity_overrides() -> list[Builder[model.DashboardFieldConfigSourceOverrides]]:
    return [
        dash.DashboardFieldConfigSourceOverrides()
        .matcher(model.MatcherConfig(id_val="byName", options=severity))
        .properties(
            [
                model.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": colour}
                )
            ]
        )
        for severity, colour in _SEVERITY_COLOURS.items()
    ]


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=colour) for value, colour in steps])
    )


def _patients_by_severity(scope: Scope) -> stat.Panel:
    return (
        stat.Panel()
        .title("Patients with anomalies in the last 24 h, by severity")
        .description("Patients with at least one anomaly of that severity in the last 24 hours.")
        .datasource(INFLUX)
        .with_target(flux("cohort_patients_by_severity", queries=scope.queries))
        .display_name(SEVERITY_NAME)
        .unit("none")
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .overrides(_severity_overrides())
        .span(24)
        .height(4)
    )


def _latest_vitals(scope: Scope) -> table.Panel:
    return (
        table.Panel()
        .title("Latest value per vital")
        .description("Each patient's most recent reading of every channel in the time range.")
        .datasource(INFLUX)
        .with_target(flux("cohort_latest_vitals", queries=scope.queries))
        .data_links([dash.DashboardLink("Patient detail").url(patient_link(scope))])
        .span(16)
        .height(10)
    )


def _freshness(scope: Scope) -> table.Panel:
    return (
        table.Panel()
        .title("Data freshness")
        .description("Time since each patient's last reading (last 30 days), stalest first.")
        .datasource(INFLUX)
        .with_target(flux("cohort_freshness", queries=scope.queries))
        .override_by_name(
            "age_seconds",
            [
                model.DynamicConfigValue(id_val="unit", value="s"),
                model.DynamicConfigValue(id_val="displayName", value="since last reading"),
                model.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .thresholds(_thresholds((None, "green"), (3600, "orange"), (6 * 3600, "red")))
        .data_links([dash.DashboardLink("Patient detail").url(patient_link(scope))])
        .span(8)
        .height(10)
    )


def _anomalies_over_time(scope: Scope) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title("Anomalies over time")
        .description("Anomalies raised per interval, by severity.")
        .datasource(INFLUX)
        .with_target(flux("cohort_anomalies_over_time", queries=scope.queries))
        .display_name(SEVERITY_NAME)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
        .overrides(_severity_overrides())
        .unit("short")
        .span(24)
        .height(8)
    )


def cohort_overview(scope: Scope = EVERYONE) -> dash.Dashboard:
    """The *Cohort overview* dashboard builder (a care team's copy: ``scope``)."""
    whom = "The whole cohort" if scope.team is None else f"Care team {scope.team}'s patients"
    return (
        dash.Dashboard(scope.title("Cohort overview"))
        .uid(scope.uid(UID))
        .description(f"{whom}: open anomalies, latest vitals, data freshness.")
        .tags(["pghd", "care-team"])
        .editable()
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .annotation(builtin_annotations())
        .with_panel(_patients_by_severity(scope))
        .with_panel(_latest_vitals(scope))
        .with_panel(_freshness(scope))
        .with_panel(_anomalies_over_time(scope))
    )
