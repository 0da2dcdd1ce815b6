"""One benchmark process: one (workload, contender, loop), launched by perf/run.py.

Three modes:

* timing (default): a pyperf Runner; each value is one batch of n tasks on a fresh event loop,
  reported per task (``inner_loops=n``). pyperf spawns its own worker processes with the same
  interpreter and arguments. Example::

      python perf/worker.py --workload noop --contender antflow-map --loop uvloop --n 100000 \\
          -o perf/results/noop/antflow-map-uvloop.json

* ``--memory``: peak RSS growth of one batch in this (fresh) process, written as a pyperf JSON
  file whose unit is bytes (so ``pyperf show`` / ``compare_to`` read it too).
* ``--spin SECONDS``: repeat batches for that long without pyperf (what perf/profile.py runs
  under py-spy).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as wl
from rss import reset_peak, status_kib


def _antflow_version() -> str:
    try:
        import antflow
    except ImportError:
        return "not importable"
    version = getattr(antflow, "__version__", None)
    if not version:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("antflow")
        except Exception:
            version = "unknown"
    return f"{version} ({os.path.dirname(antflow.__file__)})"


def _add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workload", required=True, choices=wl.WORKLOADS)
    parser.add_argument("--contender", required=True, choices=sorted(wl.CONTENDERS))
    parser.add_argument("--loop", required=True, choices=(*wl.LOOPS, wl.NO_LOOP))
    parser.add_argument("--n", type=int, required=True)


def _metadata(args: argparse.Namespace) -> dict[str, object]:
    c = wl.CONTENDERS[args.contender]
    meta: dict[str, object] = {
        "contender": c.key,
        "contender_label": c.label,
        "workload": args.workload,
        "event_loop": args.loop,
        "tasks": args.n,
        "max_workers": wl.MAX_WORKERS,
    }
    if c.antflow or c.peer:
        meta["antflow_version"] = _antflow_version()
    if args.loop == "uvloop":
        import uvloop

        meta["uvloop_version"] = uvloop.__version__
    return meta


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------


def _timing_main() -> None:
    import pyperf

    def add_cmdline_args(cmd: list[str], args: argparse.Namespace) -> None:
        cmd.extend(
            (
                "--workload",
                args.workload,
                "--contender",
                args.contender,
                "--loop",
                args.loop,
                "--n",
                str(args.n),
            )
        )

    runner = pyperf.Runner(add_cmdline_args=add_cmdline_args)
    _add_spec_args(runner.argparser)
    args = runner.parse_args()
    contender = wl.CONTENDERS[args.contender]
    why = wl.unavailable(contender)
    if why:
        sys.exit(f"{contender.key}: {why}")

    def time_func(loops: int) -> float:
        total = 0.0
        for _ in range(loops):
            seconds, res = wl.run_body(contender, args.workload, args.loop, args.n)
            wl.check_results(contender, args.n, res)  # outside the timed region
            del res
            total += seconds
        return total

    runner.bench_time_func(args.workload, time_func, inner_loops=args.n, metadata=_metadata(args))


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------


def _peak_kib() -> int:
    hwm = status_kib("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _rss_kib() -> int:
    rss = status_kib("VmRSS")
    return rss if rss is not None else _peak_kib()


def _memory_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="peak RSS growth of one batch")
    parser.add_argument("--memory", action="store_true")
    _add_spec_args(parser)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    contender = wl.CONTENDERS[args.contender]

    # warm up: imports, first loop, the executor's one-time costs; not the input size
    seconds, res = wl.run_body(contender, args.workload, args.loop, 1000)
    wl.check_results(contender, 1000, res)
    del res
    import gc

    gc.collect()
    reset = reset_peak()
    rss_before = _rss_kib()
    peak_before = _peak_kib()
    seconds, res = wl.run_body(contender, args.workload, args.loop, args.n)
    peak_after = _peak_kib()
    wl.check_results(contender, args.n, res)
    # Without a reset the old peak (imports, warm-up) may hide part of the growth: the growth
    # is then measured from the older peak, which can only under-report; say so.
    base = rss_before if reset else max(rss_before, peak_before)
    growth = max(0, peak_after - base) * 1024

    import pyperf

    meta = _metadata(args)
    meta.update(
        name=args.workload,
        unit="byte",
        rss_before_kib=rss_before,
        peak_after_kib=peak_after,
        peak_reset=str(reset),
        us_per_task=seconds / args.n * 1e6,
    )
    # pyperf keeps positive values only: no growth at all (the batch ran in pages that the
    # warm-up had already touched, which happens) is stored as 1 byte. The metadata above
    # keeps the exact KiB figures.
    run = pyperf.Run([float(growth) or 1.0], metadata=meta, collect_metadata=True)
    pyperf.Benchmark([run]).dump(args.output, replace=True)
    print(
        f"{contender.key} {args.loop}: peak RSS growth {growth / 2**20:.1f} MiB over "
        f"{args.n:,} inputs ({seconds / args.n * 1e6:.2f} us/task)"
    )


# ----------------------------------------------------------------------------------------------
# spin (for py-spy)
# ----------------------------------------------------------------------------------------------


def _spin_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="repeat a workload (for a profiler)")
    parser.add_argument("--spin", type=float, required=True, metavar="SECONDS")
    _add_spec_args(parser)
    args = parser.parse_args(argv)
    contender = wl.CONTENDERS[args.contender]
    deadline = time.perf_counter() + args.spin
    batches = 0
    spent = 0.0
    while True:
        seconds, res = wl.run_body(contender, args.workload, args.loop, args.n)
        if not batches:
            wl.check_results(contender, args.n, res)  # once: keep the picture about the work
        del res
        batches += 1
        spent += seconds
        if time.perf_counter() >= deadline:
            break
    print(
        f"{contender.key} {args.workload} {args.loop}: {batches} batches of {args.n:,}, "
        f"{spent / (batches * args.n) * 1e6:.2f} us/task (under the profiler)"
    )


def main() -> None:
    argv = sys.argv[1:]
    if "--memory" in argv:
        _memory_main(argv)
    elif "--spin" in argv:
        _spin_main(argv)
    else:
        _timing_main()


if __name__ == "__main__":
    main()
