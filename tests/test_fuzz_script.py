"""scripts/fuzz.py (`make fuzz`): rounds of property tests on random schedules.

The rounds here run small test files of this module's own, on the fuzz script's
``--tests`` hook, so that a round's passing or failing is known in advance; one test checks
that tests/test_properties.py takes the number of examples the script passes on.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "fuzz.py"
BOUND_SECONDS = 120  # every subprocess here ends in seconds; this only stops a hang

COUNTING_PROPERTY = """
import os

from hypothesis import given, settings, strategies as st

CALLS = []


@settings(max_examples=int(os.environ["ANTFLOW_PROPERTY_EXAMPLES"]), database=None)
@given(st.integers())
def test_draws(n):
    CALLS.append(n)


def test_ran_as_many_examples_as_the_command_line_asked():  # after test_draws: file order
    assert len(CALLS) == EXPECTED
"""

FAILING_PROPERTY = """
from hypothesis import given, settings, strategies as st


@settings(database=None)
@given(st.integers(min_value=0, max_value=10))
def test_small(n):
    assert n < 5
"""


def fuzz(*args: str, tests: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), *args]
    if tests is not None:
        cmd += ["--tests", str(tests)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=BOUND_SECONDS)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test_prop.py"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_fuzz_script_explains_its_options_with_help() -> None:
    done = fuzz("--help")
    assert done.returncode == 0, done.stderr
    for option in ("--minutes", "--examples", "-k", "--seed", "--python"):
        assert option in done.stdout


@pytest.mark.parametrize("bad", [["--minutes", "0"], ["--examples", "-3"], ["--minutes", "x"]])
def test_a_time_or_example_count_that_is_not_above_zero_is_refused(bad: list[str]) -> None:
    done = fuzz(*bad)
    assert done.returncode == 2
    assert bad[0] in done.stderr
    assert "round" not in done.stdout  # refused before any round ran


def test_a_round_runs_as_many_examples_per_property_as_asked_then_reports_it_passed(
    tmp_path: Path,
) -> None:
    tests = write(tmp_path, COUNTING_PROPERTY + "\nEXPECTED = 7\n")
    done = fuzz("--minutes", "0.001", "--examples", "7", "--seed", "11", tests=tests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "round 1: seed 11, 7 examples per property" in done.stdout
    assert "2 passed" in done.stdout  # both tests of the file, in the round's own output
    assert "1 rounds passed" in done.stdout


def test_a_failing_round_stops_the_run_and_prints_how_to_run_it_again(tmp_path: Path) -> None:
    tests = write(tmp_path, FAILING_PROPERTY)
    done = fuzz("--minutes", "0.05", "--examples", "50", "--seed", "123", tests=tests)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "round 1 failed" in done.stdout
    assert "round 2" not in done.stdout
    lines = done.stdout.splitlines()
    told = next(i for i, line in enumerate(lines) if "run it again with:" in line)
    replay = lines[told + 1]
    assert "ANTFLOW_PROPERTY_EXAMPLES=50 " in replay
    assert "--hypothesis-seed=123" in replay
    assert str(tests) in replay


def test_a_filter_that_matches_no_property_is_an_error_not_a_pass(tmp_path: Path) -> None:
    tests = write(tmp_path, FAILING_PROPERTY)
    done = fuzz("--minutes", "5", "-k", "no_such_property", tests=tests)
    assert done.returncode == 2
    assert "no property test matched" in done.stderr


@pytest.mark.parametrize(("given", "expected"), [("", "50 True"), ("7", "7 False")])
def test_the_property_tests_take_their_example_count_from_the_fuzz_script(
    given: str, expected: str
) -> None:
    # What a round's pytest does with ANTFLOW_PROPERTY_EXAMPLES: load the property module and
    # read the settings its properties share (unset, CI's fixed schedules).
    properties = str(ROOT / "tests" / "test_properties.py")
    load = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('props', {properties!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['props'] = m\n"
        "spec.loader.exec_module(m)\n"
        "print(m.PROPERTY_SETTINGS.max_examples, m.PROPERTY_SETTINGS.derandomize)\n"
    )
    env = dict(os.environ, ANTFLOW_PROPERTY_EXAMPLES=given)
    done = subprocess.run(
        [sys.executable, "-c", load], env=env, capture_output=True, text=True, timeout=BOUND_SECONDS
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()
