"""The harness of `make bench`: the jobs, their interpreters (the peer venv), the processes.

One pyperf process per (workload, contender, loop) runs perf/worker.py; one process per event
loop runs the paired comparisons (perf/paired.py). Nothing here formats results: report.py does.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PERF = Path(__file__).resolve().parent
ROOT = PERF.parent
RESULTS = PERF / "results"
PEER_VENV = PERF / ".venv-peer"
PEER_VERSION = "0.10.0"
PEER_STAMP = PEER_VENV / f".installed-antflow-{PEER_VERSION}"
WORKER = PERF / "worker.py"
PAIRED = PERF / "paired.py"

sys.path.insert(0, str(PERF))

import workloads as wl  # noqa: E402

# pyperf settings: each value is a whole batch (100,000 tasks for noop), so a few processes and
# values are enough; `--loops 1` skips pyperf's calibration process. antflow's rows (the
# denominators of every ratio) and the floor are cheap: they get more processes; the slow
# contenders (10-40 us per task) fewer, which keeps a full run within about 12 minutes.
PYPERF_FULL = ["--processes", "6", "--values", "3", "--warmups", "1", "--loops", "1"]
PYPERF_FULL_SLOW = ["--processes", "3", "--values", "3", "--warmups", "1", "--loops", "1"]
PYPERF_QUICK = ["--processes", "1", "--values", "1", "--warmups", "1", "--loops", "1"]
PAIRS_FULL, PAIRS_QUICK = 7, 3


def log(msg: str = "") -> None:
    print(msg, flush=True)


def rel(text: str) -> str:
    """``text`` with this checkout's and the home folder's paths made relative: what the
    published results may show (they name no machine path)."""
    text = text.replace(str(ROOT) + os.sep, "").replace(str(ROOT), ".")
    home = os.path.expanduser("~")
    return text.replace(home, "~") if home not in ("", "/") else text


def pyperf_args(contender: wl.Contender, quick: bool) -> list[str]:
    if quick:
        return PYPERF_QUICK
    if contender.antflow or contender.group == "floor":
        return PYPERF_FULL
    return PYPERF_FULL_SLOW


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


# prints "<version> <folder of the package>"; the folder is checked, never published
PROBE_ANTFLOW = (
    "import antflow, os; antflow.AsyncExecutor; "
    "print(getattr(antflow, '__version__', '?'), os.path.dirname(antflow.__file__))"
)
PROBE_UVLOOP = "import uvloop; print(uvloop.__version__)"


def _pip(py: Path, *what: str) -> list[str]:
    return [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *what]


def peer_python(quick: bool) -> tuple[str | None, str]:
    """The peer venv's interpreter (made on first use), or None and why not."""
    py = PEER_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    where = PEER_VENV.relative_to(ROOT)
    policy = os.environ.get("BENCH_PEER", "auto").lower()
    if policy in ("0", "no", "never", "off"):
        return None, "BENCH_PEER=0: the antflow 0.10.0 contenders are skipped"
    if not (PEER_STAMP.exists() and py.exists()):
        if quick and policy == "auto":
            return None, (
                f"{where} does not exist and BENCH_QUICK does not create it (run a full "
                "`make bench` once, or BENCH_PEER=1): the antflow 0.10.0 contenders are skipped"
            )
        log(f"creating {where} with antflow=={PEER_VERSION} (first use only) ...")
        shutil.rmtree(PEER_VENV, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(PEER_VENV)],
            _pip(py, f"antflow=={PEER_VERSION}", "pyperf"),
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
                return None, rel(
                    f"could not install antflow=={PEER_VERSION} in its own venv "
                    f"({' '.join(cmd[-3:])}: {last}): the antflow 0.10.0 contenders are skipped"
                )
        # uvloop is optional: without it the peer runs on asyncio only
        subprocess.run(_pip(py, "uvloop"), env=peer_env(), capture_output=True, timeout=900)
        PEER_STAMP.touch()
    ok, out = probe(str(py), peer_env(), PROBE_ANTFLOW)
    if not ok or not out.startswith(PEER_VERSION) or str(PEER_VENV) not in out:
        return None, rel(
            f"the peer venv does not import antflow {PEER_VERSION} from itself ({out}); "
            f"delete {where} to rebuild it: peer skipped"
        )
    return str(py), f"antflow {PEER_VERSION} from the package index, in its own venv ({where})"


