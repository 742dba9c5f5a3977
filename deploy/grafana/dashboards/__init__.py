"""Dashboards as code: *Cohort overview*, *Patient detail* and *Pipeline health*.

Built with Grafana's foundation SDK and written as JSON into the file provider's directory
(``provisioning/dashboards/json``, see ``provisioning/dashboards/pghd.yaml``) by
``pghd grafana generate``. Output is deterministic: keys sorted, panels numbered in order,
so the committed files can be compared with a fresh generation. The query texts live in
:mod:`deploy.grafana.dashboards.queries`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from deploy.grafana.dashboards.cohort import cohort_overview
from deploy.grafana.dashboards.patient import patient_detail
from deploy.grafana.dashboards.pipeline import pipeline_health
from deploy.grafana.dashboards.queries import FLUX, PROMQL
from deploy.grafana.dashboards.scope import Scope

__all__ = [
    "DASHBOARDS",
    "FLUX",
    "OUTPUT_DIR",
    "PROMQL",
    "SCHEMA_VERSION",
    "dashboard_json",
    "generate",
    "render",
    "rendered_files",
    "team_dashboards",
]

#: Where the file provider of ``provisioning/dashboards/pghd.yaml`` reads dashboards.
OUTPUT_DIR = Path(__file__).resolve().parents[1] / "provisioning" / "dashboards" / "json"
#: Dashboard JSON schema version of Grafana 11.3 (the compose image).
SCHEMA_VERSION = 39

#: File stem -> dashboard builder.
DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "cohort-overview": cohort_overview,
    "patient-detail": patient_detail,
    "pipeline-health": pipeline_health,
}


def dashboard_json(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict: panels numbered 1.., schema version, templating."""
    model = builder.build()
    model.schema_version = SCHEMA_VERSION
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    data.setdefault("templating", {}).setdefault("list", [])
    return data


def team_dashboards(team: str, patients: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """A care team's copies of the patient boards (cohort overview, patient detail), every
    query limited to ``patients``: file stem -> dashboard JSON (see :mod:`.scope`)."""
    scope = Scope(team=team, patients=patients)
    return {
        "cohort-overview": dashboard_json(cohort_overview(scope)),
        "patient-detail": dashboard_json(patient_detail(scope)),
    }


def render(builder: dash.Dashboard) -> str:
    """The dashboard's JSON text: sorted keys, two-space indent, final newline."""
    return json.dumps(dashboard_json(builder), indent=2, sort_keys=True) + "\n"


def rendered_files() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{stem}.json": render(make()) for stem, make in DASHBOARDS.items()}


def generate(out_dir: Path = OUTPUT_DIR) -> list[Path]:
    """Write every dashboard into ``out_dir``; remove stale ``*.json`` files; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = rendered_files()
    for stale in sorted(out_dir.glob("*.json")):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written
