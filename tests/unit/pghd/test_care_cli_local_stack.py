"""``pghd alerts``, ``pghd care-plan`` and ``pghd audit`` find the local stack's care-team API.

After ``make run`` no option or variable is needed: given no ``--url``, the commands read
``.local/run/stack.json`` for a running ``care-api`` service and take its port, and, for that
API only, the local admin's token from ``.local/run/care-token``. A temporary repository root
(``PGHD_ROOT``) holds such a state file, naming this test process as the service (so it is
"alive") and a small HTTP server standing in for the API, which records what it was asked.
Explicit options win; a token of the local stack never goes to another URL; without any
token the commands say how to give one. Also: ``pghd run``'s users file and token files.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy.local.process import process_start_time
from deploy.local.stack import ROOT_ENV, ProcessRecord, StackPaths, StackState
from pghd.access import Role, UserEntry, UsersFile, hash_token
from pghd.cli import app
from pghd.commands.alerts import NO_TOKEN, local_care_api
from pghd.commands.run import CARE_USER, _api_key, care_users_file

LOCAL_TOKEN = "local-care-token-from-make-run"

ALERT = {
    "alert_id": "al-1",
    "patient_id": "sim-0001",
    "problem": "heart_rate",
    "severity": "critical",
    "status": "open",
    "updated_at": "2026-12-06T09:00:00Z",
    "summary": "Heart rate 137 /min",
}
ANSWERS: dict[tuple[str, str], Any] = {
    ("GET", "/v1/alerts"): {"items": [ALERT], "ready": True},
    ("POST", "/v1/alerts/al-1/acknowledge"): {
        "kind": "acknowledge",
        "alert_id": "al-1",
        "command_id": "c-1",
    },
    ("POST", "/v1/silences"): {"kind": "silence", "silence_id": "s-1", "command_id": "c-2"},
    ("GET", "/v1/patients/sim-0001/care-plan"): {
        "patient_id": "sim-0001",
        "spo2_scale": 2,
        "updated_by": CARE_USER,
        "updated_at": "2026-12-06T09:00:00Z",
    },
    ("GET", "/v1/audit"): [],
}


class FakeCareApi:
    """An HTTP server answering the few routes the commands ask; records each request's
    method, path (without the query) and Authorization header."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                requests.append((self.command, path, self.headers.get("Authorization")))
                answer = ANSWERS.get((self.command, path))
                body = json.dumps(answer if answer is not None else {"detail": "?"}).encode()
                self.send_response(404 if answer is None else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeCareApi]:
    server = FakeCareApi()
    yield server
    server.close()


@pytest.fixture
def other_api() -> Iterator[FakeCareApi]:
    server = FakeCareApi()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_care_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the developer's shell: no URL, no token, no other root."""
    for name in ("PGHD_CARE_API_URL", "PGHD_CARE_TOKEN", ROOT_ENV):
        monkeypatch.delenv(name, raising=False)


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'scratch'\n")
    return root


def _record(name: str, port: int, *, pid: int | None = None) -> ProcessRecord:
    pid = os.getpid() if pid is None else pid
    return ProcessRecord(
        name=name,
        kind="service",
        pid=pid,
        start_time=process_start_time(pid),
        argv=["python", "-m", "alerts.api.main"],
        log="care-api.log",
        ports={"http": port},
        health=f"http://127.0.0.1:{port}/readyz",
    )


def _write_stack(root: Path, *records: ProcessRecord, token: str | None = LOCAL_TOKEN) -> None:
    paths = StackPaths.for_root(root)
    paths.run.mkdir(parents=True, exist_ok=True)
    state = StackState(root=str(root), processes={r.name: r for r in records})
    paths.state_file.write_text(state.to_json())
    if token is not None:
        (paths.run / "care-token").write_text(token + "\n")


