"""A sandboxed subprocess for untrusted generated Python (MBPP solutions).

:func:`run_sandboxed` runs a program in a fresh ``python -I`` interpreter with these layers, each
used where the machine allows it (what is missing is logged once as a warning):

* **Namespaces** (``unshare --net --pid --fork --mount-proc``, util-linux): a network namespace
  with only a downed loopback (no socket reaches anything, 127.0.0.1 included), a PID namespace
  whose ``/proc`` shows the sandbox's own processes only, and a mount namespace for that
  ``/proc``. The candidate is the namespace's init, so when it exits or is killed the kernel
  kills every process left in it, ``setsid`` and double forks included. Not root: the namespaces
  come with a user namespace (``--user --map-root-user``) where the kernel allows it.
* **Another uid** (evaluator running as root): the program runs as a fresh unprivileged uid and
  gid (random per run, no supplementary groups), so it cannot delete or change files it does not
  own, cannot read ``/proc/<pid>/environ`` of other processes, and cannot signal the evaluator.
  After every run a reaper with that uid sends ``kill(-1, SIGKILL)``, which kills every process
  of the uid at once, so nothing survives the run even without a PID namespace.
* **Limits**: ``RLIMIT_NPROC`` (processes of the uid: a fork bomb is bounded), ``RLIMIT_AS``
  (memory per process), ``RLIMIT_CPU`` and ``RLIMIT_FSIZE``; a wall-clock timeout after which
  the whole process group, the namespace and the uid are killed.
* **Environment**: a temporary working folder owned by the sandbox uid, stdin closed, a fixed
  environment (``PATH=/usr/local/bin:/usr/bin:/bin``, ``HOME``/``TMPDIR`` = the folder, ``LANG``),
  no inherited file descriptors; stdout and stderr go to unlinked files of the evaluator (bounded
  by ``RLIMIT_FSIZE``, not held in a pipe).

What remains (not covered): the program can read every world-readable file (the repository, the
data sets, other users' world-readable files) and write into world-writable folders (``/tmp``,
``/dev/shm``) where its files persist; memory is limited per process, so the total is up to
``max_processes x memory_bytes`` (no cgroup); the CPU and the kernel are shared (a kernel exploit
escapes); a program written to forge MBPP's pass sentinel (reading its own source) can; without
root the program runs as the evaluator's uid and can read, change and delete the evaluator's files;
without ``unshare`` it has the network. For hostile code use a container or VM on top of this.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO

try:  # imported here: in the child the sandbox uid may not be able to read lib-dynload
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_NS_FLAGS = ("--net", "--pid", "--fork", "--mount-proc", "--kill-child")
_USERNS_FLAGS = ("--user", "--map-root-user")
_ENV_PATH = "/usr/local/bin:/usr/bin:/bin"
# Fresh uids are drawn from [base, base + span) inside the machine's uid and gid maps.
_UID_RANGES = ((0x6A000000, 2**24), (200_000, 2**16))
# Run as root in the sandbox's namespaces: drop to the sandbox uid, die with unshare, exec
# (used where util-linux's setpriv is missing or too old for --pdeathsig).
_DROP = (
    "import ctypes, os, sys\n"
    "uid = int(sys.argv[1])\n"
    "os.setgroups([]); os.setgid(uid); os.setuid(uid)\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
    "except Exception:\n"
    "    pass\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
_warned: set[str] = set()


@dataclasses.dataclass(frozen=True)
class Isolation:
    """How a run was isolated: namespaces, the uid switch, the interpreter, what is missing."""

    namespaces: bool
    uid_switch: bool
    python: str
    missing: tuple[str, ...] = ()


@dataclasses.dataclass
class SandboxResult:
    """What a sandboxed run returned.

    Attributes:
        returncode: Exit status (negative: killed by that signal; as reported by ``unshare``).
        stdout: Everything the program wrote to stdout (bounded by ``RLIMIT_FSIZE``).
        stderr: The last 64 KiB of stderr.
        timed_out: Whether the wall-clock limit was reached (the run was then killed).
        uid: The sandbox uid (``None`` when the program ran as the evaluator's uid).
        isolation: The layers used.
    """

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool
    uid: int | None
    isolation: Isolation


def _root() -> bool:
    return os.name == "posix" and os.geteuid() == 0


@functools.cache
def _unshare_flags(root: bool) -> tuple[str, ...] | None:
    """The ``unshare`` command line prefix that works here, or ``None``."""
    exe = shutil.which("unshare")
    if exe is None or os.name != "posix":
        return None
    flags = _NS_FLAGS if root else _USERNS_FLAGS + _NS_FLAGS
    try:
        probe = subprocess.run(
            [exe, *flags, sys.executable, "-I", "-S", "-c", "pass"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (exe, *flags) if probe.returncode == 0 else None


def namespaces_available() -> bool:
    """Whether ``unshare`` can create the network and PID namespaces on this machine."""
    return _unshare_flags(_root()) is not None


def _mapped(path: str, base: int, span: int) -> bool:
    try:
        lines = open(path).read().split("\n")
    except OSError:
        return True
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            inside, _, count = (int(p) for p in parts)
            if inside <= base and base + span <= inside + count:
                return True
    return False


@functools.cache
def _uid_range() -> tuple[int, int] | None:
    for base, span in _UID_RANGES:
        if _mapped("/proc/self/uid_map", base, span) and _mapped("/proc/self/gid_map", base, span):
            return base, span
    return None


@functools.cache
def _setpriv() -> str | None:
    exe = shutil.which("setpriv")
    if exe is None:
        return None
    try:
        helptext = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return exe if "--pdeathsig" in helptext.stdout else None


def _drop_command(uid: int) -> list[str]:
    """The command prefix that switches to ``uid`` inside the namespaces, then execs."""
    exe = _setpriv()
    if exe is not None:
        return [exe, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--pdeathsig=KILL"]
    return [sys.executable, "-I", "-S", "-c", _DROP, str(uid)]


def _drop_to(uid: int) -> None:  # pragma: no cover - runs in the child
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


@functools.cache
def _sandbox_python() -> str | None:
    """An interpreter an unprivileged uid can run (the evaluator's may sit in a 0700 folder)."""
    picks = [sys.executable, getattr(sys, "_base_executable", ""), os.path.realpath(sys.executable)]
    picks += [shutil.which("python3") or "", "/usr/bin/python3"]
    span = _uid_range()
    if span is None:
        return None
    probe_uid = span[0] + secrets.randbelow(span[1])
    for python in dict.fromkeys(p for p in picks if p):
        try:
            ok = subprocess.run(
                [python, "-I", "-c", "import encodings, json, re, math"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                preexec_fn=functools.partial(_drop_to, probe_uid),
                cwd="/",
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if ok.returncode == 0:
            return python
    return None


def resolve_isolation(namespaces: bool = True) -> Isolation:
    """The layers a run gets here (see the module docstring); warns once about what is missing."""
    root = _root()
    missing = []
    use_ns = namespaces and _unshare_flags(root) is not None
    if not use_ns:
        missing.append(
            "no network/PID namespace (unshare unavailable or disabled): the program has the "
            "network, and setsid'd children are found by uid only"
        )
    python = sys.executable
    uid_switch = False
    if not root:
        missing.append(
            "not running as root: the program runs as the evaluator's uid and can read, change "
            "and delete the evaluator's files"
        )
    else:
        found = _sandbox_python()
        if found is None:
            missing.append(
                "no interpreter an unprivileged uid can run (and no free uid range): the program "
                "runs as root"
            )
        else:
            python, uid_switch = found, True
    isolation = Isolation(use_ns, uid_switch, python, tuple(missing))
    for note in missing:
        if note not in _warned:
            _warned.add(note)
            logger.warning("MBPP sandbox: %s; see adaspec/eval/sandbox.py", note)
    return isolation


def _own_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def _limits(  # pragma: no cover - runs in the child
    memory_bytes: int | None, cpu_seconds: int, file_bytes: int, nproc: int | None
) -> None:
    import resource

    limits = [(resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_FSIZE, file_bytes)]
    if memory_bytes is not None and hasattr(resource, "RLIMIT_AS"):
        limits.append((resource.RLIMIT_AS, memory_bytes))
    if nproc is not None and hasattr(resource, "RLIMIT_NPROC"):
        limits.append((resource.RLIMIT_NPROC, nproc))
    for kind, value in limits:
        try:
            _, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, hard))
        except (ValueError, OSError):
            pass


def _kill_uid(uid: int) -> None:
    """Kill every process of ``uid`` at once: ``kill(-1)`` sent by a process of that uid."""

    def reap() -> None:  # pragma: no cover - runs in the child
        _drop_to(uid)
        # Every process this uid may signal, except the caller; again until none is left, since a
        # process that was forking during one sweep can leave a child the sweep did not see.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.01)

    true = shutil.which("true") or "/bin/true"
    try:
        subprocess.run([true], preexec_fn=reap, stdin=subprocess.DEVNULL, timeout=10, cwd="/")
    except (OSError, subprocess.SubprocessError) as err:
        logger.warning("MBPP sandbox: could not kill the processes of uid %d: %s", uid, err)


def _read(handle: IO[bytes], tail: int | None = None) -> bytes:
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - tail) if tail else 0)
    return handle.read()


