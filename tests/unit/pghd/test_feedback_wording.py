"""The reviewed wording patients read: the packaged file holds together, renders take exactly
the declared fields, and changes are worded in the patient's own units."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from pghd.catalogue import Metric
from pghd.contracts import Severity
from pghd.feedback.wording import (
    REFUSAL_REASONS,
    Kind,
    Templates,
    WordingError,
    describe_change,
    finding_change,
    load_templates,
    metric_name,
    phrase,
    refusal_reason,
    render,
)


def packaged() -> dict[str, Any]:
    text = resources.files("pghd.feedback").joinpath("templates.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def test_the_packaged_templates_cover_every_kind_severity_and_metric() -> None:
    templates = load_templates()
    assert set(templates.kinds) == set(Kind)
    assert set(templates.metrics) == set(Metric)
    assert set(templates.kinds[Kind.FINDING_OPENED]) == set(Severity)


def test_a_finding_reads_in_plain_words_and_says_the_care_team_was_told() -> None:
    change = describe_change("resting_heart_rate", 72.0, 55.0, 63.0)
    text = render(
        Kind.FINDING_OPENED,
        Severity.WARNING,
        {"metric": metric_name("resting_heart_rate"), "change": change, "since": "for 3 nights"},
    )
    assert text.startswith(
        "Your resting heart rate has been 9 beats per minute above your usual for 3 nights;"
        " your care team has been told."
    )
    for alarming in ("danger", "emergency!", "abnormal", "alert"):
        assert alarming not in text.lower()


@pytest.mark.parametrize("severity", list(Severity))
def test_a_finding_no_one_was_paged_about_claims_no_contact(severity: Severity) -> None:
    fields = {"metric": "heart rate", "change": "different from", "since": "since Monday"}
    text = render(Kind.FINDING_OPENED, severity, fields, told=False)
    assert text.startswith("Your heart rate has been different from your usual since Monday.")
    assert "Your care team can see this in your record." in text
    for claim in ("told", "will contact", "in touch", "updated"):
        assert claim not in text
    assert render(Kind.FINDING_RESOLVED, severity, {"metric": "x"}, told=False) == render(
        Kind.FINDING_RESOLVED, severity, {"metric": "x"}
    )


def test_changes_are_worded_against_the_usual_range() -> None:
    assert describe_change("spo2", 91.5, 94.0, 99.0) == "2.5 % below"
    assert describe_change("heart_rate", 60.0, 50.0, 70.0) == "within"
    assert metric_name("unknown_metric") == "unknown metric"


def test_render_refuses_missing_and_undeclared_fields() -> None:
    with pytest.raises(WordingError, match="takes fields"):
        render(Kind.FINDING_RESOLVED, Severity.INFO, {})
    with pytest.raises(WordingError, match="takes fields"):
        render(Kind.FINDING_RESOLVED, Severity.INFO, {"metric": "x", "other_patient": "p-2"})


def test_kinds_without_severities_read_their_one_template_at_any_severity() -> None:
    fields = {"source": "your watch", "since": "Tuesday 08:00"}
    assert render(Kind.DEVICE_SILENT, Severity.CRITICAL, fields) == render(
        Kind.DEVICE_SILENT, Severity.INFO, fields
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["kinds"]["finding_opened"].pop("critical"), "finding_opened needs"),
        (lambda d: d["metrics"].pop("spo2"), "no patient wording for metrics"),
        (lambda d: d["fields"]["finding_resolved"].clear(), "undeclared fields"),
        (
            lambda d: d["kinds"]["device_silent"].__setitem__("info", "{source!r}"),
            "plain",
        ),
        (lambda d: d["kinds"].pop("weekly_summary"), "weekly_summary"),
        (lambda d: d["untold"]["finding_opened"].pop("warning"), "untold needs"),
        (lambda d: d.pop("untold"), "untold"),
        (
            lambda d: d["untold"]["finding_opened"].__setitem__("info", "{metric} of {patient}"),
            "untold finding_opened/info uses undeclared fields",
        ),
    ],
)
def test_a_template_file_that_does_not_hold_together_is_refused(change: Any, match: str) -> None:
    doc = packaged()
    change(doc)
    with pytest.raises(ValueError, match=match):
        Templates.model_validate(doc)


def test_a_finding_without_an_above_or_below_reads_different_from_the_usual() -> None:
    assert finding_change("heart_rate", 151.0, (62.0, 82.0)) == "69 beats per minute above"
    assert finding_change("heart_rate", 70.0, (62.0, 82.0)) == "different from"  # a trend
    assert finding_change("spo2", 88.0, None) == "different from"  # no usual range
    text = render(
        Kind.FINDING_OPENED,
        Severity.INFO,
        {"metric": "heart rate", "change": "different from", "since": "since Monday"},
    )
    assert text.startswith("Your heart rate has been different from your usual since Monday.")


def test_every_refusal_reason_has_plain_words_and_unknown_ones_read_as_other() -> None:
    templates = load_templates()
    assert set(templates.reasons) == REFUSAL_REASONS
    assert refusal_reason("range") == "the value is outside the range a reading can have"
    assert refusal_reason("something-new") == templates.reasons["other"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d["reasons"].pop("range"), "reasons needs words"),
        (lambda d: d["reasons"].__setitem__("other", " "), "reasons needs words"),
        (lambda d: d["phrases"].pop("different"), "phrases needs words"),
        (lambda d: d["reasons"].__setitem__("spelling", "typo"), "reasons needs words"),
        (lambda d: d["phrases"].pop("week_no_findings"), "phrases needs words"),
        (
            lambda d: d["phrases"].__setitem__("week_no_findings", "{patient} had no findings."),
            "phrase week_no_findings uses undeclared fields",
        ),
    ],
)
def test_reasons_and_phrases_must_be_complete(change: Any, match: str) -> None:
    doc = packaged()
    change(doc)
    with pytest.raises(ValueError, match=match):
        Templates.model_validate(doc)


def test_phrases_take_exactly_their_declared_fields() -> None:
    assert phrase("week_no_findings") == "No new findings this week."
    assert phrase("week_findings_resolved", {"count": 2}) == (
        "Back within your usual range this week: 2."
    )
    with pytest.raises(WordingError):
        phrase("week_findings_opened")
    with pytest.raises(WordingError):
        phrase("week_no_findings", {"count": 1})
    with pytest.raises(WordingError):
        phrase("unheard_of")
