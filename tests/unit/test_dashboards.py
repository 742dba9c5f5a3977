"""Dashboards as code: deterministic, committed, well-formed, wired to provisioned sources."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from alerts.metrics import AlertsMetrics
from deploy.grafana.dashboards import (
    DASHBOARDS,
    FLUX,
    OUTPUT_DIR,
    PROMQL,
    SCHEMA_VERSION,
    dashboard_json,
    generate,
    rendered_files,
    team_dashboards,
)
from deploy.grafana.dashboards.cohort import patient_link
from deploy.grafana.dashboards.common import INFLUX_UID, PROMETHEUS_UID
from deploy.grafana.dashboards.scope import Scope, team_filter, team_queries
from ingest.metrics import IngestMetrics
from pghd.cli import app
from processors.metrics import ProcessorMetrics

PROVISIONING = OUTPUT_DIR.parents[1]
ROOT = PROVISIONING.parents[2]
# ${name}, ${name:format} and $name; Grafana's own (``$__interval``...) start with "__".
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
PANEL_TYPES = {"stat", "table", "timeseries"}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return {stem: dashboard_json(make()) for stem, make in DASHBOARDS.items()}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _flux_annotations(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in board["annotations"]["list"] if "query" in a.get("target", {})]


def _query_text(target: dict[str, Any]) -> str:
    text = target.get("query", target.get("expr"))
    assert isinstance(text, str), target
    return text


def _referenced(text: str) -> set[str]:
    names = {a or b for a, b in VARIABLE.findall(text)}
    return {n for n in names if not n.startswith("__")}


_RENDER = (
    "import json, sys; from deploy.grafana.dashboards import rendered_files;"
    " json.dump(rendered_files(), sys.stdout)"
)


def test_generation_is_deterministic() -> None:
    """The same files from fresh interpreters with other hash seeds and time zones: the
    output depends on no set or dict iteration order, clock or locale."""
    here = rendered_files()
    for seed, tz in (("1", "UTC"), ("2", "Pacific/Kiritimati"), ("3", "America/Los_Angeles")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz}
        out = subprocess.run(
            [sys.executable, "-c", _RENDER],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
            timeout=120,
        )
        assert json.loads(out.stdout) == here, f"PYTHONHASHSEED={seed} TZ={tz}"


def test_committed_files_equal_a_fresh_generation() -> None:
    committed = {p.name: p.read_text() for p in sorted(OUTPUT_DIR.glob("*.json"))}
    fresh = rendered_files()
    assert sorted(committed) == sorted(fresh), "run `pghd grafana generate`"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale: run `pghd grafana generate`"


def test_generate_writes_every_dashboard_and_drops_stale_files(tmp_path: Path) -> None:
    (tmp_path / "old.json").write_text("{}")
    written = generate(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{s}.json" for s in DASHBOARDS)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    assert {p.name: p.read_text() for p in written} == rendered_files()


def test_cli_generate_and_check(tmp_path: Path) -> None:
    runner = CliRunner()
    stale = runner.invoke(app, ["grafana", "generate", "--check", "--out-dir", str(tmp_path)])
    assert stale.exit_code == 1
    wrote = runner.invoke(app, ["grafana", "generate", "--out-dir", str(tmp_path)])
    assert wrote.exit_code == 0, wrote.output
    assert len(list(tmp_path.glob("*.json"))) == len(DASHBOARDS)
    fresh = runner.invoke(app, ["grafana", "generate", "--check", "--out-dir", str(tmp_path)])
    assert fresh.exit_code == 0, fresh.output
    (tmp_path / "patient-detail.json").write_text("{}")
    edited = runner.invoke(app, ["grafana", "generate", "--check", "--out-dir", str(tmp_path)])
    assert edited.exit_code == 1


def test_files_are_valid_json_with_sorted_keys() -> None:
    for name, text in rendered_files().items():
        data = json.loads(text)
        assert json.dumps(data, indent=2, sort_keys=True) + "\n" == text, name


def test_dashboards_have_the_required_top_level_keys(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    uids = [board["uid"] for board in dashboards.values()]
    assert len(set(uids)) == len(uids)
    for stem, board in dashboards.items():
        assert isinstance(board["title"], str) and board["title"], stem
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", board["uid"]), stem
        assert board["schemaVersion"] == SCHEMA_VERSION
        assert board["panels"], stem
        assert set(board["time"]) == {"from", "to"}
        assert isinstance(board["templating"]["list"], list)
        assert "pghd" in board["tags"]


def test_every_panel_is_placed_typed_and_has_targets_with_a_datasource(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for stem, board in dashboards.items():
        ids = [panel["id"] for panel in _panels(board)]
        assert len(set(ids)) == len(ids), stem
        for panel in _panels(board):
            where = f"{stem}: {panel.get('title')}"
            assert panel["type"] in PANEL_TYPES, where
            assert panel["title"], where
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), where
            assert grid["h"] > 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where
            assert panel["datasource"]["uid"], where
            assert panel["targets"], where
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(set(ref_ids)) == len(ref_ids), where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert _query_text(target).strip(), where


def test_datasources_are_the_provisioned_ones(dashboards: dict[str, dict[str, Any]]) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "influxdb.yaml").read_text())
    influx = {d["uid"]: d for d in provisioned["datasources"]}[INFLUX_UID]
    assert influx["type"] == "influxdb" and influx["jsonData"]["version"] == "Flux"
    # v.defaultBucket: the raw bucket of docker-compose.yml, set by the operator only.
    assert influx["jsonData"]["defaultBucket"] == "pghd"
    known = {("influxdb", INFLUX_UID), ("prometheus", PROMETHEUS_UID)}
    for board in dashboards.values():
        for panel in _panels(board):
            assert (panel["datasource"]["type"], panel["datasource"]["uid"]) in known
        for var in board["templating"]["list"]:
            if "datasource" in var:
                assert var["datasource"]["uid"] == INFLUX_UID


def test_the_file_provider_reads_the_generated_directory() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "pghd.yaml").read_text())
    (only,) = provider["providers"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    container_root = Path(mounts["./deploy/grafana/provisioning"])
    relative = Path(only["options"]["path"]).relative_to(container_root)
    assert PROVISIONING / relative == OUTPUT_DIR


def test_every_variable_a_query_uses_exists(dashboards: dict[str, dict[str, Any]]) -> None:
    for stem, board in dashboards.items():
        variables = board["templating"]["list"]
        defined = {var["name"] for var in variables}
        texts = [_query_text(t) for p in _panels(board) for t in p["targets"]]
        texts += [p["title"] for p in _panels(board)] + [
            p.get("repeat", "") for p in board["panels"]
        ]
        texts += [v["query"] for v in variables if isinstance(v.get("query"), str)]
        texts += [a["target"]["query"] for a in _flux_annotations(board)]
        used = set().union(*(_referenced(text) for text in texts))
        used |= {p["repeat"] for p in board["panels"] if p.get("repeat")}
        assert used <= defined, f"{stem}: undefined {sorted(used - defined)}"


def test_a_variable_is_defined_before_the_variables_that_use_it(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for stem, board in dashboards.items():
        seen: set[str] = set()
        for var in board["templating"]["list"]:
            query = var.get("query") if var["type"] == "query" else ""
            assert _referenced(query or "") <= seen, f"{stem}: {var['name']}"
            seen.add(var["name"])


def test_every_query_comes_from_the_query_modules_and_every_one_is_used(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    flux_used: list[str] = []
    prom_used: list[str] = []
    for board in dashboards.values():
        for panel in _panels(board):
            for target in panel["targets"]:
                used = flux_used if "query" in target else prom_used
                used.append(_query_text(target))
        flux_used += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        flux_used += [a["target"]["query"] for a in _flux_annotations(board)]
    assert set(flux_used) == set(FLUX.values())
    assert set(prom_used) == set(PROMQL.values())


def test_flux_queries_read_the_default_bucket_and_grafana_time_macros() -> None:
    """The bucket is the data source's (``v.defaultBucket``), not a variable a viewer sets."""
    for name, text in FLUX.items():
        # A query may name a stream first (``episodes = from(...)``) and go on from it.
        assert text.split(" = ", 1)[-1].startswith("from(bucket: v.defaultBucket)"), name
        assert "|> range(start: " in text, name
        assert text.count("(") == text.count(")") and text.count("{") == text.count("}"), name


