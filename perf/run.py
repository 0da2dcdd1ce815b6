"""`make bench`: run every (workload, contender, loop) in its own pyperf process and report.

    python perf/run.py [--workload W[,W]] [--loop L] [--contender C[,C]] [--publish]
    python perf/run.py --publish-last       # put the last full run's table into the README
    BENCH_QUICK=1 python perf/run.py        # small sizes, one process per benchmark (smoke test)

Results go to perf/results/: one pyperf JSON file per contender (perf/results/<workload>/
<contender>-<loop>.json, so ``python -m pyperf compare_to --table perf/results/noop/*.json``
works), table.md (the tables and the targets printed at the end) and bench.png.

antflow under development runs on this interpreter; the published antflow 0.10.0 (same import
name) runs on its own virtual environment perf/.venv-peer, made on first use. Environment:
BENCH_QUICK=1 (small sizes), BENCH_PEER=auto|1|0 (create the peer venv: auto = in full runs
only), BENCH_TIMEOUT=seconds (per benchmark process).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PERF = Path(__file__).resolve().parent
ROOT = PERF.parent
RESULTS = PERF / "results"
PEER_VENV = PERF / ".venv-peer"
PEER_VERSION = "0.10.0"
PEER_STAMP = PEER_VENV / f".installed-antflow-{PEER_VERSION}"
WORKER = PERF / "worker.py"
README = PERF / "README.md"
PUBLISHED_PNG = PERF / "bench-latest.png"

sys.path.insert(0, str(PERF))

import workloads as wl  # noqa: E402

# pyperf settings: each value is a whole batch (100,000 tasks for noop), so a few processes and
# values are enough; `--loops 1` skips pyperf's calibration process. antflow's rows (the
# denominators of every ratio) and the floor are cheap: they get more processes; the slow
# contenders (10-40 us per task) fewer, which keeps a full run within about 12 minutes.
PYPERF_FULL = ["--processes", "6", "--values", "3", "--warmups", "1", "--loops", "1"]
PYPERF_FULL_SLOW = ["--processes", "3", "--values", "3", "--warmups", "1", "--loops", "1"]
PYPERF_QUICK = ["--processes", "1", "--values", "1", "--warmups", "1", "--loops", "1"]


def pyperf_args(contender: wl.Contender, quick: bool) -> list[str]:
    if quick:
        return PYPERF_QUICK
    if contender.antflow or contender.key.startswith("floor"):
        return PYPERF_FULL
    return PYPERF_FULL_SLOW


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# interpreters
# ----------------------------------------------------------------------------------------------


def peer_env() -> dict[str, str]:
    """The environment of antflow 0.10.0's processes: nothing that could reach the repo."""
    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"):
        env.pop(var, None)
    env["PYTHONNOUSERSITE"] = "1"
    return env