@pytest.fixture
def stack_root(tmp_path: Path, api: FakeCareApi, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository root whose local stack runs the care-team API (the fake one)."""
    root = _root(tmp_path)
    _write_stack(root, _record("care-api", api.port))
    monkeypatch.setenv(ROOT_ENV, str(root))
    return root


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "request_line"),
    [
        (["alerts", "list"], ("GET", "/v1/alerts")),
        (["alerts", "ack", "al-1"], ("POST", "/v1/alerts/al-1/acknowledge")),
        (["alerts", "silence", "sim-0001", "--for", "30m"], ("POST", "/v1/silences")),
        (["care-plan", "show", "sim-0001"], ("GET", "/v1/patients/sim-0001/care-plan")),
        (["audit"], ("GET", "/v1/audit")),
    ],
)
def test_with_no_option_the_commands_use_the_local_stacks_api_and_token(
    stack_root: Path, api: FakeCareApi, args: list[str], request_line: tuple[str, str]
) -> None:
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert api.requests == [(*request_line, f"Bearer {LOCAL_TOKEN}")]


def test_the_list_shows_what_the_local_api_answered(stack_root: Path) -> None:
    result = _invoke("alerts", "list")
    assert result.exit_code == 0, result.output
    assert "al-1" in result.output and "sim-0001" in result.output


def test_care_plan_set_reads_and_writes_through_the_local_api(
    stack_root: Path, api: FakeCareApi
) -> None:
    _invoke("care-plan", "set", "sim-0001", "--spo2-scale", "2")
    assert [r[:2] for r in api.requests] == [
        ("GET", "/v1/patients/sim-0001/care-plan"),
        ("PUT", "/v1/patients/sim-0001/care-plan"),
    ]
    assert {r[2] for r in api.requests} == {f"Bearer {LOCAL_TOKEN}"}


def test_explicit_options_and_variables_win(
    stack_root: Path,
    api: FakeCareApi,
    other_api: FakeCareApi,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = _invoke("alerts", "list", "--url", other_api.url, "--token", "mine")
    assert result.exit_code == 0, result.output
    result = _invoke("alerts", "list", "--token", "mine-too")  # the local URL, my token
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("PGHD_CARE_API_URL", other_api.url)
    monkeypatch.setenv("PGHD_CARE_TOKEN", "from-env")
    result = _invoke("alerts", "ack", "al-1")
    assert result.exit_code == 0, result.output
    assert other_api.requests == [
        ("GET", "/v1/alerts", "Bearer mine"),
        ("POST", "/v1/alerts/al-1/acknowledge", "Bearer from-env"),
    ]
    assert api.requests == [("GET", "/v1/alerts", "Bearer mine-too")]


def test_the_local_token_never_goes_to_another_url(
    stack_root: Path, api: FakeCareApi, other_api: FakeCareApi
) -> None:
    result = _invoke("alerts", "list", "--url", other_api.url)
    assert result.exit_code == 2
    assert NO_TOKEN in result.output
    assert other_api.requests == [] and api.requests == []


def test_no_stack_and_no_token_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ROOT_ENV, str(_root(tmp_path)))  # no .local/run/stack.json
    for args in (["alerts", "list"], ["care-plan", "show", "p-1"], ["audit"]):
        result = _invoke(*args)
        assert result.exit_code == 2, args
        assert "no token: pass --token, set PGHD_CARE_TOKEN, or start the local stack" in (
            result.output
        )


def test_a_stopped_or_absent_care_api_is_not_the_local_stack(
    tmp_path: Path, api: FakeCareApi
) -> None:
    root = _root(tmp_path)
    assert local_care_api(root) is None  # no state file
    dead = _record("care-api", api.port)
    dead.start_time = (dead.start_time or 0) + 1  # the pid was recycled: not our process
    _write_stack(root, dead)
    assert local_care_api(root) is None
    _write_stack(root, _record("ingest", api.port))  # a stack without the care-team API
    assert local_care_api(root) is None
    _write_stack(root, _record("care-api", api.port))
    assert local_care_api(root) == (api.url, root / ".local" / "run" / "care-token")
    for broken in ("{not json", "[]", '{"processes": {"care-api": {"pid": 1}}}'):
        StackPaths.for_root(root).state_file.write_text(broken)
        assert local_care_api(root) is None, broken
    assert local_care_api(tmp_path / "nowhere") is None  # not a repository


def test_a_missing_token_file_is_no_token(
    tmp_path: Path, api: FakeCareApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _root(tmp_path)
    _write_stack(root, _record("care-api", api.port), token=None)
    monkeypatch.setenv(ROOT_ENV, str(root))
    result = _invoke("alerts", "list")
    assert result.exit_code == 2 and NO_TOKEN in result.output
    assert api.requests == []


def _help(*args: str) -> str:
    """The help text of a command, with rich's box and line breaks taken out."""
    return " ".join(_invoke(*args, "--help").output.replace("│", " ").split())


def test_help_says_where_url_and_token_come_from() -> None:
    for args in (["alerts", "list"], ["alerts", "ack"], ["care-plan", "set"], ["audit"]):
        text = _help(*args)
        assert "the local stack's when `make run` runs it" in text, args
        assert ".local/run/care-token" in text, args
    for group in ("alerts", "care-plan"):
        assert "the local stack's API and its admin token" in _help(group), group


def test_the_users_file_is_made_once_with_a_local_admin(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    token = _api_key(run_dir, "care-token")
    assert _api_key(run_dir, "care-token") == token  # made once
    assert stat.S_IMODE((run_dir / "care-token").stat().st_mode) == 0o600
    path = care_users_file(run_dir, token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = UsersFile.model_validate_json(path.read_text()).users
    assert users == {CARE_USER: UserEntry(role=Role.ADMIN, token_sha256=[hash_token(token)])}
    # Kept as it is once made (a developer may add users to it) ...
    edited = UsersFile(
        users={
            **users,
            "nurse": UserEntry(role=Role.CLINICIAN, teams=["ward-a"], token_sha256=["a" * 64]),
        }
    )
    path.write_text(edited.model_dump_json())
    assert care_users_file(run_dir, token) == path
    assert UsersFile.model_validate_json(path.read_text()) == edited
    # ... and when the token was made anew, the local admin holds the new one, others stay.
    care_users_file(run_dir, "a-new-token")
    again = UsersFile.model_validate_json(path.read_text()).users
    assert again[CARE_USER].token_sha256 == [hash_token("a-new-token")]
    assert again["nurse"] == edited.users["nurse"]


def test_a_broken_users_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "care-users.json").write_text("{")
    with pytest.raises(ValueError, match=r"care-users\.json is not a users file"):
        care_users_file(tmp_path, "t")
