"""MBPP execution: pull the code out of a generation and run it against the task's asserts.

Generated code is never executed in this process: :func:`run_python_tests` starts a fresh,
isolated ``python -I`` interpreter in a temporary directory, under a wall-clock limit, in its own
process group, and on POSIX with address-space, CPU-time and file-size limits.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

# --------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
# Lines (at column 0) that end the solution: tests, a driver, a chat turn, or a stop marker.
_END_OF_CODE = re.compile(
    r"^(?:assert\b|print\(|if __name__|#+\s*test|\[DONE\]|\[END\]|```|</code>|"
    r"(?:Question|Answer|Human|User|Assistant|Instruction|Response)\s*:|###|<\||"
    r"You are an expert Python programmer)",
    re.IGNORECASE,
)


def extract_code(generation: str) -> str:
    """Pull the Python solution out of a model generation.

    If the text contains markdown fences, the first fenced block that defines something
    (``def``/``class``/``import``) is taken, else the first block. Otherwise the text is cut at
    the first column-0 line that obviously ends a solution: an ``assert`` or ``print(`` test
    line, ``if __name__``, a ``# Test`` comment, ``[DONE]``, a fence, or a chat-turn marker
    (``Question:``, ``### ...``, ``<|...``).

    Args:
        generation: The generated text (the prompt not included).

    Returns:
        The code, with trailing whitespace removed.

    """
    text = generation.replace("\r\n", "\n")
    blocks = _FENCE.findall(text)
    if blocks:
        bodies = [body for _, body in blocks]
        defining = [b for b in bodies if re.search(r"^\s*(def|class|import|from)\s", b, re.M)]
        return (defining or bodies)[0].rstrip()
    lines = text.split("\n")
    kept: list[str] = []
    for line in lines:
        if kept and _END_OF_CODE.match(line) and any(s.strip() for s in kept):
            break
        if not kept and _END_OF_CODE.match(line) and not line.startswith(("assert", "print")):
            continue
        kept.append(line)
    return "\n".join(kept).rstrip()


def _limit_resources(memory_bytes: int | None, cpu_seconds: int) -> None:  # pragma: no cover
    """Run in the child before exec: cap address space, CPU time and written file size."""
    import resource

    limits = [(resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_FSIZE, 64 * 2**20)]
    if memory_bytes is not None and hasattr(resource, "RLIMIT_AS"):
        limits.append((resource.RLIMIT_AS, memory_bytes))
    for kind, value in limits:
        try:
            _, hard = resource.getrlimit(kind)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(kind, (value, hard))
        except (ValueError, OSError):
            pass


def run_python_tests(
    program: str, timeout: float = 5.0, memory_bytes: int | None = 4 * 2**30
) -> tuple[bool, str]:
    """Run a Python program in a fresh isolated interpreter; success means exit status 0.

    The program runs as ``python -I`` (no user site, no ``PYTHON*`` variables) in a fresh
    temporary working directory, with stdin closed, in its own process group (killed as a whole
    when the wall-clock limit passes), and on POSIX with ``RLIMIT_CPU``, ``RLIMIT_AS`` and
    ``RLIMIT_FSIZE`` set. This limits accidents; it is not a security sandbox against hostile
    code (run untrusted generations in a container).

    Args:
        program: Python source.
        timeout: Wall-clock limit in seconds.
        memory_bytes: Address-space limit of the child (``None``: no limit).

    Returns:
        ``(passed, detail)``: ``detail`` is ``"passed"``, ``"timeout"`` or the end of stderr.

    """
    posix = os.name == "posix"
    with tempfile.TemporaryDirectory(prefix="adaspec_exec_") as tmp:
        path = os.path.join(tmp, "candidate.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
        kwargs: dict[str, Any] = {}
        if posix:
            cpu = max(1, math.ceil(timeout)) + 1
            kwargs["preexec_fn"] = lambda: _limit_resources(memory_bytes, cpu)
            kwargs["start_new_session"] = True
        env = {"PATH": os.environ.get("PATH", ""), "HOME": tmp, "LANG": "C.UTF-8"}
        proc = subprocess.Popen(
            [sys.executable, "-I", path],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            **kwargs,
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc, posix)
            return False, "timeout"
        finally:
            if proc.poll() is None:
                _kill(proc, posix)
        if proc.returncode == 0:
            return True, "passed"
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        return False, tail[0] if tail else f"exit status {proc.returncode}"


def _kill(proc: subprocess.Popen, posix: bool) -> None:
    try:
        if posix:
            os.killpg(proc.pid, 9)
        else:  # pragma: no cover
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def mbpp_pass_at_1(
    code: str,
    test_list: Sequence[str],
    test_setup_code: str = "",
    timeout: float = 5.0,
    memory_bytes: int | None = 4 * 2**30,
) -> bool:
    """Whether a candidate solution passes all of an MBPP task's asserts.

    Args:
        code: The candidate program (already extracted, see :func:`extract_code`).
        test_list: The task's ``assert`` lines.
        test_setup_code: Code run before the candidate (MBPP's ``test_setup_code``).
        timeout: Wall-clock limit of the whole run in seconds.
        memory_bytes: Address-space limit of the subprocess.

    Returns:
        ``True`` if the program exits cleanly within the limits.

    """
    if isinstance(test_list, str):
        test_list = [test_list]
    if not test_list:
        raise ValueError(
            "mbpp_pass_at_1 got an empty test_list: pass the task's 'test_list' asserts, "
            "a program with no test cannot pass or fail"
        )
    program = "\n\n".join([test_setup_code or "", code, "\n".join(test_list), ""])
    return run_python_tests(program, timeout=timeout, memory_bytes=memory_bytes)[0]
