#!/usr/bin/env python3
"""Run the property tests on random schedules until a time is up (what `make fuzz` does).

CI runs tests/test_properties.py on the same 50 derandomized schedules per property every
time. A race that shows in one schedule of thousands needs more than that. This script runs
the same properties in rounds: each round is a fresh pytest with a seed of its own
(``--hypothesis-seed``) and ``--examples`` random schedules per property (passed on as
``ANTFLOW_PROPERTY_EXAMPLES``, which the test file reads). Rounds go on until ``--minutes``
are up (the last round may end up to one round later) or until one fails. A failing
round's output holds hypothesis's shrunk example; the script then prints the command that
runs that round again and exits 1. Schedules with timers may interleave differently on a
second run, so a replay can pass where the round failed: run it a few times.

    scripts/fuzz.py --minutes 30
    scripts/fuzz.py --minutes 5 --examples 100 -k wide
    make fuzz MINUTES=30 FUZZ_ARGS="-k drain"

Standard library only; the tests run on the interpreter given by ``--python``.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from _bounded import run  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
# A round past its share of time by this much is stuck: the tests bound each example
# (test_properties.EXAMPLE_TIMEOUT), so this only catches a hang outside an example.
ROUND_GRACE_SECONDS = 600.0
NO_TESTS_COLLECTED = 5  # pytest's exit code when nothing matched

_N = TypeVar("_N", int, float)


def above_zero(kind: Callable[[str], _N]) -> Callable[[str], _N]:
    """An argparse type: ``kind(text)``, refused unless above 0."""

    def parse(text: str) -> _N:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid float value: 'x'"
    return parse


def round_command(args: argparse.Namespace, seed: int) -> list[str]:
    cmd = [args.python, "-m", "pytest", args.tests, "-q", "-x", "-p", "no:cacheprovider"]
    cmd.append(f"--hypothesis-seed={seed}")
    if args.k:
        cmd += ["-k", args.k]
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=above_zero(float), default=10.0, help="default 10")
    p.add_argument(
        "--examples", type=above_zero(int), default=300, help="per property per round; default 300"
    )
    p.add_argument("-k", help="pytest -k expression: which properties to run (default all)")
    p.add_argument("--seed", type=int, help="the first round's seed (default: a random one)")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the tests")
    p.add_argument(
        "--tests", default=str(ROOT / "tests" / "test_properties.py"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)

    env = dict(os.environ, ANTFLOW_PROPERTY_EXAMPLES=str(args.examples))
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    end = time.monotonic() + args.minutes * 60
    rounds = 0
    while True:
        rounds += 1
        cmd = round_command(args, seed)
        print(f"round {rounds}: seed {seed}, {args.examples} examples per property", flush=True)
        started = time.monotonic()
        code = run(cmd, ROOT, max(end - started, 0.0) + ROUND_GRACE_SECONDS, env)
        took = time.monotonic() - started
        if code == NO_TESTS_COLLECTED:
            print(f"no property test matched (-k {args.k!r})", file=sys.stderr)
            return 2
        if code != 0:
            replay = f"ANTFLOW_PROPERTY_EXAMPLES={args.examples} " + shlex.join(cmd)
            print(f"round {rounds} failed (exit {code}) after {took:.0f} s; run it again with:")
            print(f"    cd {shlex.quote(str(ROOT))} && {replay}")
            return 1
        print(f"round {rounds} passed in {took:.0f} s", flush=True)
        if time.monotonic() >= end:
            print(f"{rounds} rounds passed, {args.examples} examples per property each")
            return 0
        seed = (seed + 1) % 2**32


if __name__ == "__main__":
    sys.exit(main())