def probe(python: str, env: dict[str, str], code: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            [python, "-c", code],
            env=env,
            cwd=str(PERF),
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
    return proc.returncode == 0, (out[-1] if out else "")


_PROBE_ANTFLOW = (
    "import antflow, os; antflow.AsyncExecutor; "
    "print(getattr(antflow, '__version__', '?'), os.path.dirname(antflow.__file__))"
)
_PROBE_UVLOOP = "import uvloop; print(uvloop.__version__)"


def peer_python(quick: bool) -> tuple[str | None, str]:
    """The peer venv's interpreter (made on first use), or None and why not."""
    py = PEER_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    policy = os.environ.get("BENCH_PEER", "auto").lower()
    if policy in ("0", "no", "never", "off"):
        return None, "BENCH_PEER=0: the antflow 0.10.0 contenders are skipped"
    if not (PEER_STAMP.exists() and py.exists()):
        if quick and policy == "auto":
            return None, (
                f"{PEER_VENV.relative_to(ROOT)} does not exist and BENCH_QUICK does not "
                "create it (run a full `make bench` once, or BENCH_PEER=1): the "
                "antflow 0.10.0 contenders are skipped"
            )
        log(
            f"creating {PEER_VENV.relative_to(ROOT)} with antflow=={PEER_VERSION} "
            "(first use only) ..."
        )
        shutil.rmtree(PEER_VENV, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(PEER_VENV)],
            [
                str(py),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"antflow=={PEER_VERSION}",
                "pyperf",
            ],
        ]
        for cmd in steps:
            try:
                proc = subprocess.run(
                    cmd, env=peer_env(), capture_output=True, text=True, timeout=900
                )
                ok, err = proc.returncode == 0, proc.stderr.strip()
            except (OSError, subprocess.TimeoutExpired) as exc:
                ok, err = False, str(exc)
            if not ok:
                shutil.rmtree(PEER_VENV, ignore_errors=True)
                last = err.splitlines()[-1] if err else "no message"
                return None, (
                    f"could not install antflow=={PEER_VERSION} in its own venv "
                    f"({' '.join(cmd[-3:])}: {last}): the antflow 0.10.0 contenders "
                    "are skipped"
                )
        # uvloop is optional: without it the peer runs on asyncio only
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uvloop"],
            env=peer_env(),
            capture_output=True,
            timeout=900,
        )
        PEER_STAMP.touch()
    ok, out = probe(str(py), peer_env(), _PROBE_ANTFLOW)
    if not ok or not out.startswith(PEER_VERSION) or str(PEER_VENV) not in out:
        return None, (
            f"the peer venv does not import antflow {PEER_VERSION} from itself ({out}); "
            f"delete {PEER_VENV.relative_to(ROOT)} to rebuild it: peer skipped"
        )
    return str(py), f"antflow {out}"


# ----------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    workload: str
    contender: wl.Contender
    loop: str
    n: int
    suffix: str = ""  # for a second size of the same contender
    python: str = ""
    env: dict[str, str] = field(default_factory=dict)
    skip: str = ""
    error: str = ""
    value: float | None = None  # median: seconds per task, or bytes for memory
    stdev: float | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.contender.key + self.suffix

    @property
    def loop_file(self) -> str:
        return "noloop" if self.loop == wl.NO_LOOP else self.loop

    @property
    def output(self) -> Path:
        return RESULTS / self.workload / f"{self.key}-{self.loop_file}.json"

    @property
    def label(self) -> str:
        if self.suffix:
            return f"{self.contender.label} (n={self.n:,})"
        return self.contender.label


