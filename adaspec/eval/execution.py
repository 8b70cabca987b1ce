"""MBPP execution: pull the code out of a generation and run it against the task's asserts.

Generated code is never executed in this process: :func:`run_python_tests` runs it in the
sandbox of :mod:`adaspec.eval.sandbox` (no network, another uid, process/memory/CPU/file-size
limits, own folder, clean environment, everything it started killed at the end; the module
docstring there lists what remains). A pass needs exit status 0 and a random sentinel that the
program prints after the asserts.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from adaspec.eval.sandbox import run_sandboxed

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


def run_python_tests(
    program: str,
    timeout: float = 5.0,
    memory_bytes: int | None = 4 * 2**30,
    sentinel: str | None = None,
) -> tuple[bool, str]:
    """Run a Python program in the sandbox; success means exit status 0 (and the sentinel printed).

    The program runs through :func:`adaspec.eval.sandbox.run_sandboxed`: no network, another
    uid, a process limit, memory/CPU/file-size limits, its own folder, a clean environment, and
    everything it started killed when it ends or at the timeout (see that module for what
    remains).

    Args:
        program: Python source.
        timeout: Wall-clock limit in seconds.
        memory_bytes: Address-space limit per process (``None``: no limit).
        sentinel: When given, the run passes only if this line appears on stdout (the program
            prints it as its last statement, so an early ``sys.exit(0)`` does not pass).

    Returns:
        ``(passed, detail)``: ``detail`` is ``"passed"``, ``"timeout"``, ``"no sentinel: exited
        early"`` or the end of stderr.

    """
    result = run_sandboxed(program, timeout=timeout, memory_bytes=memory_bytes)
    if result.timed_out:
        return False, "timeout"
    if result.returncode == 0:
        if sentinel is None or sentinel.encode() in result.stdout.splitlines():
            return True, "passed"
        return False, "no sentinel: exited early"
    tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
    return False, tail[0] if tail else f"exit status {result.returncode}"


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
        ``True`` if the program prints a random sentinel placed after the asserts and exits
        with status 0 within the limits: ``sys.exit(0)`` or ``os._exit(0)`` before the asserts
        fails.

    """
    if isinstance(test_list, str):
        test_list = [test_list]
    if not test_list:
        raise ValueError(
            "mbpp_pass_at_1 got an empty test_list: pass the task's 'test_list' asserts, "
            "a program with no test cannot pass or fail"
        )
    sentinel = f"adaspec-mbpp-passed-{secrets.token_hex(16)}"
    # os.write, not print: a candidate that replaced sys.stdout still reports its pass.
    last = f"__import__('os').write(1, b'\\n{sentinel}\\n')"
    program = "\n\n".join([test_setup_code or "", code, "\n".join(test_list), last, ""])
    return run_python_tests(program, timeout=timeout, memory_bytes=memory_bytes, sentinel=sentinel)[
        0
    ]
