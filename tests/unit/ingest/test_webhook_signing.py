"""Webhook signature schemes and the replay guard (pure, no app)."""

from __future__ import annotations

import pytest

from ingest.webhooks.signing import (
    BadSignature,
    ReplayGuard,
    StaleSignature,
    sign,
    signature_header,
    svix_headers,
    svix_key,
    verify_svix,
    verify_timestamped,
)

SECRET = b"secret-one-0123456789"
OTHER = b"secret-two-0123456789"
BODY = b'{"metric":"heart_rate","value":72}'
NOW = 1_764_000_000


def header(*secrets: bytes, at: int = NOW, body: bytes = BODY) -> str:
    return signature_header(list(secrets), timestamp=at, body=body)


def test_good_signature_is_verified_and_returns_the_matching_signature() -> None:
    verified = verify_timestamped(header(SECRET), BODY, secrets=[SECRET], now=NOW + 3)
    assert verified.timestamp == NOW
    assert verified.signature == sign(SECRET, timestamp=NOW, body=BODY)
    assert verified.expires_at(300) == NOW + 300


def test_signature_is_hmac_sha256_hex_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, timestamp=NOW, body=BODY) == expected
    assert header(SECRET) == f"t={NOW},v1={expected}"


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(BadSignature, match="does not match the body"):
        verify_timestamped(header(OTHER), BODY, secrets=[SECRET], now=NOW)


def test_altered_body_is_refused() -> None:
    with pytest.raises(BadSignature):
        verify_timestamped(header(SECRET), BODY + b" ", secrets=[SECRET], now=NOW)


def test_stale_timestamp_is_refused_saying_by_how_much() -> None:
    with pytest.raises(StaleSignature) as caught:
        verify_timestamped(header(SECRET), BODY, secrets=[SECRET], now=NOW + 420, tolerance_s=300)
    assert "stale" in caught.value.detail
    assert "420 s old" in caught.value.detail
    assert "120 s beyond the 300 s tolerance" in caught.value.detail
    assert caught.value.status == 401
    assert caught.value.skew_s == 420


def test_timestamp_at_the_edge_of_the_window_is_accepted() -> None:
    verify_timestamped(header(SECRET), BODY, secrets=[SECRET], now=NOW + 300, tolerance_s=300)


def test_future_timestamp_beyond_tolerance_is_refused() -> None:
    with pytest.raises(StaleSignature, match="1000 s in the future"):
        verify_timestamped(
            header(SECRET, at=NOW + 1000), BODY, secrets=[SECRET], now=NOW, tolerance_s=300
        )


def test_forged_stale_request_is_called_bad_not_stale() -> None:
    with pytest.raises(BadSignature):
        verify_timestamped(header(OTHER), BODY, secrets=[SECRET], now=NOW + 10_000)


def test_rotation_sender_signs_with_old_and_new_secret() -> None:
    both = header(OTHER, SECRET)
    assert both.count("v1=") == 2
    verified = verify_timestamped(both, BODY, secrets=[SECRET], now=NOW)
    assert verified.signature == sign(SECRET, timestamp=NOW, body=BODY)


def test_rotation_receiver_accepts_any_configured_secret() -> None:
    verify_timestamped(header(OTHER), BODY, secrets=[SECRET, OTHER], now=NOW)


def test_other_schemes_are_ignored() -> None:
    value = f"t={NOW},v0=deadbeef,v1={sign(SECRET, timestamp=NOW, body=BODY)}"
    verify_timestamped(value, BODY, secrets=[SECRET], now=NOW)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "missing X-Pghd-Signature header"),
        ("", "missing X-Pghd-Signature header"),
        ("garbage", "is not key=value"),
        ("v1=abc", "one integer t= is needed"),
        ("t=soon,v1=abc", "one integer t= is needed"),
        (f"t={NOW},t={NOW},v1=abc", "one integer t= is needed"),
        (f"t={NOW}", "no v1= signature"),
        (f"t={NOW},v1=\u00e9\u00e9", "does not match"),
    ],
)
def test_malformed_header_is_refused_with_a_reason(value: str | None, message: str) -> None:
    with pytest.raises(BadSignature, match=message):
        verify_timestamped(value, BODY, secrets=[SECRET], now=NOW)


def test_header_name_appears_in_messages() -> None:
    with pytest.raises(BadSignature, match="missing terra-signature header"):
        verify_timestamped(None, BODY, secrets=[SECRET], now=NOW, name="terra-signature")


