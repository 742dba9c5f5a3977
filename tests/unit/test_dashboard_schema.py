"""The generated dashboards against Grafana's dashboard JSON schema and the SDK's models.

The schema is vendored in ``deploy/grafana/schema`` (source, version and licence in its
README). Where the generated schema is narrower than the JSON Grafana itself writes, it is
widened here, each time to what the installed foundation SDK's 11.3 models allow; a test
checks that each widening is needed, so none hides a real error.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as sdk

from deploy.grafana.dashboards import OUTPUT_DIR, rendered_files

SCHEMA_FILE = OUTPUT_DIR.parents[2] / "schema" / "dashboard.jsonschema.json"
ANY: dict[str, Any] = {}

#: definition -> property -> replacement (``None``: the definition's additionalProperties).
SCHEMA_WIDENINGS: dict[str, dict[str | None, Any]] = {
    "MatcherConfig": {"options": ANY},  # CUE `_`; a byName matcher's option is a string
    "DynamicConfigValue": {"value": ANY},  # CUE `_`; a unit, a number, a colour...
    "Threshold": {"value": {"type": ["number", "null"]}},  # null = -Infinity (base step)
    "AnnotationTarget": {None: True},  # a non-Grafana source's query lives in the target
}
#: Properties of the vendored (11.5) schema that the installed 11.3 SDK models lack, or
#: that the SDK writes itself (union discriminators).
NOT_IN_SDK_MODELS = {
    "VariableModel": {"allowCustomValue"},
    "ValueMap": {"type"},
    "RangeMap": {"type"},
    "RegexMap": {"type"},
    "SpecialValueMap": {"type"},
    "RowPanel": {"type"},
}


def _load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return schema


def widened(schema: dict[str, Any], only: str | None = None) -> dict[str, Any]:
    """``schema`` with :data:`SCHEMA_WIDENINGS` applied (all, or only the one named)."""
    out = copy.deepcopy(schema)
    for definition, changes in SCHEMA_WIDENINGS.items():
        if only is not None and definition != only:
            continue
        target = out["definitions"][definition]
        for prop, replacement in changes.items():
            if prop is None:
                target["additionalProperties"] = replacement
            else:
                target["properties"][prop] = replacement
    return out


def _errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{e.json_path}: {e.message[:200]}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in rendered_files().items()}


def test_the_vendored_schema_is_a_valid_draft7_schema() -> None:
    schema = _load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["definitions"]["Dashboard"]["properties"]["schemaVersion"]["default"] == 39
    assert (Path(SCHEMA_FILE).parent / "README.md").is_file()


def test_every_generated_dashboard_validates_against_grafanas_schema(
    documents: dict[str, dict[str, Any]],
) -> None:
    schema = widened(_load_schema())
    for name, document in documents.items():
        assert _errors(schema, document) == [], name


def test_every_widening_is_needed_by_some_dashboard(
    documents: dict[str, dict[str, Any]],
) -> None:
    full = widened(_load_schema())
    for definition in SCHEMA_WIDENINGS:
        without = copy.deepcopy(full)
        original = _load_schema()["definitions"][definition]
        without["definitions"][definition] = original
        failing = [n for n, d in documents.items() if _errors(without, d)]
        assert failing, f"{definition}: widening no longer needed; remove it"


def test_the_schema_rejects_what_grafana_would_reject(
    documents: dict[str, dict[str, Any]],
) -> None:
    schema = widened(_load_schema())
    board = documents["pipeline-health.json"]
    broken = copy.deepcopy(board)
    broken["panels"][0]["gridPos"]["w"] = 30  # wider than the 24-column grid
    assert _errors(schema, broken)
    broken = copy.deepcopy(board)
    broken["refreshEvery"] = "30s"  # not a dashboard property
    assert _errors(schema, broken)
    broken = copy.deepcopy(board)
    del broken["panels"][1]["type"]
    assert _errors(schema, broken)
    broken = copy.deepcopy(board)
    del broken["schemaVersion"]
    assert _errors(schema, broken)


def test_generated_dashboards_use_only_what_grafana_11_3_knows(
    documents: dict[str, dict[str, Any]],
) -> None:
    """The vendored schema is 11.5's: its 11.5-only property must not be used."""
    for name, document in documents.items():
        for variable in document["templating"]["list"]:
            assert "allowCustomValue" not in variable, name


def test_schema_definitions_match_the_installed_sdk_models() -> None:
    """Definition by definition, the schema's properties are those the SDK's models read."""
    for definition, body in _load_schema()["definitions"].items():
        if "properties" not in body:
            continue
        model = getattr(sdk, definition)
        read = set(re.findall(r'"(\w+)" in data', inspect.getsource(model.from_json)))
        extra = NOT_IN_SDK_MODELS.get(definition, set())
        assert set(body["properties"]) - extra == read, definition


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_every_dashboard_round_trips_through_the_sdk_models(
    documents: dict[str, dict[str, Any]],
) -> None:
    """Decoded by the SDK's ``Dashboard.from_json`` and encoded again, a dashboard comes back
    the same (nulls aside: the SDK writes unset optional fields as null), except the Flux
    annotation query, for which 11.3's AnnotationTarget model has no field."""
    for name, document in documents.items():
        model = sdk.Dashboard.from_json(document)
        back = _without_nulls(json.loads(json.dumps(model, cls=JSONEncoder)))
        expected = copy.deepcopy(document)
        for annotation in expected["annotations"]["list"]:
            for datasource_field in ("query", "refId"):
                annotation.get("target", {}).pop(datasource_field, None)
        assert back == _without_nulls(expected), name


def test_a_care_teams_boards_validate_too() -> None:
    """``pghd grafana teams`` pushes these copies; they must pass the same schema."""
    from deploy.grafana.dashboards import team_dashboards

    schema = widened(_load_schema())
    for name, document in team_dashboards("ward-a", ("p-1", "p.2")).items():
        assert _errors(schema, document) == [], name