def git_state() -> str:
    """`, commit abc1234 (+ uncommitted changes)` when the repo is a git work tree."""

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=str(ROOT), capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return ""
    dirty = " + uncommitted changes to antflow/" if git("status", "--porcelain", "antflow") else ""
    return f", commit {head}{dirty}"


# ----------------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One pyperf process: (workload, contender, loop) at size n."""

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
    def output(self) -> Path:
        loop = "noloop" if self.loop == wl.NO_LOOP else self.loop
        return RESULTS / self.workload / f"{self.key}-{loop}.json"

    @property
    def label(self) -> str:
        if self.suffix:
            return f"{self.contender.label} (n={self.n:,})"
        return self.contender.label


@dataclass
class PairedJob:
    """One process running the paired comparisons of some workloads on one loop."""

    loop: str
    pairs: list[wl.reg.Pair]
    count: int  # pairs per comparison
    skip: str = ""
    error: str = ""
    results: list[dict[str, object]] = field(default_factory=list)

    @property
    def output(self) -> Path:
        return RESULTS / f"paired-{self.loop}.json"


def matches(value: str, patterns: list[str] | None) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


def build_jobs(
    workload: list[str] | None, contender: list[str] | None, loop: list[str] | None
) -> list[Job]:
    """The pyperf jobs the filters select (comma lists of shell globs; None: all)."""
    sizes = wl.sizes()
    jobs: list[Job] = []
    for w in wl.WORKLOADS:
        if not matches(w, workload):
            continue
        spec = wl.WORKLOAD[w]
        for key in wl.MATRIX[w]:
            c = wl.CONTENDERS[key]
            if not matches(key, contender):
                continue
            for lp in wl.loops_for(c):
                if lp != wl.NO_LOOP and not matches(lp, loop):
                    continue
                n = min(sizes[w], spec.caps.get(key, sizes[w]))
                jobs.append(Job(w, c, lp, n))
                if key in spec.scaled:
                    k = spec.scaled[key]
                    jobs.append(Job(w, c, lp, n * k, suffix=f"-x{k}"))
    return jobs


def build_paired(
    workload: list[str] | None, contender: list[str] | None, loop: list[str] | None, count: int
) -> list[PairedJob]:
    """Paired jobs: a pair runs when the contender filter takes 'paired' or both its sides."""
    pairs = [
        p
        for p in wl.PAIRS
        if matches(p.workload, workload)
        and (
            matches("paired", contender)
            or (matches(p.num, contender) and matches(p.den, contender))
        )
    ]
    if not pairs:
        return []
    pairs.sort(key=lambda p: wl.WORKLOADS.index(p.workload))
    return [PairedJob(lp, pairs, count) for lp in wl.LOOPS if matches(lp, loop)]


def prepare(
    jobs: list[Job], paired: list[PairedJob], quick: bool, notes: list[str]
) -> dict[str, str]:
    """Pick each job's interpreter, or mark it skipped. Returns facts for the report."""
    facts: dict[str, str] = {}
    repo_env = dict(os.environ)
    need_antflow = any(j.contender.antflow for j in jobs) or bool(paired)
    need_peer = any(j.contender.peer for j in jobs)

    antflow_ok = False
    if need_antflow:
        antflow_ok, info = probe(sys.executable, repo_env, PROBE_ANTFLOW)
        if antflow_ok and str(ROOT / "antflow") not in info:
            notes.append(
                rel(
                    f"`import antflow` on {sys.executable} gives {info}, not this repository's "
                    "antflow/: antflow contenders skipped (run through `make bench`)"
                )
            )
            antflow_ok = False
        elif not antflow_ok:
            notes.append(rel(f"antflow (this repo) is not importable ({info}): skipped"))
        version = info.split()[0] if antflow_ok and info else "not importable"
        facts["antflow"] = version + git_state()
    repo_uvloop = probe(sys.executable, repo_env, PROBE_UVLOOP)[0]

    peer_py: str | None = None
    peer_uvloop = False
    if need_peer:
        peer_py, peer_info = peer_python(quick)
        if peer_py is None:
            notes.append(peer_info)
        else:
            facts["peer"] = peer_info
            peer_uvloop = probe(peer_py, peer_env(), PROBE_UVLOOP)[0]

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
    for pj in paired:
        if not antflow_ok:
            pj.skip = "antflow not importable (see notes)"
        elif pj.loop == "uvloop" and not repo_uvloop:
            pj.skip = "uvloop not importable"
    if any(j.skip.startswith("needs Python") for j in jobs):
        notes.append(
            f"asyncio.TaskGroup needs Python 3.11+: skipped on {platform.python_version()}"
        )
    for name, why in wl.reg.PLUGIN_ERRORS.items():
        notes.append(rel(f"perf/{name}.py could not be imported ({why}): its rows are missing"))
    return facts


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[int | None, str]:
    """(exit code, output); None as the code when it timed out."""
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None, ""
    return proc.returncode, proc.stdout + proc.stderr