# Svix (Junction) ------------------------------------------------------------------------

# The example from Svix's documentation ("Verifying Webhooks Manually" / library examples).
SVIX_DOC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_DOC = {
    "msg_id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": "1614265330",
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}
SVIX_DOC_BODY = b'{"test": 2432232314}'


def test_svix_documented_example_verifies() -> None:
    key = svix_key(SVIX_DOC_SECRET)
    verified = verify_svix(**SVIX_DOC, body=SVIX_DOC_BODY, keys=[key], now=1614265330)
    assert verified.signature == "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_svix_wrong_secret_and_altered_body_are_refused() -> None:
    other = svix_key("whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    with pytest.raises(BadSignature, match="svix-signature does not match"):
        verify_svix(**SVIX_DOC, body=SVIX_DOC_BODY, keys=[other], now=1614265330)
    with pytest.raises(BadSignature):
        verify_svix(
            **SVIX_DOC, body=SVIX_DOC_BODY + b" ", keys=[svix_key(SVIX_DOC_SECRET)], now=1614265330
        )


def test_svix_stale_and_rotation() -> None:
    old, new = svix_key(SVIX_DOC_SECRET), svix_key("whsec_" + "QUJDREVGR0hJSktMTU5PUA==")
    headers = svix_headers([old, new], msg_id="msg_2", timestamp=NOW, body=BODY)
    assert len(headers["svix-signature"].split()) == 2
    kwargs = {
        "msg_id": headers["svix-id"],
        "timestamp": headers["svix-timestamp"],
        "signature": headers["svix-signature"],
        "body": BODY,
    }
    verify_svix(**kwargs, keys=[new], now=NOW)
    with pytest.raises(StaleSignature, match="svix-timestamp timestamp is 301 s old"):
        verify_svix(**kwargs, keys=[new], now=NOW + 301, tolerance_s=300)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("msg_id", "missing svix-id"),
        ("timestamp", "missing svix-timestamp"),
        ("signature", "missing svix-signature"),
    ],
)
def test_svix_missing_headers(missing: str, message: str) -> None:
    args: dict[str, str | None] = {**SVIX_DOC, missing: None}
    with pytest.raises(BadSignature, match=message):
        verify_svix(**args, body=SVIX_DOC_BODY, keys=[svix_key(SVIX_DOC_SECRET)], now=0)


def test_svix_malformed_headers() -> None:
    key = svix_key(SVIX_DOC_SECRET)
    with pytest.raises(BadSignature, match="not unix seconds"):
        verify_svix(**{**SVIX_DOC, "timestamp": "later"}, body=SVIX_DOC_BODY, keys=[key], now=0)
    with pytest.raises(BadSignature, match="no 'v1,<base64>' entry"):
        verify_svix(**{**SVIX_DOC, "signature": "v2,abc"}, body=SVIX_DOC_BODY, keys=[key], now=0)


def test_svix_secret_must_be_base64() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        svix_key("whsec_not base64!")


# Replay guard ---------------------------------------------------------------------------


def test_replay_guard_refuses_a_signature_seen_within_the_window() -> None:
    guard = ReplayGuard()
    assert guard.reserve("acme:abc", expires_at=NOW + 300, now=NOW)
    assert not guard.reserve("acme:abc", expires_at=NOW + 300, now=NOW + 299)
    assert guard.reserve("acme:def", expires_at=NOW + 300, now=NOW + 1)


def test_replay_guard_forgets_once_the_signature_is_stale() -> None:
    guard = ReplayGuard()
    guard.reserve("k", expires_at=NOW + 300, now=NOW)
    assert guard.reserve("other", expires_at=NOW + 700, now=NOW + 301)
    assert len(guard) == 1  # "k" expired and was dropped


def test_replay_guard_release_lets_a_retry_through() -> None:
    guard = ReplayGuard()
    guard.reserve("k", expires_at=NOW + 300, now=NOW)
    guard.release("k")
    assert guard.reserve("k", expires_at=NOW + 300, now=NOW + 5)


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(capacity=3)
    for i in range(10):
        assert guard.reserve(f"k{i}", expires_at=NOW + 300 + i, now=NOW)
    assert len(guard) == 3
    assert guard.evicted == 7
    # the earliest-expiring ones were forgotten, the latest kept
    assert not guard.reserve("k9", expires_at=NOW + 309, now=NOW)
    assert guard.reserve("k0", expires_at=NOW + 300, now=NOW)
