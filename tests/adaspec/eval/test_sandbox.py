"""Escapes the MBPP sandbox must block (issue 14, item 5).

Each test runs a small hostile program with :func:`run_sandboxed` and checks from the outside
that the attempt failed, with a positive control where the attempt could fail for another reason.
Tests that need the uid switch skip when the suite does not run as root; the ones that need a
network or PID namespace skip when ``unshare`` cannot create one here.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from adaspec.eval import sandbox
from adaspec.eval.sandbox import run_sandboxed

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not ROOT, reason="the sandbox switches to another uid only when the evaluator runs as root"
)
needs_namespaces = pytest.mark.skipif(
    not sandbox.namespaces_available(),
    reason="unshare cannot create network/PID namespaces on this machine",
)


@pytest.fixture(params=[True, False], ids=["namespaces", "uid-only"])
def namespaces(request) -> bool:
    """Run a test with namespaces (when available) and with the uid-only fallback."""
    if request.param and not sandbox.namespaces_available():
        pytest.skip("unshare cannot create network/PID namespaces on this machine")
    return request.param


@pytest.fixture
def shared_dir():
    """A folder outside the sandbox that any uid may enter (and, with mode 0o777, write)."""
    path = Path(tempfile.mkdtemp(prefix="adaspec_sandbox_test_"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _live_processes_of(uid: int) -> list[int]:
    """Processes of ``uid`` that are not zombies (a zombie is dead, waiting to be reaped)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = dict(
                line.split(":", 1)
                for line in Path(f"/proc/{entry}/status").read_text().splitlines()
            )
        except (OSError, ValueError):
            continue
        if int(status["Uid"].split()[0]) == uid and not status["State"].strip().startswith("Z"):
            pids.append(int(entry))
    return pids


def _processes_of(uid: int) -> list[int]:
    """Live processes of ``uid``, allowing half a second for SIGKILL to be delivered."""
    deadline = time.monotonic() + 0.5
    while (pids := _live_processes_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


@needs_namespaces
def test_run_sandboxed_socket_connect_fails():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    program = (
        "import socket\n"
        f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "print('CONNECTED')\n"
    )
    try:
        result = run_sandboxed(program, timeout=5)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert result.returncode != 0 and b"CONNECTED" not in result.stdout
    assert b"OSError" in result.stderr or b"unreachable" in result.stderr, result.stderr


@needs_root
def test_run_sandboxed_cannot_delete_file_outside_its_folder(shared_dir, namespaces):
    victim = shared_dir / "victim.txt"
    victim.write_text("keep me")
    victim.chmod(0o644)
    program = f"print(open({str(victim)!r}).read())\nimport os\nos.remove({str(victim)!r})\n"
    result = run_sandboxed(program, timeout=5, namespaces=namespaces)
    assert b"keep me" in result.stdout, result.stderr  # it could see the file
    assert victim.exists() and result.returncode != 0
    assert b"PermissionError" in result.stderr


@needs_root
def test_run_sandboxed_cannot_read_parent_environ(monkeypatch, namespaces):
    secret = secrets.token_hex(8)
    monkeypatch.setenv("ADASPEC_TEST_SECRET", secret)
    program = (
        "import os\n"
        "print(dict(os.environ))\n"
        f"print(open('/proc/{os.getpid()}/environ', 'rb').read())\n"
    )
    result = run_sandboxed(program, timeout=5, namespaces=namespaces)
    assert secret.encode() not in result.stdout + result.stderr
    assert result.returncode != 0 and b"Error" in result.stderr
    assert b"PATH" in result.stdout  # the first print ran: the read itself was refused


def test_run_sandboxed_clean_environment_and_own_folder(monkeypatch):
    monkeypatch.setenv("PATH", "/adaspec-parent-marker:" + os.environ.get("PATH", ""))
    monkeypatch.setenv("ADASPEC_TEST_PARENT", "1")
    program = "import os\nprint(sorted(os.environ.items()))\nprint(os.getcwd())\n"
    result = run_sandboxed(program, timeout=5)
    assert result.returncode == 0, result.stderr
    assert b"adaspec-parent-marker" not in result.stdout
    assert b"ADASPEC_TEST_PARENT" not in result.stdout
    assert os.getcwd().encode() not in result.stdout


@needs_root
def test_run_sandboxed_cannot_signal_evaluator(namespaces):
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: received.append(signum))
    try:
        program = f"import os, signal\nos.kill({os.getpid()}, signal.SIGUSR1)\nprint('SENT')\n"
        result = run_sandboxed(program, timeout=5, namespaces=namespaces)
        time.sleep(0.2)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert not received and b"SENT" not in result.stdout
    assert b"ProcessLookupError" in result.stderr or b"PermissionError" in result.stderr


