"""Pieces every dashboard shares: data source references, Flux targets, variables.

The foundation SDK has no InfluxDB query type, so :class:`FluxQuery` (a
:class:`~grafana_foundation_sdk.cog.variants.Dataquery`) and its builder :class:`FluxTarget`
add one, in the JSON shape Grafana's InfluxDB data source stores in Flux mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from deploy.grafana.dashboards.queries import FLUX, PROMQL

__all__ = [
    "INFLUX",
    "INFLUX_UID",
    "PROMETHEUS",
    "PROMETHEUS_UID",
    "FluxAnnotationTarget",
    "FluxQuery",
    "FluxTarget",
    "builtin_annotations",
    "flux",
    "flux_annotation",
    "flux_variable",
    "promql",
]

#: UID of the InfluxDB data source in ``provisioning/datasources/influxdb.yaml``.
INFLUX_UID = "pghd-influxdb"
#: UID the Prometheus data source must be provisioned with (pipeline health).
PROMETHEUS_UID = "pghd-prometheus"

INFLUX = model.DataSourceRef(type_val="influxdb", uid=INFLUX_UID)
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)


class FluxQuery(cogvariants.Dataquery):
    """One Flux target of Grafana's InfluxDB data source."""

    def __init__(self, *, query: str = "", ref_id: str = "") -> None:
        self.query = query
        self.ref_id = ref_id
        self.datasource = INFLUX

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it."""
        return {"datasource": self.datasource, "query": self.query, "refId": self.ref_id}


class FluxTarget(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of a :class:`FluxQuery`."""

    def __init__(self) -> None:
        self._internal = FluxQuery()

    def build(self) -> FluxQuery:
        """The query."""
        return self._internal

    def query(self, query: str) -> Self:
        """Set the Flux text."""
        self._internal.query = query
        return self

    def ref_id(self, ref_id: str) -> Self:
        """Set the reference id (A, B, ...)."""
        self._internal.ref_id = ref_id
        return self


class FluxAnnotationTarget(model.AnnotationTarget):
    """The ``target`` of an annotation query on the InfluxDB data source (Flux mode).

    Besides the Flux ``query`` it carries the four fields Grafana's dashboard schema requires
    of every annotation target (``limit``, ``matchAny``, ``tags``, ``type``: the built-in
    Grafana source's defaults, which Grafana writes into new annotation queries too); the
    InfluxDB data source ignores them.
    """

    def __init__(self, *, query: str, ref_id: str = "Anno") -> None:
        super().__init__(limit=100, match_any=False, tags=[], type_val="dashboard")
        self.query = query
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it."""
        return {**super().to_json(), "query": self.query, "refId": self.ref_id}


class _AnnotationTargetBuilder(cogbuilder.Builder[model.AnnotationTarget]):
    def __init__(self, target: FluxAnnotationTarget) -> None:
        self._target = target

    def build(self) -> model.AnnotationTarget:
        return self._target


def flux(name: str, ref_id: str = "A", *, queries: Mapping[str, str] = FLUX) -> FluxTarget:
    """A target running the Flux query ``name`` of ``queries`` (:data:`~.queries.FLUX`)."""
    return FluxTarget().query(queries[name]).ref_id(ref_id)


def promql(name: str, *, ref_id: str = "A", legend: str = "") -> prometheus.Dataquery:
    """A Prometheus target running the PromQL ``name`` of :data:`~.queries.PROMQL`."""
    target = prometheus.Dataquery().expr(PROMQL[name]).ref_id(ref_id).datasource(PROMETHEUS)
    return target.legend_format(legend) if legend else target


def flux_annotation(
    name: str, *, title: str, color: str, queries: Mapping[str, str] = FLUX
) -> dash.AnnotationQuery:
    """An annotation query running the Flux query ``name`` of ``queries``."""
    target = _AnnotationTargetBuilder(FluxAnnotationTarget(query=queries[name]))
    return (
        dash.AnnotationQuery()
        .name(title)
        .datasource(INFLUX)
        .enable(True)
        .icon_color(color)
        .target(target)
    )


def builtin_annotations() -> dash.AnnotationQuery:
    """Grafana's own annotations (alerts, and those the alerts service posts)."""
    target = dash.AnnotationTarget().limit(100).match_any(False).tags([]).type("dashboard")
    return (
        dash.AnnotationQuery()
        .name("Annotations & Alerts")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
        .target(target)
    )


def flux_variable(
    name: str, *, query: str, label: str, queries: Mapping[str, str] = FLUX
) -> dash.QueryVariable:
    """A single-value variable whose options are the ``_value`` column of Flux ``query``."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(INFLUX)
        .query(queries[query])
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
