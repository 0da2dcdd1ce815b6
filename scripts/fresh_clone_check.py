#!/usr/bin/env python3
"""Check that a fresh clone of the repository works on its own (what `make fresh-clone` does).

Clones the committed HEAD (or ``--ref``) into a temporary folder, which shares nothing with this
checkout (no .venv, no perf/results, no uncommitted file), and runs ``make test`` there, or the
make targets given (``VAR=value`` items are passed to make as variables). Every step is bounded
by ``--timeout``; on a timeout or Ctrl-C the process group this script started is stopped. The
folder is removed at the end unless ``--keep``. Exits with make's status (124: timed out).

    scripts/fresh_clone_check.py                          # make test in a fresh clone
    scripts/fresh_clone_check.py lint test PYTEST_ARGS="-q -x"
    make fresh-clone FRESH_TARGETS="test dist"

Uncommitted changes are not in the clone: the check is about what a user would get. Standard
library only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bounded import run  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip()


def clean_env() -> dict[str, str]:
    """This environment without what would point the clone back at this checkout."""
    env = dict(os.environ)
    for var in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"):
        env.pop(var, None)
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").split("\n\n")
    p = argparse.ArgumentParser(
        description="\n\n".join(doc[:3]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET|VAR=value",
        help="make targets to run in the clone (default: test) and make variables",
    )
    p.add_argument("--ref", default="HEAD", help="commit to check out (default: %(default)s)")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds allowed to the clone and to make (default: %(default)s)",
    )
    p.add_argument("--keep", action="store_true", help="keep the clone and print where it is")
    p.add_argument("--make", default=os.environ.get("MAKE", "make"), help="make program")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = args.targets or ["test"]
    try:
        commit = git("rev-parse", "--verify", f"{args.ref}^{{commit}}")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"fresh-clone: not a usable git checkout: {exc}", file=sys.stderr)
        return 2
    if dirty and args.ref == "HEAD":
        print("fresh-clone: note: uncommitted changes here are not part of the check")
    where = Path(tempfile.mkdtemp(prefix="antflow-fresh-"))
    clone = where / "antflow"
    t0 = time.monotonic()
    code = 1
    try:
        code = run(
            ["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)],
            where,
            args.timeout,
        )
        if code == 0:
            code = run(["git", "checkout", "--quiet", "--detach", commit], clone, args.timeout)
        if code == 0:
            print(f"fresh-clone: {commit[:12]} in {clone}: {args.make} {' '.join(targets)}")
            code = run([args.make, *targets], clone, args.timeout, env=clean_env())
    finally:
        if args.keep:
            print(f"fresh-clone: kept {clone}")
        else:
            shutil.rmtree(where, ignore_errors=True)
    outcome = "passed" if code == 0 else f"FAILED (exit {code})"
    took = time.monotonic() - t0
    print(f"fresh-clone: make {' '.join(targets)} on {commit[:12]}: {outcome} in {took:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
