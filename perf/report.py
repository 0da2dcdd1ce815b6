"""The report of `make bench`: per-workload tables, the paired ratios, the targets, the chart,
summary.json, and publishing into the READMEs (between ``<!-- bench:begin/end -->``).

Published text names no machine path: antflow is shown by version and git commit.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
from pathlib import Path

import harness as h
import workloads as wl

README = h.PERF / "README.md"
PUBLISHED_PNG = h.PERF / "bench-latest.png"
MB = 1e6


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


# ----------------------------------------------------------------------------------------------
# pyperf tables
# ----------------------------------------------------------------------------------------------


def find(jobs: list[h.Job], workload: str, key: str, loop: str) -> h.Job | None:
    for j in jobs:
        if j.workload == workload and j.key == key and j.loop == loop and j.value is not None:
            return j
    return None


def baseline(jobs: list[h.Job], job: h.Job) -> h.Job | None:
    c = job.contender
    key = (c.matching or wl.BASELINE[job.workload]) if c.peer else wl.BASELINE[job.workload]
    if job.suffix:
        key = c.key
    if job.loop == wl.NO_LOOP:
        return find(jobs, job.workload, key, "uvloop") or find(jobs, job.workload, key, "asyncio")
    return find(jobs, job.workload, key, job.loop)


def _memory_limit() -> str:
    for t in wl.TARGETS:
        if t.workload == "memory" and t.source == "value":
            return f"target {'≥' if t.op == '>=' else '≤'} {t.limit:g} {t.unit}"
    return ""


def workload_table(jobs: list[h.Job], workload: str) -> list[str]:
    rows = [j for j in jobs if j.workload == workload]
    if not rows:
        return []
    memory = wl.WORKLOAD[workload].kind == "memory"
    ns = ", ".join(f"{n:,}" for n in sorted({j.n for j in rows if not j.suffix}))
    out = [f"### {workload} (n = {ns}, max_workers = {wl.MAX_WORKERS})", ""]
    if memory:
        out += ["| contender | loop | n | peak RSS growth (MB) | µs per task | vs |"]
        out += ["| --- | --- | ---: | ---: | ---: | --- |"]
    else:
        out += ["| contender | loop | n | µs per task (median) | ± std dev | ratio | vs |"]
        out += ["| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for j in rows:
        if j.value is None:
            why = j.skip or j.error or "no result"
            dash = "— | —" if memory else "— | — | —"
            out.append(f"| {j.label} | {j.loop} | {j.n:,} | {dash} | {why} |")
        elif memory:
            us = j.extra.get("us_per_task")
            us_s = f"{float(us):.2f}" if isinstance(us, (int, float)) else "—"
            out.append(
                f"| {j.label} | {j.loop} | {j.n:,} | {j.value / MB:.1f} | {us_s} | "
                f"{_memory_limit()} |"
            )
        else:
            base = baseline(jobs, j)
            ratio = f"{j.value / base.value:.2f}" if base and base.value else "n/a"
            vs = f"{base.label}, {base.loop}" if base else "antflow not measured"
            std = fmt_us(j.stdev) if j.stdev is not None else "—"
            out.append(
                f"| {j.label} | {j.loop} | {j.n:,} | {fmt_us(j.value)} | {std} | {ratio} | {vs} |"
            )
    out.append("")
    return out


# ----------------------------------------------------------------------------------------------
# paired ratios
# ----------------------------------------------------------------------------------------------


def paired_rows(paired: list[h.PairedJob]) -> list[dict[str, object]]:
    """One row per (pair, loop) with a result: the per-pair ratios and their median."""
    rows = []
    for pj in paired:
        for r in pj.results:
            num_s, den_s = r.get("num_s"), r.get("den_s")
            if not (isinstance(num_s, list) and isinstance(den_s, list) and num_s):
                continue
            ratios = [a / b for a, b in zip(num_s, den_s, strict=True)]
            n = int(r["n"])  # type: ignore[call-overload]
            rows.append(
                {
                    "workload": r["workload"],
                    "num": r["num"],
                    "den": r["den"],
                    "loop": pj.loop,
                    "n": n,
                    "pairs": len(ratios),
                    "ratio_median": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "num_us": statistics.median(num_s) / n * 1e6,
                    "den_us": statistics.median(den_s) / n * 1e6,
                }
            )
    order = {w: i for i, w in enumerate(wl.WORKLOADS)}
    rows.sort(key=lambda r: (order[str(r["workload"])], str(r["den"]), str(r["num"]), r["loop"]))
    return rows


def find_paired(rows: list[dict[str, object]], t: wl.Target, loop: str) -> dict | None:
    for r in rows:
        if (r["workload"], r["num"], r["den"], r["loop"]) == (t.workload, t.num, t.den, loop):
            return r
    return None


def paired_table(paired: list[h.PairedJob]) -> list[str]:
    if not paired:
        return []
    rows = paired_rows(paired)
    count = paired[0].count
    out = [
        "### paired: antflow / the floor (and other pairs), alternating in one warm process "
        f"({count} pairs)",
        "",
        "One process and one event loop per loop kind; each pair times one batch of n tasks of "
        "both (order alternating, `gc.collect()` before each batch, outside the clock). "
        "ratio = median of the per-pair ratios, with their range.",
        "",
        "| workload | contender | vs | loop | n | pairs | ratio (median) | min - max "
        "| µs per task | vs µs per task |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        num, den = wl.CONTENDERS[str(r["num"])], wl.CONTENDERS[str(r["den"])]
        out.append(
            f"| {r['workload']} | {num.label} | {den.label} | {r['loop']} | {r['n']:,} "
            f"| {r['pairs']} | {r['ratio_median']:.2f} | {r['ratio_min']:.2f} - "
            f"{r['ratio_max']:.2f} | {r['num_us']:.2f} | {r['den_us']:.2f} |"
        )
    for pj in paired:
        for r in pj.results:
            why = r.get("error") or r.get("skip")
            if why:
                num, den = wl.CONTENDERS[str(r["num"])], wl.CONTENDERS[str(r["den"])]
                out.append(
                    f"| {r['workload']} | {num.label} | {den.label} | {pj.loop} | {r['n']:,} "
                    f"| — | — | {str(why)[:160]} | | |"
                )
        if pj.skip or (pj.error and not pj.results):
            out.append(f"| — | all | — | {pj.loop} | | — | — | {pj.skip or pj.error} | | |")
    return [*out, ""]


# ----------------------------------------------------------------------------------------------
# targets
# ----------------------------------------------------------------------------------------------


def _for_target(jobs: list[h.Job], workload: str, key: str) -> h.Job | None:
    return find(jobs, workload, key, "uvloop") or find(jobs, workload, key, wl.NO_LOOP)


def _measure(t: wl.Target, jobs: list[h.Job], rows: list[dict]) -> tuple[float, str] | None:
    """(value, how it is shown) of one target, or None when not measured."""
    if t.source == "paired":
        r = find_paired(rows, t, "uvloop")
        if r is None:
            return None
        med, lo, hi = r["ratio_median"], r["ratio_min"], r["ratio_max"]
        return med, f"{med:.2f} (paired, {r['pairs']} pairs: {lo:.2f} - {hi:.2f})"
    num = _for_target(jobs, t.workload, t.num)
    if num is None or num.value is None:
        return None
    if t.den is None:
        value = num.value / t.scale
        return value, f"{value:.1f} {t.unit} (n={num.n:,})"
    den = _for_target(jobs, t.workload, t.den)
    if den is None or den.value is None:
        return None
    value = num.value / den.value
    shown = f"{value:.2f}" + (f" (n={num.n:,} vs {den.n:,})" if num.n != den.n else "")
    return value, shown


def targets_section(jobs: list[h.Job], paired: list[h.PairedJob], quick: bool) -> list[str]:
    out = ["### targets (uvloop; bench.md)", ""]
    if quick:
        out += ["BENCH_QUICK sizes: indicative only, the targets are defined at full sizes.", ""]
    out += ["| ratio | target | measured | status |", "| --- | --- | ---: | --- |"]
    rows = paired_rows(paired)
    met = total = 0
    for t in wl.TARGETS:
        target = f"{'≥' if t.op == '>=' else '≤'} {t.limit:g}{' ' + t.unit if t.unit else ''}"
        got = _measure(t, jobs, rows)
        if got is None:
            out.append(f"| {t.text} | {target} | — | not measured |")
            continue
        value, shown = got
        ok = value >= t.limit if t.op == ">=" else value <= t.limit
        total += 1
        met += ok
        out.append(f"| {t.text} | {target} | {shown} | {'met' if ok else '**NOT met**'} |")
    return [*out, "", f"{met} of {total} measured targets met.", ""]


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def summary_json(jobs: list[h.Job], paired: list[h.PairedJob]) -> str:
    data = {
        "pyperf": [
            {
                "workload": j.workload,
                "contender": j.key,
                "loop": j.loop,
                "n": j.n,
                "value": j.value,
                "stdev": j.stdev,
                "skip": j.skip,
                "error": j.error,
            }
            for j in jobs
        ],
        "paired": paired_rows(paired),
        "paired_errors": {pj.loop: pj.skip or pj.error for pj in paired if pj.skip or pj.error},
    }
    return json.dumps(data, indent=1) + "\n"


def _fill_markers(path: Path, body: str) -> bool:
    """Replace what stands between the bench markers of ``path`` with ``body``."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        h.log(f"--publish: markers {begin} / {end} not found in {path.name}")
        return False
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{h.rel(body)}\n{end}{tail}", encoding="utf-8")
    return True


def _summary(report: str) -> str:
    """The project README's part: the run's header lines, the targets, the chart."""
    lines = report.splitlines()
    header = [line for line in lines if line.startswith(("- date", "- machine", "- antflow:"))]
    targets: list[str] = []
    for line in lines:
        if line.startswith("### targets"):
            targets = [line]
        elif targets:
            if line.startswith("### "):
                break
            targets.append(line)
    png = PUBLISHED_PNG.relative_to(h.ROOT)
    parts = [*header, "", *targets, "", f"![bench chart]({png})", ""]
    parts.append(
        "Every workload and contender, with µs per task: [perf/README.md](perf/README.md)."
    )
    return "\n".join(parts).strip() + "\n"


def publish(report: str) -> None:
    body = report.replace("# antflow benchmark", "", 1).strip()
    body += f"\n\n![bench chart]({PUBLISHED_PNG.name})\n"
    if not _fill_markers(README, body):
        return
    _fill_markers(h.ROOT / "README.md", _summary(report))
    shutil.copyfile(h.RESULTS / "bench.png", PUBLISHED_PNG)
    h.log("published the table in perf/README.md and README.md, the chart as perf/bench-latest.png")
