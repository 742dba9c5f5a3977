"""Patient tokens in the enrollment (issue = rotation, revocation, withdrawal, the topic
record) and the book that finds whose a presented token is (pghd/patient_tokens.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from pghd import wire
from pghd.access import hash_token
from pghd.enrollment import (
    Action,
    Change,
    Enrollment,
    EnrollmentCommand,
    EnrollmentError,
    ErrorKind,
    apply,
    enroll,
    issue_token,
    read_record,
    revoke_tokens,
    withdraw,
)
from pghd.patient_tokens import TOKEN_PREFIX, PatientTokenBook, new_token

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
ONE, TWO = hash_token("token-one"), hash_token("token-two")


def change(action: Action, minutes: int = 0) -> Change:
    return Change(
        change_id=f"c{minutes}", action=action, at=T0 + timedelta(minutes=minutes), by="ops"
    )


def enrolled() -> Enrollment:
    return enroll(None, patient_id="p1", change=change(Action.ENROLL))


def test_issuing_again_rotates_the_token() -> None:
    first = issue_token(enrolled(), sha256=ONE, change=change(Action.ISSUE_TOKEN, 1))
    assert [(t.sha256, t.issued_at) for t in first.patient_tokens] == [
        (ONE, T0 + timedelta(minutes=1))
    ]
    assert first.revision == 2 and first.change.action is Action.ISSUE_TOKEN
    second = issue_token(first, sha256=TWO, change=change(Action.ISSUE_TOKEN, 2))
    assert [t.sha256 for t in second.patient_tokens] == [TWO], "the old token is gone"
    same = issue_token(second, sha256=TWO, change=change(Action.ISSUE_TOKEN, 3))
    assert same is second


def test_revoking_drops_the_tokens_and_none_held_is_not_found() -> None:
    held = issue_token(enrolled(), sha256=ONE, change=change(Action.ISSUE_TOKEN, 1))
    revoked = revoke_tokens(held, change=change(Action.REVOKE_TOKENS, 2))
    assert revoked.patient_tokens == [] and revoked.revision == 3
    with pytest.raises(EnrollmentError, match="holds no patient token") as refused:
        revoke_tokens(revoked, change=change(Action.REVOKE_TOKENS, 3))
    assert refused.value.kind is ErrorKind.NOT_FOUND


def test_a_withdrawn_patient_keeps_their_token_and_may_get_a_new_one() -> None:
    """Withdrawal stops storage, not the patient's sight of their own history."""
    held = issue_token(enrolled(), sha256=ONE, change=change(Action.ISSUE_TOKEN, 1))
    gone = withdraw(held, change=change(Action.WITHDRAW, 2))
    assert [t.sha256 for t in gone.patient_tokens] == [ONE]
    again = issue_token(gone, sha256=TWO, change=change(Action.ISSUE_TOKEN, 3))
    assert [t.sha256 for t in again.patient_tokens] == [TWO]


def test_apply_issues_and_revokes_and_a_never_enrolled_patient_gets_none() -> None:
    issue = EnrollmentCommand(action=Action.ISSUE_TOKEN, patient_id="p1", token_sha256=ONE)
    e = apply(enrolled(), issue, change=change(Action.ISSUE_TOKEN, 1))
    assert [t.sha256 for t in e.patient_tokens] == [ONE]
    revoke = EnrollmentCommand(action=Action.REVOKE_TOKENS, patient_id="p1")
    assert apply(e, revoke, change=change(Action.REVOKE_TOKENS, 2)).patient_tokens == []
    with pytest.raises(EnrollmentError) as unknown:
        apply(None, issue, change=change(Action.ISSUE_TOKEN, 3))
    assert unknown.value.kind is ErrorKind.NOT_FOUND


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "issue_token", "patient_id": "p1"},
        {"action": "issue_token", "patient_id": "p1", "token_sha256": "token-one"},
        {"action": "revoke_tokens", "patient_id": "p1", "token_sha256": ONE},
        {"action": "grant", "patient_id": "p1", "metric": "spo2", "token_sha256": ONE},
    ],
)
def test_a_token_command_carries_a_digest_and_only_issuing_does(fields: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        EnrollmentCommand.model_validate(fields)


def test_the_topic_record_carries_digests_only_and_omits_them_while_none() -> None:
    plain = enrolled()
    assert b"patient_tokens" not in plain.to_record()
    held = issue_token(plain, sha256=ONE, change=change(Action.ISSUE_TOKEN, 1))
    record = held.to_record()
    assert json.loads(record)["patient_tokens"] == [
        {"sha256": ONE, "issued_at": "2026-11-25T08:01:00Z"}
    ]
    assert b"token-one" not in record
    assert read_record(b"p1", record) == ("p1", held)
    # a record written before patient tokens existed still reads
    older = json.loads(plain.to_record())
    assert "patient_tokens" not in older
    assert wire.decode(Enrollment, json.dumps(older).encode()).patient_tokens == []


def test_new_tokens_are_prefixed_random_and_long() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) == len(TOKEN_PREFIX) + 43 for t in tokens)


def test_the_book_finds_the_patient_of_a_token_until_it_is_rotated_or_forgotten() -> None:
    book = PatientTokenBook()
    book.put("p1", [ONE])
    book.put("p2", [TWO])
    assert (book.patient_of("token-one"), book.patient_of("token-two")) == ("p1", "p2")
    assert book.patient_of(None) is None and book.patient_of("") is None
    assert book.patient_of(ONE) is None, "a digest is no token"
    book.put("p1", [hash_token("token-three")])  # rotated
    assert book.patient_of("token-one") is None
    assert book.patient_of("token-three") == "p1"
    book.put("p2", [])  # revoked
    assert book.patient_of("token-two") is None
    book.forget("p1")  # erased
    assert book.patient_of("token-three") is None and len(book) == 0