_GRANDCHILD = """
import os, time
marker = {marker!r}
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open(marker + ".started", "w").close()
        time.sleep(6.0)
        open(marker + ".alive", "w").close()
    os._exit(0)
while not os.path.exists(marker + ".started"):
    time.sleep(0.01)
{tail}
"""


@needs_root
@pytest.mark.parametrize("main", ["exits", "hangs"])
def test_run_sandboxed_setsid_grandchild_dead_after_return(shared_dir, namespaces, main):
    shared_dir.chmod(0o777)
    marker = str(shared_dir / "grandchild")
    tail = "time.sleep(30)" if main == "hangs" else "print('done')"
    start = time.monotonic()
    result = run_sandboxed(
        _GRANDCHILD.format(marker=marker, tail=tail), timeout=1.5, namespaces=namespaces
    )
    assert result.timed_out == (main == "hangs"), result
    assert os.path.exists(marker + ".started"), result.stderr  # the grandchild did run
    # The grandchild would write .alive 6 s after it started: wait past that (slack for a loaded
    # machine, where the run's start and the kill can each take seconds).
    time.sleep(max(0.0, start + 8.0 - time.monotonic()))
    assert not os.path.exists(marker + ".alive")


@needs_root
def test_run_sandboxed_process_limit(namespaces):
    program = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 200:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    result = run_sandboxed(program, timeout=5, max_processes=16, namespaces=namespaces)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 16
    assert result.uid is not None and _processes_of(result.uid) == []


@needs_root
def test_run_sandboxed_fork_bomb_bounded(namespaces):
    program = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    result = run_sandboxed(program, timeout=1.0, max_processes=32, namespaces=namespaces)
    assert result.timed_out and time.monotonic() - start < 15
    assert result.uid is not None and _processes_of(result.uid) == []


def test_run_sandboxed_memory_limit():
    program = "x = bytearray(8 * 2**30)\nprint('ALLOCATED')\n"
    result = run_sandboxed(program, timeout=5, memory_bytes=2**30)
    assert result.returncode != 0 and b"MemoryError" in result.stderr


def test_run_sandboxed_fallback_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="adaspec.eval.sandbox"):
        sandbox._warned.clear()
        result = run_sandboxed("print('hi')", timeout=5, namespaces=False)
    assert result.returncode == 0 and b"hi" in result.stdout
    assert "network" in caplog.text and not result.isolation.namespaces


@needs_root
@needs_namespaces
@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "python-drop"])
def test_run_sandboxed_runs_as_fresh_uid(monkeypatch, setpriv):
    if not setpriv:
        monkeypatch.setattr(sandbox, "_setpriv", lambda: None)
    program = "import os\nfor v in (os.getuid(), os.getgid(), os.getgroups(), os.getpid()):\n    print(v)\n"
    result = run_sandboxed(program, timeout=5)
    assert result.returncode == 0, result.stderr
    uid, gid, groups, pid = result.stdout.decode().split("\n")[:4]
    assert int(uid) == int(gid) == result.uid and result.uid != 0
    assert groups == "[]" and pid == "1"  # the init of its own PID namespace