def run_sandboxed(
    program: str,
    timeout: float = 5.0,
    memory_bytes: int | None = 4 * 2**30,
    max_processes: int = 64,
    file_size_bytes: int = 64 * 2**20,
    namespaces: bool = True,
) -> SandboxResult:
    """Run ``program`` in the sandbox described in the module docstring.

    Args:
        program: Python source.
        timeout: Wall-clock limit in seconds; at the limit everything the program started dies.
        memory_bytes: Address-space limit per process (``None``: none).
        max_processes: Processes the sandbox uid may hold (``RLIMIT_NPROC``).
        file_size_bytes: Largest file (and stdout/stderr) the program may write.
        namespaces: Use network/PID namespaces when available (false: the uid-only fallback).

    Returns:
        The :class:`SandboxResult`; nothing the program started is alive when it returns
        (where the namespaces or the uid switch are available).
    """
    if os.name != "posix":  # pragma: no cover
        raise OSError("the MBPP sandbox needs a POSIX system (Linux for the namespaces)")
    isolation = resolve_isolation(namespaces)
    uid = None
    if isolation.uid_switch:
        base, span = _uid_range() or (0, 1)
        uid = base + secrets.randbelow(span)
    workdir = tempfile.mkdtemp(prefix="adaspec_exec_")
    try:
        path = os.path.join(workdir, "candidate.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(path, uid, uid)
        nproc = max_processes if uid is not None else _own_process_count() + max_processes
        cpu = max(1, math.ceil(timeout)) + 1
        env = {"PATH": _ENV_PATH, "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        cmd = [isolation.python, "-I", "-B", path]
        kwargs: dict = {}
        if isolation.namespaces:
            if uid is not None:
                cmd = [*_drop_command(uid), *cmd]
            cmd = [*(_unshare_flags(_root()) or ()), *cmd]
        elif uid is not None:
            kwargs = {"user": uid, "group": uid, "extra_groups": []}
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                cmd,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=functools.partial(_limits, memory_bytes, cpu, file_size_bytes, nproc),
                **kwargs,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill(proc, uid)
            return SandboxResult(
                proc.returncode, _read(out), _read(err, 2**16), timed_out, uid, isolation
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill(proc: subprocess.Popen, uid: int | None) -> None:
    """Kill the run's process group, then (with a sandbox uid) every process of the uid."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if uid is not None:
        _kill_uid(uid)
    proc.wait()
