"""``make bench`` writes its headline figures as JSON (``bench.__main__.write_summary``)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import SUMMARY_KEYS, write_summary


def test_the_summary_holds_the_measured_keys_in_order_and_the_table(tmp_path: Path) -> None:
    path = tmp_path / "bench" / "latest.json"
    summary = {"e2e_p99_ms": 270.0, "ingest_ratio": 0.55, "alerts_ratio": float("nan")}
    rows = ["ingest, batch endpoint  16,000.0 readings/s ..."]

    write_summary(path, summary, rows)

    written = json.loads(path.read_text())
    # Measured keys in the documented order; a ratio with no baseline is left out, not NaN
    # (which is not JSON); keys the run did not measure are absent, never made up.
    assert list(written) == ["ingest_ratio", "e2e_p99_ms", "table"]
    assert written["ingest_ratio"] == 0.55
    assert written["table"] == rows
    assert set(SUMMARY_KEYS) >= {"processors_ratio", "peer_quix_per_s", "e2e_offered_per_s"}
