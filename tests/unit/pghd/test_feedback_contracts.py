"""The feedback contracts patients' apps and the services share: the event a patient's app
is sent, the subscription on the topic (consent per kind, with its time), and the rule a
registered URL follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from pghd import wire
from pghd.contracts import Severity
from pghd.feedback.events import (
    FeedbackEvent,
    FindingDetails,
    RefusalDetails,
    WeeklyDetails,
    at_words,
    event_id,
)
from pghd.feedback.subscription import (
    FeedbackSubscription,
    address_problem,
    new_secret,
    read_record,
    subscribe,
    url_problem,
)
from pghd.feedback.wording import Kind

NOW = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)


def _event(kind: Kind, details: FindingDetails | RefusalDetails | WeeklyDetails) -> FeedbackEvent:
    return FeedbackEvent(
        id=event_id("x", kind.value),
        kind=kind,
        patient_id="p-1",
        occurred_at=NOW,
        severity=Severity.INFO,
        message="words",
        details=details,
    )


def test_an_event_carries_the_details_of_its_kind_only() -> None:
    finding = FindingDetails(finding_id="al-1", metric="heart_rate", opened_at=NOW)
    refusal = RefusalDetails(metric="spo2", source="acme", reason="range")
    assert _event(Kind.FINDING_OPENED, finding).details == finding
    assert _event(Kind.READING_REFUSED, refusal).details == refusal
    with pytest.raises(ValidationError, match="carry no FindingDetails"):
        _event(Kind.READING_REFUSED, finding)
    with pytest.raises(ValidationError, match="carry no RefusalDetails"):
        _event(Kind.FINDING_RESOLVED, refusal)


def test_an_event_round_trips_and_refuses_fields_it_does_not_declare() -> None:
    event = _event(
        Kind.FINDING_OPENED, FindingDetails(finding_id="al-1", metric="spo2", opened_at=NOW)
    )
    assert wire.decode(FeedbackEvent, wire.encode(event)) == event
    doc = event.model_dump(mode="json")
    doc["details"]["other_patient"] = "p-2"
    with pytest.raises(ValidationError):
        FeedbackEvent.model_validate(doc)


def test_event_ids_are_stable_and_differ_by_what_they_identify() -> None:
    assert event_id("al-1", "finding_opened") == event_id("al-1", "finding_opened")
    assert event_id("al-1", "finding_opened") != event_id("al-1", "finding_resolved")
    assert event_id("a", "b").startswith("fb-") and len(event_id("a")) == 27


def test_times_are_said_in_utc_words() -> None:
    assert at_words(NOW) == "14:05 UTC on 6 December 2026"
    same_instant = NOW.astimezone(timezone(timedelta(hours=2)))
    assert at_words(same_instant) == "14:05 UTC on 6 December 2026"


def test_consent_is_per_kind_and_from_the_time_it_was_given() -> None:
    first = subscribe(
        "p-1",
        url="https://app.example.org/hook",
        kinds=[Kind.FINDING_OPENED],
        now=NOW,
        secret=new_secret(),
    )
    assert first.consents(Kind.FINDING_OPENED, NOW)
    assert not first.consents(Kind.FINDING_OPENED, NOW - timedelta(seconds=1)), "no backlog"
    assert not first.consents(Kind.READING_REFUSED, NOW + timedelta(days=1))
    later = NOW + timedelta(days=2)
    second = subscribe(
        "p-1",
        url="https://app.example.org/hook",
        kinds=[Kind.READING_REFUSED, Kind.FINDING_OPENED],
        now=later,
        secret=new_secret(),
        previous=first.registration(),
    )
    assert second.kinds == {Kind.FINDING_OPENED: NOW, Kind.READING_REFUSED: later}
    assert second.created_at == NOW and second.updated_at == later
    third = subscribe(
        "p-1",
        url="https://x.example.org",
        kinds=[Kind.READING_REFUSED],
        now=later,
        secret=new_secret(),
        previous=second.registration(),
    )
    assert not third.consents(Kind.FINDING_OPENED, later), "withdrawn by leaving it out"


def test_the_secret_is_on_the_record_and_never_in_the_registration_or_repr() -> None:
    secret = new_secret()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert new_secret() != secret
    sub = subscribe(
        "p-1", url="https://a.example.org/h", kinds=[Kind.FINDING_OPENED], now=NOW, secret=secret
    )
    assert sub.key == secret.encode("ascii")
    assert secret not in repr(sub)
    assert "secret" not in sub.registration().model_dump()
    key, value = b"p-1", wire.encode(sub)
    assert read_record(key, value) == ("p-1", sub)
    assert read_record(key, None) == ("p-1", None)
    with pytest.raises(ValueError, match="keyed by another patient"):
        read_record(b"p-2", value)
    with pytest.raises(ValidationError):
        FeedbackSubscription.model_validate({**sub.model_dump(mode="json"), "secret": "short"})


@pytest.mark.parametrize(
    ("url", "loopback", "problem"),
    [
        ("https://app.example.org/pghd/hook", False, None),
        ("https://app.example.org:8443/hook?x=1", False, None),
        ("http://app.example.org/hook", False, "must be https"),
        ("http://app.example.org/hook", True, "must be https"),  # only the loopback is plain
        ("http://127.0.0.1:9000/hook", False, "local or development"),
        ("http://127.0.0.1:9000/hook", True, None),
        ("http://localhost:9000/hook", True, None),
        ("https://[::1]:9000/hook", True, None),
        ("https://10.1.2.3/hook", False, "not an address on the internet"),
        ("https://10.1.2.3/hook", True, "not an address on the internet"),
        ("https://169.254.169.254/latest/meta-data", False, "not an address on the internet"),
        ("https://192.168.0.4/hook", True, "not an address on the internet"),
        ("https://user:pw@app.example.org/hook", False, "user or password"),
        ("https://app.example.org/hook#top", False, "fragment"),
        ("ftp://app.example.org/hook", False, "https://host/path"),
        ("https:///hook", False, "https://host/path"),
        ("https://app.example.org:99999/hook", False, "not a URL"),
        ("https://app.example.org/" + "x" * 2048, False, "longer than"),
        # what the resolver refuses (the idna codec raised in the sender, retried forever)
        ("https://" + "a" * 64 + ".example.org/hook", False, "not a valid name"),
        ("https://" + "a" * 63 + ".example.org/hook", False, None),
        ("https://a..example.org/hook", False, "not a valid name"),
        ("https://" + "a." * 127 + "org/hook", False, "longer than 253"),
        ("https://app.example.org./hook", False, None),
        ("https://bücher.example/hook", False, None),
    ],
)
def test_urls_must_be_https_to_the_internet(url: str, loopback: bool, problem: str | None) -> None:
    found = url_problem(url, allow_loopback_http=loopback)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_the_addresses_a_name_resolves_to_are_checked_too() -> None:
    assert address_problem(["93.184.215.14"], allow_loopback=False) is None
    assert address_problem(["2606:2800:21f:cb07::1"], allow_loopback=False) is None
    assert "does not resolve" in (address_problem([], allow_loopback=True) or "")
    rebound = address_problem(["93.184.215.14", "10.0.0.7"], allow_loopback=False)
    assert rebound is not None and "10.0.0.7" in rebound
    assert address_problem(["127.0.0.1"], allow_loopback=True) is None
    assert address_problem(["127.0.0.1"], allow_loopback=False) is not None
    assert address_problem(["fe80::1%eth0"], allow_loopback=True) is not None


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a00:7", "64:ff9b::808:808", "64:ff9b:1::a00:7", "2002:a00:7::1", "2002:808:808::1"],
)
def test_addresses_a_translator_or_relay_carries_to_ipv4_are_refused(address: str) -> None:
    """NAT64 and 6to4 hand the IPv4 address inside to a gateway, which may well reach the
    worker's own network (64:ff9b::a00:7 is 10.0.0.7): refused, whatever is inside."""
    found = address_problem(["93.184.215.14", address], allow_loopback=True)
    assert found is not None and address in found
    literal = url_problem(f"https://[{address}]/hook", allow_loopback_http=False)
    assert literal is not None and "not an address on the internet" in literal
    assert address_problem(["2606:2800:21f:cb07::1"], allow_loopback=False) is None


def test_a_weekly_summary_carries_weekly_details_and_the_docs_example_reads() -> None:
    week = WeeklyDetails(week_start=NOW - timedelta(days=7), week_end=NOW, readings=3, days=1)
    assert _event(Kind.WEEKLY_SUMMARY, week).details == week
    with pytest.raises(ValidationError, match="carry no WeeklyDetails"):
        _event(Kind.DEVICE_SILENT, week)
    doc = (Path(__file__).resolve().parents[3] / "docs" / "patients.md").read_text()
    example = next(
        block for block in doc.split("```json")[1:] if '"kind": "weekly_summary"' in block
    ).split("```")[0]
    event = wire.decode(FeedbackEvent, example.encode())
    assert isinstance(event.details, WeeklyDetails) and event.details.readings == 412
