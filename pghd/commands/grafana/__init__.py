"""``pghd grafana``: dashboards as code.

``pghd grafana generate`` writes the dashboards of :mod:`deploy.grafana.dashboards` as JSON
into the directory Grafana's file provider reads (``deploy/grafana/provisioning/dashboards/
json``, mounted into the compose Grafana); ``--check`` only reports whether the files there
are up to date (exit 1 if not), for CI (:mod:`.generating`).

``pghd grafana provision --url --token`` pushes the same folder, data sources
(``provisioning/datasources/*.yaml``) and dashboards to a running Grafana through its HTTP
API (grafana-client), for a Grafana that does not read the provisioning files (a managed or
shared one). Re-running it updates what exists instead of adding copies (:mod:`.provisioning`).

``pghd grafana teams --url --token --teams-file F`` (or ``--ingest-url``) makes one folder and
one Grafana team per care team, the folder viewable by that team only, with the team's copies
of the patient boards (:mod:`.teams`).

``pghd grafana render --out docs/img`` runs the dashboards' Flux queries against an
InfluxDB and draws their data with matplotlib (the pictures in docs/care-teams.md;
:mod:`.rendering`, drawing in :mod:`.plots`).
"""

from __future__ import annotations

import logging

import typer

from pghd.commands.grafana.generating import generate
from pghd.commands.grafana.provisioning import ProvisionReport, datasource_bodies, provision, push
from pghd.commands.grafana.rendering import interpolate, render
from pghd.commands.grafana.teams import teams

__all__ = [
    "ProvisionReport",
    "app",
    "datasource_bodies",
    "generate",
    "interpolate",
    "provision",
    "push",
    "render",
    "teams",
]

logger = logging.getLogger(__name__)

app = typer.Typer(help="Grafana dashboards as code.", no_args_is_help=True)
app.command()(generate)
app.command()(provision)
app.command()(render)
app.command()(teams)
