"""Enrollment and consent transitions and the refusal messages (pghd/enrollment.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pghd import wire
from pghd.catalogue import Metric
from pghd.enrollment import (
    Action,
    Change,
    Consent,
    Enrollment,
    EnrollmentCommand,
    EnrollmentError,
    EnrollmentStatus,
    ErrorKind,
    apply,
    assign,
    enroll,
    grant,
    link,
    refusal,
    revoke,
    source_refusal,
    unlink,
    withdraw,
)

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def change(action: Action, minutes: int = 0) -> Change:
    return Change(
        change_id=f"c{minutes}", action=action, at=T0 + timedelta(minutes=minutes), by="ops"
    )


def enrolled() -> Enrollment:
    return enroll(None, patient_id="p1", change=change(Action.ENROLL))


def test_enroll_starts_with_no_link_and_no_consent() -> None:
    e = enrolled()
    assert (e.patient_id, e.status, e.enrolled_at, e.revision) == ("p1", "enrolled", T0, 1)
    assert e.links == [] and e.consents == {} and e.change.action is Action.ENROLL
    assert refusal(e, patient_id="p1", metric=Metric.HEART_RATE) == (
        "patient p1 has not consented to heart_rate"
    )


def test_enroll_twice_is_a_conflict() -> None:
    with pytest.raises(EnrollmentError, match="patient p1 is already enrolled") as exc:
        enroll(enrolled(), patient_id="p1", change=change(Action.ENROLL, 1))
    assert exc.value.kind is ErrorKind.CONFLICT


def test_unknown_patient_is_refused_as_not_enrolled() -> None:
    assert refusal(None, patient_id="p9", metric=Metric.SPO2) == "patient p9 is not enrolled"


def test_grant_then_readings_may_be_stored() -> None:
    e = grant(enrolled(), metric=Metric.BLOOD_GLUCOSE, change=change(Action.GRANT, 1))
    assert e.revision == 2
    assert e.consents[Metric.BLOOD_GLUCOSE] == Consent(granted_at=T0 + timedelta(minutes=1))
    assert refusal(e, patient_id="p1", metric=Metric.BLOOD_GLUCOSE) is None
    assert refusal(e, patient_id="p1", metric=Metric.SPO2) == "patient p1 has not consented to spo2"


def test_grant_held_consent_changes_nothing() -> None:
    e = grant(enrolled(), metric=Metric.SPO2, change=change(Action.GRANT, 1))
    assert grant(e, metric=Metric.SPO2, change=change(Action.GRANT, 2)) is e


def test_revoke_names_when_and_regrant_restores() -> None:
    e = grant(enrolled(), metric=Metric.SPO2, change=change(Action.GRANT, 1))
    r = revoke(e, metric=Metric.SPO2, change=change(Action.REVOKE, 90))
    assert r.revision == 3 and r.consents[Metric.SPO2].revoked_at == T0 + timedelta(minutes=90)
    assert refusal(r, patient_id="p1", metric=Metric.SPO2) == (
        "patient p1 revoked consent to spo2 at 2026-11-25T09:30:00Z"
    )
    assert revoke(r, metric=Metric.SPO2, change=change(Action.REVOKE, 91)) is r
    again = grant(r, metric=Metric.SPO2, change=change(Action.GRANT, 120))
    assert again.consents[Metric.SPO2].active
    assert refusal(again, patient_id="p1", metric=Metric.SPO2) is None


def test_revoke_without_consent_is_not_found() -> None:
    with pytest.raises(EnrollmentError, match="patient p1 has not consented to steps") as exc:
        revoke(enrolled(), metric=Metric.STEPS, change=change(Action.REVOKE, 1))
    assert exc.value.kind is ErrorKind.NOT_FOUND


def test_link_unlink_and_conflicts() -> None:
    e = link(enrolled(), source="acme", account="watch-1", change=change(Action.LINK, 1))
    assert [(k.source, k.account) for k in e.links] == [("acme", "watch-1")]
    assert e.has_link("acme", "watch-1") and not e.has_link("other", "watch-1")
    same = link(e, source="acme", account="watch-1", change=change(Action.LINK, 2), held_by="p1")
    assert same is e
    with pytest.raises(EnrollmentError, match="already linked to another patient") as exc:
        link(e, source="acme", account="watch-2", change=change(Action.LINK, 3), held_by="p2")
    assert exc.value.kind is ErrorKind.CONFLICT
    gone = unlink(e, source="acme", account="watch-1", change=change(Action.UNLINK, 4))
    assert gone.links == [] and gone.revision == 3
    with pytest.raises(EnrollmentError, match="patient p1 has no link to acme account 'watch-1'"):
        unlink(gone, source="acme", account="watch-1", change=change(Action.UNLINK, 5))


def test_withdraw_revokes_everything_drops_links_and_allows_reenrolment() -> None:
    e = grant(enrolled(), metric=Metric.SPO2, change=change(Action.GRANT, 1))
    e = link(e, source="acme", account="w", change=change(Action.LINK, 2))
    w = withdraw(e, change=change(Action.WITHDRAW, 60))
    assert w.status is EnrollmentStatus.WITHDRAWN and w.withdrawn_at == T0 + timedelta(hours=1)
    assert w.links == [] and w.consents[Metric.SPO2].revoked_at == T0 + timedelta(hours=1)
    assert refusal(w, patient_id="p1", metric=Metric.SPO2) == (
        "patient p1 is not enrolled (withdrew at 2026-11-25T09:00:00Z)"
    )
    assert withdraw(w, change=change(Action.WITHDRAW, 61)) is w
    with pytest.raises(EnrollmentError, match="not enrolled") as exc:
        grant(w, metric=Metric.SPO2, change=change(Action.GRANT, 62))
    assert exc.value.kind is ErrorKind.CONFLICT
    with pytest.raises(EnrollmentError, match="not enrolled"):
        link(w, source="acme", account="w", change=change(Action.LINK, 62))
    back = enroll(w, patient_id="p1", change=change(Action.ENROLL, 120))
    assert back.status is EnrollmentStatus.ENROLLED and back.withdrawn_at is None
    assert back.revision == w.revision + 1
    assert refusal(back, patient_id="p1", metric=Metric.SPO2) == (
        "patient p1 revoked consent to spo2 at 2026-11-25T09:00:00Z"
    )


def test_apply_dispatches_commands() -> None:
    e = apply(
        None, EnrollmentCommand(action=Action.ENROLL, patient_id="p1"), change=change(Action.ENROLL)
    )
    cmd = EnrollmentCommand(action=Action.GRANT, patient_id="p1", metric=Metric.WEIGHT)
    e = apply(e, cmd, change=change(Action.GRANT, 1))
    cmd = EnrollmentCommand(action=Action.LINK, patient_id="p1", source="acme", account="a")
    e = apply(e, cmd, change=change(Action.LINK, 2))
    with pytest.raises(EnrollmentError, match="already linked"):
        apply(
            e, cmd.model_copy(update={"account": "b"}), change=change(Action.LINK, 3), held_by="p2"
        )
    cmd = EnrollmentCommand(action=Action.UNLINK, patient_id="p1", source="acme", account="a")
    e = apply(e, cmd, change=change(Action.UNLINK, 4))
    cmd = EnrollmentCommand(action=Action.REVOKE, patient_id="p1", metric=Metric.WEIGHT)
    e = apply(e, cmd, change=change(Action.REVOKE, 5))
    e = apply(
        e,
        EnrollmentCommand(action=Action.WITHDRAW, patient_id="p1"),
        change=change(Action.WITHDRAW, 6),
    )
    assert e.revision == 6 and e.status is EnrollmentStatus.WITHDRAWN and e.links == []
    with pytest.raises(EnrollmentError, match="patient p2 is not enrolled") as exc:
        apply(
            None,
            EnrollmentCommand(action=Action.GRANT, patient_id="p2", metric=Metric.SPO2),
            change=change(Action.GRANT),
        )
    assert exc.value.kind is ErrorKind.NOT_FOUND
    with pytest.raises(ValueError, match="another patient"):
        apply(
            e,
            EnrollmentCommand(action=Action.WITHDRAW, patient_id="p2"),
            change=change(Action.WITHDRAW),
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "grant", "patient_id": "p1"},
        {"action": "link", "patient_id": "p1", "source": "acme"},
        {"action": "enroll", "patient_id": "p1", "metric": "spo2"},
        {"action": "link", "patient_id": "p1", "source": "acme", "account": "a/b"},
        {"action": "enroll", "patient_id": "bad id"},
        {"action": "assign", "patient_id": "p1"},
        {"action": "unassign", "patient_id": "p1"},
        {"action": "grant", "patient_id": "p1", "metric": "spo2", "team": "cardiology"},
        {"action": "enroll", "patient_id": "p1", "team": "cardiology"},
        {"action": "assign", "patient_id": "p1", "team": "no spaces"},
    ],
)
def test_malformed_commands_are_refused(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        EnrollmentCommand.model_validate(fields)


def test_wire_round_trip_keeps_everything() -> None:
    e = grant(enrolled(), metric=Metric.SPO2, change=change(Action.GRANT, 1))
    e = revoke(e, metric=Metric.SPO2, change=change(Action.REVOKE, 2))
    e = link(e, source="acme", account="watch 7", change=change(Action.LINK, 3))
    payload = wire.encode(e)
    assert b'"schema_version":1' in payload
    assert wire.decode(Enrollment, payload) == e


def test_a_source_writes_only_for_patients_one_of_its_accounts_is_linked_to() -> None:
    e = link(enrolled(), source="terra", account="u-1", change=change(Action.LINK, 1))
    assert source_refusal(e, patient_id="p1", source="terra") is None
    refused = "patient p1 is not enrolled with source acme"
    assert source_refusal(e, patient_id="p1", source="acme") == refused
    e = link(e, source="acme", account="watch-2", change=change(Action.LINK, 2))
    assert source_refusal(e, patient_id="p1", source="acme") is None
    e = unlink(e, source="acme", account="watch-2", change=change(Action.UNLINK, 3))
    assert source_refusal(e, patient_id="p1", source="acme") == refused
    # not enrolled, withdrawn, or not linked: one answer, so a source learns nothing of
    # patients who are not its own
    assert source_refusal(None, patient_id="p9", source="acme") == (
        "patient p9 is not enrolled with source acme"
    )
    gone = withdraw(e, change=change(Action.WITHDRAW, 4))
    assert source_refusal(gone, patient_id="p1", source="terra") == (
        "patient p1 is not enrolled with source terra"
    )


def test_the_topic_record_leaves_teams_out_while_there_are_none() -> None:
    """Instances older than team assignment refuse unknown fields: a patient in no team
    must still reach them."""
    plain = enrolled()
    assert b'"teams"' not in plain.to_record()
    assert wire.decode(Enrollment, plain.to_record()) == plain
    doc = json.loads(plain.to_record())
    doc.pop("teams", None)
    assert set(doc) <= set(Enrollment.model_fields) - {"teams"}


def test_the_topic_record_of_a_patient_in_a_team_carries_the_teams() -> None:

    e = assign(enrolled(), team="ward-a", change=change(Action.ASSIGN, 1))
    assert json.loads(e.to_record())["teams"] == ["ward-a"]
    assert wire.decode(Enrollment, e.to_record()) == e
