#!/usr/bin/env python3
"""Run the test suite on every Python 3.10-3.13 that pyenv has (what `make test-matrix` does).

For each minor version: the newest pyenv build of it (``$PYENV_ROOT/versions/3.X.*``), a virtual
environment ``.venv-3.X`` made from it (``pip install -e '.[test]'``, redone when pyproject.toml
is newer than the environment's ``.installed`` stamp, like the Makefile's ``.venv``), and
``python -m pytest`` with the arguments given after ``--``. A version that is not installed is
skipped with a message; the exit status is non-zero when a suite fails, an environment cannot
be made, or no version was found at all.

    scripts/test_matrix.py                                # 3.10 3.11 3.12 3.13
    scripts/test_matrix.py --versions 3.12 -- tests/test_future.py -q
    make test-matrix MATRIX=3.12 PYTEST_ARGS="tests/test_future.py -q"

Standard library only (it runs on whatever ``python3`` the Makefile has).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _bounded import run  # scripts/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def pyenv_root(given: str | None) -> Path:
    if given:
        return Path(given).expanduser()
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"]).expanduser()
    try:
        out = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
        if out:
            return Path(out)
    except (OSError, subprocess.SubprocessError):
        pass
    return Path.home() / ".pyenv"


def _patch_level(path: Path, minor: str) -> tuple[int, ...] | None:
    """(patch,) of a final release ``3.X.N`` of this minor; None for anything else."""
    m = re.fullmatch(re.escape(minor) + r"\.(\d+)", path.name)
    return (int(m.group(1)),) if m else None


def find_python(root: Path, minor: str) -> Path | None:
    """The newest pyenv build ``root/versions/<minor>.N`` with a working bin/python3."""
    versions = root / "versions"
    if not versions.is_dir():
        return None
    found = []
    for path in versions.iterdir():
        level = _patch_level(path, minor)
        python = path / "bin" / "python3"
        if level is not None and python.exists() and os.access(python, os.X_OK):
            found.append((level, python))
    return max(found)[1] if found else None


def ensure_venv(python: Path, venv: Path, extras: str, timeout: float) -> bool:
    stamp = venv / ".installed"
    pyproject = ROOT / "pyproject.toml"
    if stamp.exists() and stamp.stat().st_mtime >= pyproject.stat().st_mtime:
        return True
    vpy = str(venv / "bin" / "python")
    steps = [
        [str(python), "-m", "venv", str(venv)],
        [vpy, "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [vpy, "-m", "pip", "install", "--quiet", "-e", f".[{extras}]"],
    ]
    for cmd in steps:
        if run(cmd, ROOT, timeout) != 0:
            return False
    stamp.touch()
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = (__doc__ or "").split("\n\n")
    p = argparse.ArgumentParser(
        usage="%(prog)s [options] [-- PYTEST_ARGS ...]",
        description=doc[0] + "\n\n" + doc[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Anything after `--` goes to pytest (e.g. -- tests/test_map.py -q -k timeout).",
    )
    p.add_argument(
        "--versions",
        nargs="+",
        default=list(DEFAULT_VERSIONS),
        metavar="3.X",
        help="minor versions to test (default: %(default)s); also space- or comma-separated",
    )
    p.add_argument("--pyenv-root", help="default: $PYENV_ROOT, `pyenv root`, or ~/.pyenv")
    p.add_argument("--extras", default="test", help="extras installed (default: %(default)s)")
    p.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds allowed to each step (venv, install, suite) (default: %(default)s)",
    )
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing version")
    p.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    versions = [v for item in args.versions for v in re.split(r"[,\s]+", item) if v]
    for v in versions:
        if not re.fullmatch(r"3\.\d+", v):
            print(f"test-matrix: {v!r} is not a minor version like 3.12", file=sys.stderr)
            return 2
    root = pyenv_root(args.pyenv_root)
    results: dict[str, str] = {}
    for v in versions:
        python = find_python(root, v)
        if python is None:
            print(f"test-matrix: Python {v} is not installed under {root}/versions: skipped")
            continue
        print(f"=== Python {v} ({python.parent.parent.name})", flush=True)
        t0 = time.monotonic()
        venv = ROOT / f".venv-{v}"
        if not ensure_venv(python, venv, args.extras, args.timeout):
            results[v] = "could not make .venv-" + v
        else:
            cmd = [str(venv / "bin" / "python"), "-m", "pytest", *args.pytest_args]
            code = run(cmd, ROOT, args.timeout)
            results[v] = "passed" if code == 0 else f"FAILED (exit {code})"
        results[v] += f" in {time.monotonic() - t0:.0f} s"
        if args.fail_fast and not results[v].startswith("passed"):
            break
    if not results:
        print(f"test-matrix: no Python of {' '.join(versions)} found under {root}/versions")
        return 1
    print("\n=== test-matrix summary")
    for v, outcome in results.items():
        print(f"Python {v}: {outcome}")
    return 0 if all(r.startswith("passed") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
