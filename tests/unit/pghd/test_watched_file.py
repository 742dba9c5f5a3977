"""A credentials file read again when it changes, the last good content kept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from pghd.watched_file import WatchedJson


class Doc(BaseModel):
    names: list[str]


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()  # a change within the clock's tick still reads as a change
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_changes_are_read_once_per_recheck_and_bad_versions_are_refused_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"names": ["a"]}')
    now = [0.0]
    seen: list[str] = []
    doc = WatchedJson(path, Doc, recheck_s=1.0, clock=lambda: now[0], on_reload=seen.append)
    assert doc.current().names == ["a"]
    _write(path, '{"names": ["a", "b"]}')
    assert doc.current().names == ["a"], "looked at again only after recheck_s"
    now[0] = 1.5
    assert doc.current().names == ["a", "b"]
    _write(path, '{"names": [')
    for step in (3.0, 4.5, 6.0):
        now[0] = step
        assert doc.current().names == ["a", "b"]
    assert seen == ["reloaded", "refused"], "a bad version is reported once"
    path.unlink()
    now[0] = 7.5
    assert doc.current().names == ["a", "b"], "a missing file keeps the last good content"
    _write(path, '{"names": ["c"]}')
    now[0] = 9.0
    assert doc.current().names == ["c"]


def test_a_bad_file_at_startup_raises(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"names": 3}')
    with pytest.raises(ValidationError):
        WatchedJson(path, Doc)
    with pytest.raises(FileNotFoundError):
        WatchedJson(tmp_path / "missing.json", Doc)


def test_an_edit_that_keeps_size_and_mtime_is_seen(tmp_path: Path) -> None:
    """Swapping one digest for another keeps the size; a copy may keep an old mtime."""
    path = tmp_path / "doc.json"
    path.write_text('{"names": ["aaaa"]}')
    stamp = path.stat()
    now = [0.0]
    doc = WatchedJson(path, Doc, recheck_s=1.0, clock=lambda: now[0])
    path.write_text('{"names": ["bbbb"]}')
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    now[0] = 2.0
    assert doc.current().names == ["bbbb"]
