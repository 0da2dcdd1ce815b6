"""`make bench`: run every (workload, contender, loop) in its own pyperf process, the paired
floor comparisons in one warm process per loop, and report.

    python perf/run.py [--workload W[,W]] [--loop L] [--contender C[,C]] [--pairs K] [--publish]
    python perf/run.py --list               # what would run
    python perf/run.py --contender paired   # only the paired floor comparisons
    python perf/run.py --publish-last       # put the last full run's table into the READMEs
    BENCH_QUICK=1 python perf/run.py        # small sizes, one process per benchmark (smoke test)

Results go to perf/results/: one pyperf JSON file per contender (perf/results/<workload>/
<contender>-<loop>.json, so ``python -m pyperf compare_to --table perf/results/noop/*.json``
works), paired-<loop>.json, table.md (the tables and the targets printed at the end),
summary.json and bench.png.

antflow under development runs on this interpreter; the published antflow 0.10.0 (same import
name) runs on its own virtual environment perf/.venv-peer, made on first use. Environment:
BENCH_QUICK=1 (small sizes), BENCH_PEER=auto|1|0 (create the peer venv: auto = in full runs
only), BENCH_TIMEOUT=seconds (per benchmark process).

The code: harness.py (jobs, processes, the peer venv), registry.py + workloads.py (what is
measured; more rows come from perf/bench_*.py), paired.py, worker.py (the measuring
processes), report.py + chart.py (tables, targets, chart, publishing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import chart
import harness as h
import report
import workloads as wl


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="contenders: " + ", ".join(wl.CONTENDERS) + ", paired",
    )
    p.add_argument("--workload", type=_csv, help=f"comma list or globs of {wl.WORKLOADS}")
    p.add_argument("--loop", type=_csv, help="asyncio, uvloop (threads always run, no loop)")
    p.add_argument(
        "--contender",
        type=_csv,
        help="comma list or globs, e.g. 'antflow-*,floor'; 'paired' selects the paired runs "
        "(which also run when both sides of a pair are selected)",
    )
    p.add_argument(
        "--pairs",
        type=int,
        help=f"pairs per paired comparison (default {h.PAIRS_FULL}, quick {h.PAIRS_QUICK})",
    )
    p.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    p.add_argument(
        "--publish",
        action="store_true",
        help="copy the table and chart into perf/README.md and README.md (full runs only)",
    )
    p.add_argument(
        "--publish-last",
        action="store_true",
        help="publish perf/results/table.md and bench.png of the last run (if full) and exit",
    )
    p.add_argument("--list", action="store_true", help="list the jobs and exit")
    return p.parse_args(argv)


def publish_last() -> int:
    table = h.RESULTS / "table.md"
    if not table.exists() or not (h.RESULTS / "bench.png").exists():
        h.log("--publish-last: no perf/results/table.md / bench.png: run a full bench first")
        return 1
    text = table.read_text(encoding="utf-8")
    if "full sizes" not in text or "- filtered:" in text:
        h.log("--publish-last: the last run was quick or filtered: only a full run is published")
        return 1
    report.publish(text)
    return 0


def header(args: argparse.Namespace, quick: bool, elapsed: float, when: str, facts, notes):
    lines = [
        "# antflow benchmark",
        "",
        f"- date: {when}; {'QUICK (BENCH_QUICK=1) sizes' if quick else 'full sizes'}; "
        f"took {elapsed:.0f} s",
        f"- machine: {report.machine()}",
    ]
    filters = [
        f"--{name} {','.join(value)}"
        for name, value in (
            ("workload", args.workload),
            ("loop", args.loop),
            ("contender", args.contender),
        )
        if value
    ]
    if filters:
        lines.append(f"- filtered: {' '.join(filters)}")
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    if quick:
        settings = f"`{' '.join(h.PYPERF_QUICK)}`"
    else:
        settings = (
            f"`{' '.join(h.PYPERF_FULL)}` for antflow and the floor, "
            f"`{' '.join(h.PYPERF_FULL_SLOW)}` for the others"
        )
    lines += [
        f"- pyperf: {settings}; one value = one batch of n tasks on a fresh loop, "
        "executor created and shut down inside it",
        "- ratio = µs per task of the row / µs per task of the `vs` row on the same loop "
        "(antflow 0.10.0 rows: against the same call of antflow; the thread pool, which "
        "has no loop: against uvloop); the floor targets use the paired ratios",
    ]
    return [*lines, *(f"- note: {n}" for n in notes), ""], bool(filters)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.publish_last:
        return publish_last()
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    quick = wl.quick()
    started = time.perf_counter()
    timeout = float(os.environ.get("BENCH_TIMEOUT", "120" if quick else "600"))
    count = args.pairs or (h.PAIRS_QUICK if quick else h.PAIRS_FULL)
    jobs = h.build_jobs(args.workload, args.contender, args.loop)
    paired = h.build_paired(args.workload, args.contender, args.loop, count)
    if not jobs and not paired:
        h.log("no benchmark matches the filters")
        return 2
    if args.list:
        for j in jobs:
            h.log(f"{j.workload:13} {j.key:26} {j.loop:8} n={j.n:,}")
        sizes = wl.sizes()
        for pj in paired:
            for p in pj.pairs:
                what = f"paired {p.num}/{p.den}"
                h.log(f"{p.workload:13} {what:30} {pj.loop:8} n={sizes[p.workload]:,} x{count}")
        return 0
    notes: list[str] = []
    h.log(
        f"antflow benchmark: {'QUICK' if quick else 'full'} run of {len(jobs)} benchmarks and "
        f"{sum(len(pj.pairs) for pj in paired)} paired comparisons on {report.machine()}"
    )
    facts = h.prepare(jobs, paired, quick, notes)
    for note in notes:
        h.log(f"note: {note}")
    todo = [j for j in jobs if not j.skip]
    for i, job in enumerate(todo, 1):
        t0 = time.perf_counter()
        h.run_job(job, quick, timeout)
        if job.value is None:
            shown = job.error
        elif wl.WORKLOAD[job.workload].kind == "memory":
            shown = f"{job.value / report.MB:.1f} MB peak RSS growth"
        else:
            shown = f"{job.value * 1e6:.3g} µs/task"
        h.log(
            f"[{i:>2}/{len(todo)}] {job.workload:12} {job.key:26} {job.loop:7} "
            f"n={job.n:<9,} {shown}  ({time.perf_counter() - t0:.1f} s)"
        )
    for pj in paired:
        if pj.skip:
            continue
        t0 = time.perf_counter()
        h.run_paired(pj, timeout)
        for r in report.paired_rows([pj]):
            h.log(
                f"[paired] {r['workload']:12} {r['num']}/{r['den']} {pj.loop}: "
                f"{r['ratio_median']:.2f} ({r['ratio_min']:.2f} - {r['ratio_max']:.2f}, "
                f"{r['pairs']} pairs)"
            )
        h.log(f"[paired] {pj.loop} {pj.error or 'done'} ({time.perf_counter() - t0:.1f} s)")
    for j in jobs:
        if j.skip:
            h.log(f"skipped: {j.workload} {j.key} {j.loop}: {j.skip}")

    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    elapsed = time.perf_counter() - started
    lines, filtered = header(args, quick, elapsed, when, facts, notes)
    for w in wl.WORKLOADS:
        lines += report.workload_table(jobs, w)
    lines += report.paired_table(paired)
    lines += report.targets_section(jobs, paired, quick)
    png = chart.chart(
        jobs,
        h.RESULTS / "bench.png",
        f"antflow benchmark, {'QUICK sizes' if quick else 'full sizes'}, {when}, "
        f"{report.machine()}",
    )
    text = "\n".join(lines)
    h.RESULTS.mkdir(parents=True, exist_ok=True)
    (h.RESULTS / "table.md").write_text(text + "\n", encoding="utf-8")
    (h.RESULTS / "summary.json").write_text(report.summary_json(jobs, paired), encoding="utf-8")
    h.log("")
    h.log(text)
    h.log(
        f"written: perf/results/table.md, summary.json, {png}; pyperf JSON under "
        "perf/results/<workload>/ (python -m pyperf compare_to --table perf/results/noop/*.json)"
    )
    if args.publish:
        if quick or filtered:
            h.log("--publish: only a full, unfiltered run is published")
        else:
            report.publish(text)
    h.log(f"done in {time.perf_counter() - started:.0f} s")
    # A smoke test: antflow or a baseline that crashes (or returns wrong results) fails the
    # run; antflow 0.10.0, a guest, never does.
    failed = [f"{j.workload} {j.key} {j.loop}" for j in jobs if j.error and not j.contender.peer]
    failed += [f"paired {pj.loop}" for pj in paired if pj.error]
    if failed:
        h.log(f"{len(failed)} benchmark(s) failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
