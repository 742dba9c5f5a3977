"""Process helpers shared by the local runners: ports, readiness, detached start, stop.

Processes are started in their own session (so their process group id equals their pid
and a whole tree can be signalled at once), with stdin closed and stdout/stderr appended
to a log file. A process is identified by its pid *and* its start time (field 22 of
``/proc/<pid>/stat``) so that a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "LOOPBACK",
    "ToolMissingError",
    "file_lock",
    "find_processes",
    "free_port",
    "http_ok",
    "log_tail",
    "pick_port",
    "pid_alive",
    "pid_matches",
    "port_is_free",
    "process_start_time",
    "require_tool",
    "signal_group",
    "start_detached",
    "stop_process",
    "wait_for_http",
    "wait_for_port",
    "wait_until",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class ToolMissingError(RuntimeError):
    """A program the local stack needs (java, mvn, go) is not on PATH."""


def require_tool(name: str, hint: str) -> str:
    """Return the path of ``name`` on PATH or raise ToolMissingError saying how to get it."""
    found = shutil.which(name)
    if found is None:
        raise ToolMissingError(f"`{name}` was not found on PATH. {hint}")
    return found


# Ports for our servers come from below Linux's ephemeral range (32768-60999 by default):
# a port in that range can be taken as the local end of some outgoing connection while
# its server is stopped, and a test that restarts Kafka on the same port then fails.
_SERVER_PORTS = range(20000, 32768)


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that is free on ``host`` right now, outside the ephemeral range."""
    for _ in range(200):
        port = random.choice(_SERVER_PORTS)
        if port_is_free(port, host) and not _port_open(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None, host: str = LOOPBACK, *, avoid: Sequence[int] = ()) -> int:
    """Return ``preferred`` if it is free (and not in ``avoid``), else any free port."""
    if preferred and preferred not in avoid and port_is_free(preferred, host):
        return preferred
    while True:
        port = free_port(host)
        if port not in avoid:
            return port


def _port_open(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; it only waits to be reaped
        return None
    return int(fields[19])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (zombies count as exited)."""
    _reap(pid)
    return process_start_time(pid) is not None


def pid_matches(pid: int, start_time: int | None) -> bool:
    """True when ``pid`` runs and is the same process that had ``start_time``."""
    current = process_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def find_processes(*, cmdline: str | None = None, env: str | None = None) -> list[int]:
    """Pids (not this one) whose command line contains ``cmdline`` or whose environment
    holds the variable ``env`` (given as ``NAME=value``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            hit = cmdline is not None and cmdline.encode() in (
                (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            )
            if not hit and env is not None:
                hit = env.encode() in (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if hit and process_start_time(int(entry.name)) is not None:
            found.append(int(entry.name))
    return found


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
    interval: float = 0.25,
) -> None:
    """Poll ``check`` until it is true; fail early if ``process`` exits, late on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if process is not None and process.poll() is not None:
            tail = log_tail(log_file) if log_file else ""
            raise RuntimeError(f"{what}: process exited with code {process.returncode}\n{tail}")
        if time.monotonic() >= deadline:
            tail = log_tail(log_file) if log_file else ""
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s\n{tail}")
        time.sleep(interval)


def wait_for_port(
    port: int,
    *,
    host: str = LOOPBACK,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
) -> None:
    """Wait until something accepts TCP connections on ``host:port``."""
    wait_until(
        lambda: _port_open(port, host),
        timeout=timeout,
        what=f"port {host}:{port}",
        process=process,
        log_file=log_file,
    )


def http_ok(url: str, *, timeout: float = 2.0) -> bool:
    """True when GET ``url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_for_http(
    url: str,
    *,
    timeout: float = 60.0,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
) -> None:
    """Wait until GET ``url`` answers 2xx."""
    wait_until(lambda: http_ok(url), timeout=timeout, what=url, process=process, log_file=log_file)


def log_tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"--- last lines of {path} ---\n" + "\n".join(text)


def _die_with_parent_hook() -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent thread exits.

    libc is resolved here, in the parent: the forked child only makes the system call
    (loading libraries after fork in a threaded process can deadlock).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with output appended to ``log_file``.

    ``env`` is added to this process's environment. With ``die_with_parent`` the child
    gets SIGTERM when the thread that started it exits (used by test fixtures so a killed
    test run leaves no server behind); call it from the main thread.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    with log_file.open("ab") as out:
        out.write(
            f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode()
        )
        out.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook() if die_with_parent else None,
        )
    logger.debug("started pid %s: %s", process.pid, " ".join(argv))
    return process


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group led by ``pid`` (and to ``pid`` itself)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _wait_gone(pid: int, start_time: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_matches(pid, start_time):
            return True
        time.sleep(0.1)
    return False


def stop_process(
    pid: int,
    *,
    start_time: int | None = None,
    timeout: float = 20.0,
    sig: signal.Signals = signal.SIGTERM,
) -> bool:
    """Stop ``pid`` and its process group: ``sig`` (SIGTERM), SIGKILL after ``timeout`` s.

    Returns False when the process was not running (or ``start_time`` shows that the pid
    now belongs to another process), True when it was stopped.
    """
    if start_time is None:
        start_time = process_start_time(pid)
    if start_time is None or not pid_matches(pid, start_time):
        _reap(pid)
        return False
    signal_group(pid, sig)
    if not _wait_gone(pid, start_time, timeout):
        logger.warning(
            "pid %s did not stop after %s in %.0f s: sending SIGKILL", pid, sig.name, timeout
        )
        signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, start_time, 10.0)
    # Whatever else is left in the group (children that ignored SIGTERM) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (serialises installs and stack changes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
