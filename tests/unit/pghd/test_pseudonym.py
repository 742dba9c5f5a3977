"""Patient ids in logs: a keyed hash, the same across services that share the key."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pghd.cli import app
from pghd.pseudonym import pseudonym


def test_the_same_key_gives_the_same_pseudonym_and_another_key_another() -> None:
    one = pseudonym("patient-001", key=b"k1")
    assert one == pseudonym("patient-001", key=b"k1")
    assert one.startswith("pt-") and len(one) == 15 and "patient" not in one
    assert one != pseudonym("patient-002", key=b"k1")
    assert one != pseudonym("patient-001", key=b"k2")


def test_pghd_dev_pseudonym_finds_a_patients_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHD_LOG_PSEUDONYM_KEY", "ops-key")
    result = CliRunner().invoke(app, ["dev", "pseudonym", "patient-001"])
    assert result.exit_code == 0
    assert result.output.strip() == f"patient-001\t{pseudonym('patient-001', key=b'ops-key')}"
    monkeypatch.delenv("PGHD_LOG_PSEUDONYM_KEY")
    assert CliRunner().invoke(app, ["dev", "pseudonym", "p"]).exit_code == 1
