"""Paired runs: a contender and its reference alternate in one warm process, on one event loop.

    python perf/paired.py --loop uvloop [--workload yield,io] [--pairs 7] -o paired-uvloop.json

For every registered pair (``registry.PAIRS``: antflow's map, map_iter and, on noop, submit
against the hand-written floor) on the chosen workloads: one untimed warm-up batch of each, then
``--pairs`` pairs, each timing one batch of n tasks of both (the order alternates from pair to
pair; ``gc.collect()`` before every batch, outside the clock). A pair's ratio is the
contender's time over the reference's; the report takes the median of the per-pair ratios, so
drift of the machine (other processes, frequency changes) cancels instead of landing on one
side. Every batch's results are checked outside the clock.

Launched by perf/run.py (on the repository's interpreter); writes JSON, no pyperf.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads as wl


async def measure(pair: wl.reg.Pair, n: int, pairs: int) -> dict[str, object]:
    num, den = wl.CONTENDERS[pair.num], wl.CONTENDERS[pair.den]
    times: dict[str, list[float]] = {num.key: [], den.key: []}
    for c in (den, num):  # warm-up: imports, first executor, caches
        _, res = await wl.reg.timed_batch(c, pair.workload, n)
        wl.check_results(c, n, res)
    for i in range(pairs):
        for c in (den, num) if i % 2 == 0 else (num, den):
            res = []  # drop the last batch's results before collecting
            gc.collect()
            seconds, res = await wl.reg.timed_batch(c, pair.workload, n)
            wl.check_results(c, n, res)
            times[c.key].append(seconds)
    return {"num_s": times[num.key], "den_s": times[den.key]}


def _antflow() -> dict[str, str]:
    import antflow

    return {
        "antflow_version": str(getattr(antflow, "__version__", "?")),
        "antflow_dir": os.path.dirname(antflow.__file__),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", required=True, choices=wl.LOOPS)
    p.add_argument("--workload", help="comma list (default: every workload with pairs)")
    p.add_argument("--pairs", type=int, default=3 if wl.quick() else 7)
    p.add_argument("--only", help="comma list of 'workload:num/den' to run (default: all)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args(argv)
    chosen = set(args.workload.split(",")) if args.workload else None
    only = set(args.only.split(",")) if args.only else None
    todo = [
        pair
        for pair in wl.PAIRS
        if (chosen is None or pair.workload in chosen)
        and (only is None or f"{pair.workload}:{pair.num}/{pair.den}" in only)
    ]
    todo.sort(key=lambda pair: wl.WORKLOADS.index(pair.workload))
    sizes = wl.sizes()
    out: dict[str, object] = {"loop": args.loop, "pairs": args.pairs, **_antflow()}
    if args.loop == "uvloop":
        import uvloop

        out["uvloop_version"] = uvloop.__version__
    results = []
    failed = False
    loop = wl.new_loop(args.loop)
    try:
        for pair in todo:
            n = sizes[pair.workload]
            row: dict[str, object] = {
                "workload": pair.workload,
                "num": pair.num,
                "den": pair.den,
                "n": n,
            }
            t0 = time.perf_counter()
            why = wl.unavailable(wl.CONTENDERS[pair.num]) or wl.unavailable(wl.CONTENDERS[pair.den])
            if why:
                row["skip"] = why
            else:
                try:
                    row.update(loop.run_until_complete(measure(pair, n, args.pairs)))
                except Exception as exc:
                    row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    failed = True
            row["took_s"] = time.perf_counter() - t0
            results.append(row)
    finally:
        loop.close()
    out["results"] = results
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