def last_error(output: str) -> str:
    """The worker's own exception, not pyperf's "... failed with exit code" wrapper."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln and "failed with exit code" not in ln]
    return rel(((errors or lines or ["no output"])[-1])[:200])


def run_job(job: Job, quick: bool, timeout: float) -> None:
    job.output.parent.mkdir(parents=True, exist_ok=True)
    for stale in (job.output, job.output.with_suffix(".log")):
        stale.unlink(missing_ok=True)
    spec = ["--workload", job.workload, "--contender", job.contender.key, "--loop", job.loop]
    spec += ["--n", str(job.n)]
    if wl.WORKLOAD[job.workload].kind == "memory":
        cmd = [job.python, str(WORKER), "--memory", *spec, "-o", str(job.output)]
    else:
        cmd = [job.python, str(WORKER), *spec, "--quiet", "-o", str(job.output)]
        cmd += pyperf_args(job.contender, quick)
        if not job.contender.peer and job.env.get("PYTHONPATH"):
            cmd += ["--inherit-environ", "PYTHONPATH"]
    code, output = _run(cmd, job.env, timeout)
    if code is None:
        job.error = f"timed out after {timeout:.0f} s"
    elif code != 0 or not job.output.exists():
        job.error = f"failed (exit {code}): {last_error(output)}"
        job.output.with_suffix(".log").write_text(output, encoding="utf-8")
    else:
        load_result(job)


def load_result(job: Job) -> None:
    import pyperf

    bench = pyperf.Benchmark.load(str(job.output))
    job.value = bench.median()
    job.stdev = bench.stdev() if bench.get_nvalue() > 1 else None
    meta = bench.get_metadata()
    job.extra = {k: meta[k] for k in ("us_per_task", "uvloop_version") if k in meta}
    version = str(meta.get("antflow_version", ""))  # "<version> (<folder>)": checked only
    if job.contender.peer and not version.startswith(PEER_VERSION):
        job.error = f"ran antflow {rel(version)}, not {PEER_VERSION}: result discarded"
        job.value = None
    elif job.contender.antflow and str(ROOT / "antflow") not in version:
        job.error = f"ran antflow {rel(version)}, not this repository's: result discarded"
        job.value = None


def run_paired(pj: PairedJob, timeout: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    pj.output.unlink(missing_ok=True)
    workloads = ",".join(dict.fromkeys(p.workload for p in pj.pairs))
    only = ",".join(f"{p.workload}:{p.num}/{p.den}" for p in pj.pairs)
    cmd = [sys.executable, str(PAIRED), "--loop", pj.loop, "--workload", workloads]
    cmd += ["--only", only, "--pairs", str(pj.count), "-o", str(pj.output)]
    code, output = _run(cmd, dict(os.environ), timeout)
    if code is None:
        pj.error = f"timed out after {timeout:.0f} s"
        return
    if not pj.output.exists():
        pj.error = f"failed (exit {code}): {last_error(output)}"
        return
    data = json.loads(pj.output.read_text(encoding="utf-8"))
    if str(ROOT / "antflow") != data.get("antflow_dir"):
        pj.error = "ran another antflow than this repository's: results discarded"
        return
    pj.results = list(data.get("results", []))
    failed = [r for r in pj.results if r.get("error")]
    if failed:
        pj.error = f"{len(failed)} comparison(s) failed (see the table)"
        for r in failed:
            r["error"] = rel(str(r["error"]))
