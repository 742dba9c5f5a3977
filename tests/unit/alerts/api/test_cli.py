"""``pghd alerts``: registered on the ``pghd`` command line; durations parsed."""

from __future__ import annotations

from datetime import timedelta

import pytest
import typer
from typer.testing import CliRunner

from pghd.cli import app
from pghd.commands.alerts import parse_duration


def test_registered_with_every_action() -> None:
    result = CliRunner().invoke(app, ["alerts", "--help"])
    assert result.exit_code == 0
    for action in ("list", "show", "ack", "resolve", "silence", "unsilence"):
        assert action in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("1.5d", timedelta(hours=36))],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_bad_duration() -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration("soon")


def test_unreachable_api_exits_1() -> None:
    result = CliRunner().invoke(
        app, ["alerts", "list", "--url", "http://127.0.0.1:1", "--token", "t"]
    )
    assert result.exit_code == 1
    assert "cannot reach" in result.output


def test_audit_is_registered_and_needs_the_api() -> None:
    assert "--patient" in CliRunner().invoke(app, ["audit", "--help"]).output
    result = CliRunner().invoke(app, ["audit", "--url", "http://127.0.0.1:1", "--token", "t"])
    assert result.exit_code == 1 and "cannot reach" in result.output