def test_promql_uses_only_metrics_the_services_export() -> None:
    exported: set[str] = set()
    registries = [IngestMetrics().registry, ProcessorMetrics().registry, AlertsMetrics().registry]
    for family in (f for registry in registries for f in registry.collect()):
        if family.type == "counter":
            exported |= {f"{family.name}_total"}
        elif family.type == "histogram":
            exported |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
        elif family.type == "gauge":
            exported |= {family.name}
    wanted = {"readings_accepted_total", "readings_rejected_total", "http_requests_total"}
    wanted |= {"kafka_produce_seconds_bucket"}
    # The pipeline health: consumer lag per group, DLQ rate, notification failures.
    wanted |= {"kafka_consumer_lag", "dead_letters_total", "notifications_total"}
    wanted |= {"readings_judged_total", "anomalies_emitted_total", "influx_write_seconds_bucket"}
    wanted |= {"influx_write_failures_total", "alerts_opened_total", "grafana_annotations_total"}
    used = set()
    for expr in PROMQL.values():
        used |= set(re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*[{\[]", expr))
        used |= set(re.findall(r"(?<!by )\(([A-Za-z_:][A-Za-z0-9_:]*)\)", expr))  # a bare (name)
    assert used <= exported, sorted(used - exported)
    assert wanted <= used


def test_patient_detail_repeats_a_vital_panel_per_channel_with_band_and_anomalies(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    board = dashboards["patient-detail"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["patient", "channel"]
    resting, panel = board["panels"]
    assert resting["title"] == "Resting heart rate (computed)"
    assert [t["query"] for t in resting["targets"]] == [FLUX["patient_resting_heart_rate"]]
    assert panel["repeat"] == "channel"
    assert [t["query"] for t in panel["targets"]] == [
        FLUX["patient_readings"],
        FLUX["patient_baseline_band"],
        FLUX["patient_anomaly_points"],
    ]
    overrides = {
        o["matcher"]["options"]: o["properties"] for o in panel["fieldConfig"]["overrides"]
    }
    assert {"id": "custom.fillBelowTo", "value": "low"} in overrides["high"]
    builtin, annotation, episodes = board["annotations"]["list"]
    assert builtin["builtIn"] == 1 and builtin["datasource"]["type"] == "grafana"
    assert annotation["datasource"]["uid"] == INFLUX_UID and annotation["enable"] is True
    assert annotation["target"]["query"] == FLUX["patient_anomaly_annotations"]
    assert episodes["name"] == "Episodes" and episodes["datasource"]["uid"] == INFLUX_UID
    assert episodes["target"]["query"] == FLUX["patient_episode_regions"]


def test_the_patient_link_percent_encodes_the_id_and_names_no_bucket() -> None:
    link = patient_link()
    assert link.startswith("/d/pghd-patient/patient-detail?")
    assert "var-patient=${__data.fields.patient_id:percentencode}" in link
    assert "bucket" not in link


TEAM_PATIENTS = ("p.1", "p-2", "q@x:1")


def test_a_team_filter_matches_its_patients_whole_and_escaped() -> None:
    predicate = team_filter(TEAM_PATIENTS)
    assert predicate == r"r.patient_id =~ /^(?:p-2|p\.1|q@x:1)$/"
    pattern = re.compile(predicate.split("/", 1)[1].rsplit("/", 1)[0])
    assert [p for p in ("p.1", "pX1", "p-2", "q@x:1", "p-22", "") if pattern.match(p)] == [
        "p.1",
        "p-2",
        "q@x:1",
    ]
    hostile = team_filter(("a/ or true or r.x =~ /b", "${r.patient_id}"))
    body = hostile[hostile.index("/") + 1 : hostile.rindex("/")]
    assert re.search(r"(?<!\\)/", body) is None, "an unescaped slash would end the literal"
    assert team_filter(()) == "r.patient_id =~ /^(?:)$/"  # matches no (non-empty) id


def test_every_team_query_is_the_shared_one_limited_to_the_team_after_its_range() -> None:
    scoped = team_queries(TEAM_PATIENTS)
    assert scoped.keys() == FLUX.keys()
    line = f"\n  |> filter(fn: (r) => {team_filter(TEAM_PATIENTS)})"
    for name, text in scoped.items():
        assert text.replace(line, "", 1) == FLUX[name], name
        head, _, _ = text.partition(line)
        assert head.splitlines()[-1].lstrip().startswith("|> range("), name


def test_team_boards_are_copies_with_their_own_uids_queries_and_links() -> None:
    boards = team_dashboards("ward.a", TEAM_PATIENTS)
    assert set(boards) == {"cohort-overview", "patient-detail"}
    scope = Scope(team="ward.a", patients=TEAM_PATIENTS)
    scoped = set(team_queries(TEAM_PATIENTS).values())
    shared = {stem: dashboard_json(make()) for stem, make in DASHBOARDS.items()}
    for stem, board in boards.items():
        assert board["uid"] == f"{shared[stem]['uid']}-{scope.key}" and len(board["uid"]) <= 40
        assert re.fullmatch(r"[A-Za-z0-9_-]+", board["uid"])
        assert board["title"] == f"{shared[stem]['title']} (ward.a)"
        texts = [_query_text(t) for p in _panels(board) for t in p.get("targets", [])]
        texts += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
        texts += [a["target"]["query"] for a in _flux_annotations(board)]
        assert texts and set(texts) <= scoped, stem
    cohort = json.dumps(boards["cohort-overview"])
    assert f"/d/pghd-patient-{scope.key}/patient-detail" in cohort
    assert "/d/pghd-patient/" not in cohort
    assert Scope(team="ward-b").key != scope.key
