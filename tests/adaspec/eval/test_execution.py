import time

import pytest

from adaspec.eval.execution import extract_code, mbpp_pass_at_1, run_python_tests

TESTS = ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"]


def test_mbpp_pass_at_1_correct_solution_passes():
    assert mbpp_pass_at_1("def add(a, b):\n    return a + b\n", TESTS) is True


def test_mbpp_pass_at_1_wrong_solution_fails():
    assert mbpp_pass_at_1("def add(a, b):\n    return a - b\n", TESTS) is False


def test_mbpp_pass_at_1_infinite_loop_times_out():
    start = time.monotonic()
    code = "def add(a, b):\n    while True:\n        pass\n"
    assert mbpp_pass_at_1(code, TESTS, timeout=1.0) is False
    assert time.monotonic() - start < 10.0


def test_mbpp_pass_at_1_syntax_error_fails():
    assert mbpp_pass_at_1("def add(a, b) return a + b", TESTS) is False


def test_mbpp_pass_at_1_uses_setup_code():
    setup = "OFFSET = 10"
    code = "def add(a, b):\n    return a + b + OFFSET - 10\n"
    assert mbpp_pass_at_1(code, TESTS, test_setup_code=setup) is True
    assert mbpp_pass_at_1(code, TESTS) is False


def test_mbpp_pass_at_1_runs_out_of_process(tmp_path):
    marker = "import os\nos._exit(0)\n"
    # os._exit in-process would kill pytest; in a subprocess it ends the run before the asserts
    assert mbpp_pass_at_1(marker + "def add(a, b):\n    return 0\n", TESTS) is False


@pytest.mark.parametrize(
    "escape",
    ["import sys\nsys.exit(0)", "exit()", "quit()", "raise SystemExit", "import os\nos._exit(0)"],
)
def test_mbpp_pass_at_1_exit_before_asserts_fails(escape):
    code = "def add(a, b):\n    return 0\n" + escape + "\n"
    assert mbpp_pass_at_1(code, TESTS) is False


def test_mbpp_pass_at_1_sentinel_survives_redirected_stdout():
    code = "import io, sys\nsys.stdout = io.StringIO()\ndef add(a, b):\n    return a + b\n"
    assert mbpp_pass_at_1(code, TESTS) is True


def test_mbpp_pass_at_1_needs_exit_status_zero():
    code = "import atexit, os\natexit.register(os._exit, 3)\ndef add(a, b):\n    return a + b\n"
    assert mbpp_pass_at_1(code, TESTS) is False


def test_run_python_tests_sentinel_required():
    assert run_python_tests("print('other')", sentinel="S3NT") == (
        False,
        "no sentinel: exited early",
    )
    assert run_python_tests("print('S3NT')", sentinel="S3NT") == (True, "passed")


def test_mbpp_pass_at_1_rejects_empty_tests():
    with pytest.raises(ValueError, match="test_list"):
        mbpp_pass_at_1("x = 1", [])


def test_run_python_tests_reports_error_line():
    ok, detail = run_python_tests("raise RuntimeError('boom')")
    assert not ok and "boom" in detail
    assert run_python_tests("while True: pass", timeout=0.5) == (False, "timeout")


def test_extract_code_strips_fences_and_trailing_tests():
    fenced = "Here you go:\n```python\ndef f(x):\n    return x\n```\nExplanation: it works."
    assert extract_code(fenced) == "def f(x):\n    return x"
    plain = "def f(x):\n    return x\n\nassert f(1) == 1\nprint(f(2))\n"
    assert extract_code(plain) == "def f(x):\n    return x"
    chat = "def f(x):\n    return x\n\nQuestion: next task"
    assert extract_code(chat) == "def f(x):\n    return x"
    assert extract_code("def f(x):\n    return x\r\n") == "def f(x):\n    return x"
