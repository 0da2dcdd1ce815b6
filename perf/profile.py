"""`make profile`: one workload under `py-spy record`, written as a flame graph (SVG).

    python perf/profile.py [--workload noop] [--contender antflow-map] [--loop uvloop]
                           [--seconds 10] [--n N] [--rate 250] [--lines]

Each option can also be given by the environment: PROFILE_WORKLOAD, PROFILE_CONTENDER,
PROFILE_LOOP, PROFILE_SECONDS, PROFILE_N, PROFILE_RATE, PROFILE_LINES=1. The program profiled is
``perf/worker.py --spin SECONDS ...``: batches of n tasks repeated for that long, so the
picture is the steady state, not the start-up. The output is
perf/results/profile-<workload>.svg (plus the contender and loop when not the defaults).

(This file is named by the Makefile; note that it shadows the standard library's ``profile``
module for scripts run from perf/, which only matters to ``cProfile``, unused here.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

PERF = Path(__file__).resolve().parent
ROOT = PERF.parent
RESULTS = PERF / "results"
WORKER = PERF / "worker.py"

sys.path.insert(0, str(PERF))

import workloads as wl  # noqa: E402

DEFAULTS = {"workload": "noop", "contender": "antflow-map", "loop": "uvloop"}

PTRACE_HELP = """\
py-spy could not read the profiled process. It needs ptrace permission:
  - run as root (sudo make profile), or
  - allow it for your user: sudo sysctl kernel.yama.ptrace_scope=0, or
  - in a container: docker run --cap-add SYS_PTRACE ... (or --privileged)."""


def find_py_spy() -> str | None:
    # `make profile` runs .venv/bin/python without activating the venv: look beside it first.
    beside = Path(sys.executable).parent / ("py-spy.exe" if os.name == "nt" else "py-spy")
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="profile one workload with py-spy record")
    p.add_argument(
        "--workload", default=env("PROFILE_WORKLOAD", DEFAULTS["workload"]), choices=wl.WORKLOADS
    )
    p.add_argument(
        "--contender",
        default=env("PROFILE_CONTENDER"),
        help="default: antflow-map (antflow-map_iter-drain for memory, "
        "antflow-as_completed for as_completed)",
    )
    p.add_argument(
        "--loop", default=env("PROFILE_LOOP", DEFAULTS["loop"]), choices=(*wl.LOOPS, wl.NO_LOOP)
    )
    p.add_argument("--seconds", type=float, default=float(env("PROFILE_SECONDS", "10")))
    p.add_argument(
        "--n",
        type=int,
        default=int(env("PROFILE_N", "0")) or None,
        help="tasks per batch (default: the workload's full size)",
    )
    p.add_argument(
        "--lines",
        action="store_true",
        default=os.environ.get("PROFILE_LINES", "") not in ("", "0"),
        help="one frame per source line (default: per function, which reads better)",
    )
    p.add_argument(
        "--rate",
        type=int,
        default=int(env("PROFILE_RATE", "250")),
        help="py-spy samples per second",
    )
    args = p.parse_args(argv)
    if args.contender is None:
        args.contender = wl.BASELINE[args.workload]
    if args.contender not in wl.CONTENDERS:
        p.error(f"unknown contender {args.contender!r}: one of {', '.join(wl.CONTENDERS)}")
    if args.contender not in wl.MATRIX[args.workload]:
        p.error(
            f"{args.contender} is not a contender of {args.workload}: "
            f"{', '.join(wl.MATRIX[args.workload])}"
        )
    if not wl.CONTENDERS[args.contender].is_async:
        args.loop = wl.NO_LOOP
    elif args.loop == wl.NO_LOOP:
        p.error("an event-loop contender needs --loop asyncio or uvloop")
    if args.n is None:
        args.n = wl.FULL_SIZES[args.workload]
        if args.workload == "memory":
            args.n = 100_000  # a batch, repeated; the memory figure itself is from run.py
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    contender = wl.CONTENDERS[args.contender]
    py_spy = find_py_spy()
    if py_spy is None:
        print(
            "py-spy is not installed: `make profile` installs it through the bench extra "
            "(pip install py-spy)",
            file=sys.stderr,
        )
        return 1

    python, env = sys.executable, dict(os.environ)
    if contender.peer:
        import harness

        peer, why = harness.peer_python(quick=False)
        if peer is None:
            print(why, file=sys.stderr)
            return 1
        python, env = peer, harness.peer_env()

    name = args.workload
    if (args.contender, args.loop) != (wl.BASELINE[args.workload], DEFAULTS["loop"]):
        name += f"-{args.contender}-{'noloop' if args.loop == wl.NO_LOOP else args.loop}"
    out = RESULTS / f"profile-{name}.svg"
    RESULTS.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()

    target = [
        python,
        str(WORKER),
        "--spin",
        str(args.seconds),
        "--workload",
        args.workload,
        "--contender",
        args.contender,
        "--loop",
        args.loop,
        "--n",
        str(args.n),
    ]
    base = [py_spy, "record", "-o", str(out), "--format", "flamegraph", "--rate", str(args.rate)]
    if not args.lines:
        base.append("--function")
    print(
        f"profiling {args.contender} on {args.loop}, workload {args.workload}, "
        f"{args.n:,} tasks per batch, for {args.seconds:g} s",
        flush=True,
    )
    tail = ""
    for extra in ([], ["--nonblocking"]):
        cmd = [*base, *extra, "--", *target]
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True)
        tail = (proc.stdout + proc.stderr).strip()
        if proc.returncode == 0 and out.exists() and out.stat().st_size > 0:
            lines = [ln for ln in proc.stdout.splitlines() if "us/task" in ln]
            for line in lines:
                print(line)
            note = " (non-blocking sampling)" if extra else ""
            print(f"flame graph{note}: {out.relative_to(ROOT)}")
            print(
                "open it in a browser: the widest frames are where the time goes; "
                "click to zoom, Ctrl+F to search"
            )
            return 0
        if extra:
            break
        print(
            f"py-spy record failed (exit {proc.returncode}); retrying with --nonblocking",
            file=sys.stderr,
        )
    print(tail[-2000:], file=sys.stderr)
    lowered = tail.lower()
    if any(w in lowered for w in ("permission", "ptrace", "not permitted", "eperm")):
        print(PTRACE_HELP, file=sys.stderr)
    print(f"no flame graph written ({out.relative_to(ROOT)})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