def _matches(value: str, patterns: list[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


def build_jobs(args: argparse.Namespace, quick: bool) -> list[Job]:
    sizes = wl.sizes()
    jobs: list[Job] = []
    for workload in wl.WORKLOADS:
        if not _matches(workload, args.workload):
            continue
        for key in wl.MATRIX[workload]:
            contender = wl.CONTENDERS[key]
            if not _matches(key, args.contender):
                continue
            for loop in wl.loops_for(contender):
                if loop != wl.NO_LOOP and not _matches(loop, args.loop):
                    continue
                n = sizes[workload]
                if key == "peer-as_completed":
                    n = min(n, wl.PEER_AS_COMPLETED_CAP)
                jobs.append(Job(workload, contender, loop, n))
                if key == "antflow-as_completed":
                    jobs.append(
                        Job(
                            workload,
                            contender,
                            loop,
                            n * wl.AS_COMPLETED_SCALE,
                            suffix=f"-x{wl.AS_COMPLETED_SCALE}",
                        )
                    )
    return jobs


def _git_state() -> str:
    """`, commit abc1234 (+ uncommitted changes)` when the repo is a git work tree."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=20,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "antflow"],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if head.returncode != 0:
        return ""
    extra = " + uncommitted changes to antflow/" if dirty.stdout.strip() else ""
    return f", commit {head.stdout.strip()}{extra}"


def prepare(jobs: list[Job], quick: bool, notes: list[str]) -> dict[str, str]:
    """Pick each job's interpreter, or mark it skipped. Returns facts for the report."""
    facts: dict[str, str] = {}
    repo_env = dict(os.environ)
    need_repo = any(not j.contender.peer for j in jobs)
    need_antflow = any(j.contender.antflow for j in jobs)
    need_peer = any(j.contender.peer for j in jobs)

    antflow_ok, antflow_info = (False, "not needed")
    if need_antflow:
        antflow_ok, antflow_info = probe(sys.executable, repo_env, _PROBE_ANTFLOW)
        if antflow_ok and str(ROOT / "antflow") not in antflow_info:
            notes.append(
                f"`import antflow` on {sys.executable} gives {antflow_info}, "
                "not this repository's antflow/: antflow contenders skipped "
                "(run through `make bench`, or set PYTHONPATH to the repo)"
            )
            antflow_ok = False
        elif not antflow_ok:
            notes.append(
                f"antflow (this repo) is not importable ({antflow_info}): "
                "antflow contenders skipped"
            )
        facts["antflow"] = antflow_info + _git_state()
    repo_uvloop = need_repo and probe(sys.executable, repo_env, _PROBE_UVLOOP)[0]

    peer_py: str | None = None
    peer_uvloop = False
    if need_peer:
        peer_py, peer_info = peer_python(quick)
        if peer_py is None:
            notes.append(peer_info)
        else:
            facts["peer"] = peer_info
            peer_uvloop = probe(peer_py, peer_env(), _PROBE_UVLOOP)[0]

    for job in jobs:
        c = job.contender
        if c.peer:
            job.python, job.env = peer_py or "", peer_env()
            if peer_py is None:
                job.skip = "antflow 0.10.0 unavailable (see notes)"
            elif job.loop == "uvloop" and not peer_uvloop:
                job.skip = "uvloop not importable in the peer venv"
            continue
        job.python, job.env = sys.executable, repo_env
        why = wl.unavailable(c)
        if why:
            job.skip = why
        elif c.antflow and not antflow_ok:
            job.skip = "antflow not importable (see notes)"
        elif job.loop == "uvloop" and not repo_uvloop:
            job.skip = "uvloop not importable"
    if any(j.skip.startswith("needs Python") for j in jobs):
        notes.append(
            f"asyncio.TaskGroup needs Python 3.11+: skipped on {platform.python_version()}"
        )
    return facts


def run_job(job: Job, quick: bool, timeout: float) -> None:
    job.output.parent.mkdir(parents=True, exist_ok=True)
    for stale in (job.output, job.output.with_suffix(".log")):
        if stale.exists():
            stale.unlink()
    spec = [
        "--workload",
        job.workload,
        "--contender",
        job.contender.key,
        "--loop",
        job.loop,
        "--n",
        str(job.n),
    ]
    if job.workload == "memory":
        cmd = [job.python, str(WORKER), "--memory", *spec, "-o", str(job.output)]
    else:
        cmd = [
            job.python,
            str(WORKER),
            *spec,
            "--quiet",
            "-o",
            str(job.output),
            *pyperf_args(job.contender, quick),
        ]
        if not job.contender.peer and job.env.get("PYTHONPATH"):
            cmd += ["--inherit-environ", "PYTHONPATH"]
    try:
        proc = subprocess.run(
            cmd, env=job.env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        job.error = f"timed out after {timeout:.0f} s"
        return
    if proc.returncode != 0 or not job.output.exists():
        job.error = f"failed (exit {proc.returncode}): {_last_error(proc.stderr + proc.stdout)}"
        log_path = job.output.with_suffix(".log")
        log_path.write_text(proc.stdout + proc.stderr, encoding="utf-8")
        return
    load_result(job)


def _last_error(output: str) -> str:
    """The worker's own exception, not pyperf's "... failed with exit code" wrapper."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln and "failed with exit code" not in ln]
    return ((errors or lines or ["no output"])[-1])[:200]


def load_result(job: Job) -> None:
    import pyperf

    bench = pyperf.Benchmark.load(str(job.output))
    job.value = bench.median()
    job.stdev = bench.stdev() if bench.get_nvalue() > 1 else None
    meta = bench.get_metadata()
    job.extra = {
        k: meta[k] for k in ("antflow_version", "us_per_task", "uvloop_version") if k in meta
    }
    version = str(meta.get("antflow_version", ""))
    if job.contender.peer and not version.startswith(PEER_VERSION):
        job.error = f"ran antflow {version}, not {PEER_VERSION}: result discarded"
        job.value = None
    elif job.contender.antflow and str(ROOT / "antflow") not in version:
        job.error = f"ran antflow {version}, not this repository's: result discarded"
        job.value = None


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def _find(jobs: list[Job], workload: str, key: str, loop: str) -> Job | None:
    for j in jobs:
        if j.workload == workload and j.key == key and j.loop == loop and j.value is not None:
            return j
    return None


def _baseline(jobs: list[Job], job: Job) -> Job | None:
    key = job.contender.matching if job.contender.peer else wl.BASELINE[job.workload]
    if job.suffix:
        key = job.contender.key
    if job.loop == wl.NO_LOOP:
        return _find(jobs, job.workload, key, "uvloop") or _find(jobs, job.workload, key, "asyncio")
    return _find(jobs, job.workload, key, job.loop)


def _ratio_label(base: Job) -> str:
    return f"{base.label}, {base.loop}"


def fmt_us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def workload_table(jobs: list[Job], workload: str) -> list[str]:
    rows = [j for j in jobs if j.workload == workload]
    if not rows:
        return []
    ns = sorted({j.n for j in rows if not j.suffix})
    head = ", ".join(f"{n:,}" for n in ns)
    out = [f"### {workload} (n = {head}, max_workers = {wl.MAX_WORKERS})", ""]
    if workload == "memory":
        out += [
            "| contender | loop | n | peak RSS growth (MiB) | µs per task | vs |",
            "| --- | --- | ---: | ---: | ---: | --- |",
        ]
    else:
        out += [
            "| contender | loop | n | µs per task (median) | ± std dev | ratio | vs |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
    for j in rows:
        if j.value is None:
            why = j.skip or j.error or "no result"
            dash = "— | —" if workload == "memory" else "— | — | —"
            out.append(f"| {j.label} | {j.loop} | {j.n:,} | {dash} | {why} |")
            continue
        if workload == "memory":
            us = j.extra.get("us_per_task")
            us_s = f"{float(us):.2f}" if isinstance(us, (int, float)) else "—"
            out.append(
                f"| {j.label} | {j.loop} | {j.n:,} | {j.value / 2**20:.1f} | {us_s} | "
                f"target ≤ 30 MiB |"
            )
            continue
        base = _baseline(jobs, j)
        ratio = f"{j.value / base.value:.2f}" if base and base.value else "n/a"
        vs = _ratio_label(base) if base else "antflow not measured"
        std = fmt_us(j.stdev) if j.stdev is not None else "—"
        out.append(
            f"| {j.label} | {j.loop} | {j.n:,} | {fmt_us(j.value)} | {std} | {ratio} | {vs} |"
        )
    out.append("")
    return out


@dataclass
class Target:
    text: str
    workload: str
    num: str
    den: str | None  # None: an absolute value (memory, MiB)
    op: str
    limit: float


TARGETS = [
    Target(
        "antflow 0.10.0 / antflow, `submit`, noop",
        "noop",
        "peer-submit",
        "antflow-submit",
        ">=",
        20,
    ),
    Target("antflow 0.10.0 / antflow, `map`, noop", "noop", "peer-map", "antflow-map", ">=", 20),
    Target(
        "TaskGroup+Semaphore / antflow `map`, noop", "noop", "taskgroup", "antflow-map", ">=", 5
    ),
    Target("ThreadPoolExecutor / antflow `map`, noop", "noop", "threads", "antflow-map", ">=", 10),
    Target("antflow `map` / hand-written floor, yield", "yield", "antflow-map", "floor", "<=", 1.5),
    Target(
        "antflow `map_iter` / hand-written floor, yield",
        "yield",
        "antflow-map_iter",
        "floor",
        "<=",
        1.5,
    ),
    Target("antflow `map` / hand-written floor, io", "io", "antflow-map", "floor", "<=", 1.1),
    Target(
        "antflow 0.10.0 / antflow, `as_completed`",
        "as_completed",
        "peer-as_completed",
        "antflow-as_completed",
        ">=",
        50,
    ),
    Target(
        "antflow `as_completed` per task at 10x n / at n (linear waiting)",
        "as_completed",
        f"antflow-as_completed-x{wl.AS_COMPLETED_SCALE}",
        "antflow-as_completed",
        "<=",
        1.5,
    ),
    Target(
        "peak RSS growth (MiB), `map_iter` over the memory workload's inputs",
        "memory",
        "antflow-map_iter-drain",
        None,
        "<=",
        30,
    ),
]


def _for_target(jobs: list[Job], workload: str, key: str) -> Job | None:
    return _find(jobs, workload, key, "uvloop") or _find(jobs, workload, key, wl.NO_LOOP)


def targets_section(jobs: list[Job], quick: bool) -> tuple[list[str], int, int]:
    out = ["### targets (uvloop; bench.md)", ""]
    if quick:
        out += ["BENCH_QUICK sizes: indicative only, the targets are defined at full sizes.", ""]
    out += ["| ratio | target | measured | status |", "| --- | --- | ---: | --- |"]
    met = total = 0
    for t in TARGETS:
        num = _for_target(jobs, t.workload, t.num)
        den = _for_target(jobs, t.workload, t.den) if t.den else None
        target = f"{'≥' if t.op == '>=' else '≤'} {t.limit:g}"
        if num is None or (t.den and den is None):
            out.append(f"| {t.text} | {target} | — | not measured |")
            continue
        assert num.value is not None
        if t.den is None:
            value = num.value / 2**20
            shown = f"{value:.1f} MiB (n={num.n:,})"
        else:
            assert den is not None and den.value is not None
            value = num.value / den.value
            shown = f"{value:.2f}"
            if num.n != den.n:
                shown += f" (n={num.n:,} vs {den.n:,})"
        ok = value >= t.limit if t.op == ">=" else value <= t.limit
        total += 1
        met += ok
        out.append(f"| {t.text} | {target} | {shown} | {'met' if ok else '**NOT met**'} |")
    out += ["", f"{met} of {total} measured targets met.", ""]
    return out, met, total


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


def chart(jobs: list[Job], path: Path, title: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    workloads = [
        w for w in wl.WORKLOADS if any(j.workload == w and j.value is not None for j in jobs)
    ]
    if not workloads:
        return "no results: no chart"
    colors = {
        "antflow": "#1f77b4",
        "peer": "#ff7f0e",
        "floor": "#2ca02c",
        "threads": "#d62728",
        "asyncio": "#7f7f7f",
    }

    def family(j: Job) -> str:
        c = j.contender
        if c.peer:
            return "peer"
        if c.antflow:
            return "antflow"
        if c.key.startswith("floor"):
            return "floor"
        if not c.is_async:
            return "threads"
        return "asyncio"

    heights = [
        max(2.0, 0.32 * sum(1 for j in jobs if j.workload == w and j.value is not None) + 1.0)
        for w in workloads
    ]
    fig, axes = plt.subplots(
        len(workloads),
        1,
        figsize=(10, sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, w in zip(axes[:, 0], workloads, strict=True):
        rows = [j for j in jobs if j.workload == w and j.value is not None]
        labels = [f"{j.label} [{j.loop}]" for j in rows]
        if w == "memory":
            values = [(j.value or 0.0) / 2**20 for j in rows]
            unit = "peak RSS growth, MiB (log; bars start at 0.01)"
        else:
            values = [(j.value or 0.0) * 1e6 for j in rows]
            unit = "µs per task, median (log)"
        drawn = [max(v, 0.01) for v in values]
        bars = ax.barh(range(len(rows)), drawn, color=[colors[family(j)] for j in rows])
        ax.set_yticks(range(len(rows)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(unit, fontsize=8)
        ax.set_title(f"{w} (n={max(j.n for j in rows if not j.suffix):,})", fontsize=10)
        ax.bar_label(bars, [f"{v:.3g}" for v in values], fontsize=7, padding=2)
        ax.margins(x=0.15)
    import matplotlib.patches as mpatches

    names = {
        "antflow": "antflow (this repo)",
        "peer": "antflow 0.10.0",
        "asyncio": "plain asyncio",
        "floor": "hand-written floor",
        "threads": "ThreadPoolExecutor",
    }
    handles = [mpatches.Patch(color=colors[k], label=v) for k, v in names.items()]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=len(handles))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.4 / sum(heights), 1, 1 - 0.45 / sum(heights)))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(ROOT))


def _fill_markers(path: Path, body: str) -> bool:
    """Replace what stands between the bench markers of ``path`` with ``body``."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    text = path.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        log(f"--publish: markers {begin} / {end} not found in {path}")
        return False
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(f"{head}{begin}\n{body}\n{end}{tail}", encoding="utf-8")
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
    chart = PUBLISHED_PNG.relative_to(ROOT)
    return (
        "\n".join(
            [
                *header,
                "",
                *targets,
                "",
                f"![bench chart]({chart})",
                "",
                "Every workload and contender, with µs per task: [perf/README.md](perf/README.md).",
            ]
        ).strip()
        + "\n"
    )


def publish(report: str) -> None:
    body = report.replace("# antflow benchmark", "", 1).strip()
    body += f"\n\n![bench chart]({PUBLISHED_PNG.name})\n"
    if not _fill_markers(README, body):
        return
    _fill_markers(ROOT / "README.md", _summary(report))
    shutil.copyfile(RESULTS / "bench.png", PUBLISHED_PNG)
    log(
        f"published the table in {README.relative_to(ROOT)} and the chart as "
        f"{PUBLISHED_PNG.relative_to(ROOT)}"
    )


# ----------------------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="contenders: " + ", ".join(wl.CONTENDERS),
    )
    p.add_argument("--workload", type=_csv, help=f"comma list or globs of {wl.WORKLOADS}")
    p.add_argument("--loop", type=_csv, help="asyncio, uvloop (threads always run, no loop)")
    p.add_argument("--contender", type=_csv, help="comma list or globs, e.g. 'antflow-*,floor'")
    p.add_argument("--quick", action="store_true", help="same as BENCH_QUICK=1")
    p.add_argument(
        "--publish",
        action="store_true",
        help="copy the table and chart into perf/README.md (full runs only)",
    )
    p.add_argument(
        "--publish-last",
        action="store_true",
        help="publish perf/results/table.md and bench.png of the last run (if full) and exit",
    )
    p.add_argument("--list", action="store_true", help="list the jobs and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.publish_last:
        table = RESULTS / "table.md"
        if not table.exists() or not (RESULTS / "bench.png").exists():
            log(f"--publish-last: no {table.relative_to(ROOT)} / bench.png: run a full bench first")
            return 1
        report = table.read_text(encoding="utf-8")
        if "full sizes" not in report or "- filtered:" in report:
            log("--publish-last: the last run was quick or filtered: only a full run is published")
            return 1
        publish(report)
        return 0
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    quick = wl.quick()
    started = time.perf_counter()
    timeout = float(os.environ.get("BENCH_TIMEOUT", "120" if quick else "600"))
    jobs = build_jobs(args, quick)
    if not jobs:
        log("no benchmark matches the filters")
        return 2
    if args.list:
        for j in jobs:
            log(f"{j.workload:13} {j.key:26} {j.loop:8} n={j.n:,}")
        return 0
    notes: list[str] = []
    log(
        f"antflow benchmark: {'QUICK' if quick else 'full'} run of {len(jobs)} benchmarks "
        f"on {machine()}"
    )
    facts = prepare(jobs, quick, notes)
    for note in notes:
        log(f"note: {note}")
    todo = [j for j in jobs if not j.skip]
    for i, job in enumerate(todo, 1):
        t0 = time.perf_counter()
        run_job(job, quick, timeout)
        took = time.perf_counter() - t0
        if job.value is None:
            shown = job.error
        elif job.workload == "memory":
            shown = f"{job.value / 2**20:.1f} MiB peak RSS growth"
        else:
            shown = f"{job.value * 1e6:.3g} µs/task"
        log(
            f"[{i:>2}/{len(todo)}] {job.workload:12} {job.key:26} {job.loop:7} "
            f"n={job.n:<9,} {shown}  ({took:.1f} s)"
        )
    for j in jobs:
        if j.skip:
            log(f"skipped: {j.workload} {j.key} {j.loop}: {j.skip}")

    elapsed = time.perf_counter() - started
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# antflow benchmark",
        "",
        f"- date: {when}; {'QUICK (BENCH_QUICK=1) sizes' if quick else 'full sizes'}; "
        f"took {elapsed:.0f} s",
        f"- machine: {machine()}",
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
        settings = f"`{' '.join(PYPERF_QUICK)}`"
    else:
        settings = (
            f"`{' '.join(PYPERF_FULL)}` for antflow and the floor, "
            f"`{' '.join(PYPERF_FULL_SLOW)}` for the others"
        )
    lines += [
        f"- pyperf: {settings}; one value = one batch of n tasks on a fresh loop, "
        "executor created and shut down inside it",
        "- ratio = µs per task of the row / µs per task of the `vs` row on the same loop "
        "(antflow 0.10.0 rows: against the same call of antflow; the thread pool, which "
        "has no loop: against uvloop)",
    ]
    lines += [f"- note: {n}" for n in notes]
    lines.append("")
    for w in wl.WORKLOADS:
        lines += workload_table(jobs, w)
    target_lines, _, _ = targets_section(jobs, quick)
    lines += target_lines
    png = chart(
        jobs,
        RESULTS / "bench.png",
        f"antflow benchmark, {'QUICK sizes' if quick else 'full sizes'}, {when}, {machine()}",
    )
    report = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table.md").write_text(report + "\n", encoding="utf-8")
    (RESULTS / "summary.json").write_text(
        json.dumps(
            [
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
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    log("")
    log(report)
    log(
        f"written: {(RESULTS / 'table.md').relative_to(ROOT)}, {png}; pyperf JSON under "
        f"{RESULTS.relative_to(ROOT)}/<workload>/ "
        f"(python -m pyperf compare_to --table perf/results/noop/*.json)"
    )
    if args.publish:
        if quick or filters:
            log("--publish: only a full, unfiltered run is published")
        else:
            publish(report)
    log(f"done in {time.perf_counter() - started:.0f} s")
    # A smoke test: antflow or a baseline that crashes (or returns wrong results) fails the
    # run; antflow 0.10.0, a guest, never does.
    failed = [j for j in jobs if j.error and not j.contender.peer]
    if failed:
        log(
            f"{len(failed)} benchmark(s) failed: "
            + ", ".join(f"{j.workload} {j.key} {j.loop}" for j in failed)
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
