"""`make loadtest`: a real service under a real load generator.

    python scripts/loadtest.py [--quick] [--duration S] [--rounds N] [--contender a,b]
                               [--delay S] [--peer auto|1|0] [--no-install]

A Starlette app on uvicorn (uvloop, one worker; perf/service/) fans every request out to
20 calls of a downstream aiohttp service (perf/service/downstream.py, 2 ms per call) through
one process-wide limit of 100 calls in flight, written four ways: antflow's `map` on one
`AsyncExecutor`, `asyncio.gather` + a shared `Semaphore`, `TaskGroup` + the semaphore, and
the published antflow 0.10.0 (from its own virtual environment, perf/.venv-peer-service).
Every server runs in a process of its own on 127.0.0.1; the load comes from Debian's `wrk`
(saturation: requests per second) and `h2load` (open-loop arrivals at fixed rates: p50 /
p99 / p99.9). The mixed case measures the fan-out endpoint's latency while a large
background fan-out keeps the same pool busy.

Results: a Markdown table printed at the end and written to perf/results/loadtest.md, the
same figures in perf/results/loadtest.json, a chart in perf/results/loadtest.png, and the
servers' and tools' logs in perf/results/loadtest/. Targets are reported as met or not met;
the exit status is non-zero only when a contender failed to run (a server that did not
start, wrong results, transport errors or non-2xx answers under load), or when the load
generators are missing and cannot be installed.

Environment: LOADTEST_QUICK=1 (short runs, under a minute: the CI smoke test; antflow
0.10.0 and the TaskGroup mixed case are skipped), LOADTEST_PEER=auto|1|0 (run antflow 0.10.0,
making its environment when missing: auto = in full runs only), LOADTEST_DURATION=seconds
per round. perf/README.md ("Load test") says how each figure is measured, and why.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "perf" / "service"
SERVE = SERVICE / "serve.py"
RESULTS = ROOT / "perf" / "results"
LOGS = RESULTS / "loadtest"
PEER_VENV = ROOT / "perf" / ".venv-peer-service"
PEER_VERSION = "0.10.0"
PEER_PACKAGES = [f"antflow=={PEER_VERSION}", "uvloop", "starlette", "uvicorn", "aiohttp"]
# uvicorn parses HTTP with httptools when it is installed, else with h11 (several times
# slower): the peer gets the same parser as the development environment.
if importlib.util.find_spec("httptools") is not None:
    PEER_PACKAGES.append("httptools")
PEER_STAMP = PEER_VENV / f".installed-antflow-{PEER_VERSION}"

FANOUT = 20  # downstream calls per request (perf/service/service_app.py)
HTTP_PARSER = "httptools" if importlib.util.find_spec("httptools") else "h11"
EXPECTED = {"results": [i * i for i in range(FANOUT)]}
APT_PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client"}

# The marker the wrk script's done() hook prints before its JSON line.
WRK_MARK = "LOADTEST_JSON "
WRK_SCRIPT = """\
-- Written by scripts/loadtest.py: print wrk's summary as one JSON line.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %.0f, "mean": %.1f, "max": %.0f, ' ..
    '"p50": %.0f, "p90": %.0f, "p99": %.0f, "p99.9": %.0f}}\\n',
    "LOADTEST_JSON ", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


# ----------------------------------------------------------------------------------------------
# Contenders
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Contender:
    key: str  # command line, file names
    label: str  # the table
    mode: str  # the app's endpoint: /fanout/<mode>
    peer: bool = False  # served by antflow 0.10.0's interpreter


CONTENDERS = (
    Contender("gather", "gather+Semaphore", "gather"),
    Contender("antflow", "antflow", "antflow"),
    Contender("taskgroup", "TaskGroup+Semaphore", "taskgroup"),
    Contender("antflow-0.10.0", "antflow 0.10.0", "antflow", peer=True),
)
BASELINE = "gather"  # offered rates are fractions of its saturation rate


# ----------------------------------------------------------------------------------------------
# Parsing the load generators' output
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Measurement:
    """One run of a load generator against one endpoint."""

    tool: str
    requests: int  # responses received
    seconds: float
    rps: float  # responses per second (wrk) or arrivals per second (h2load)
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    errors: int  # transport errors and failed or timed-out requests
    non_2xx: int
    offered_rps: float | None = None  # h2load: the arrival rate asked for
    note: str = ""
    latencies_ms: list[float] = dataclasses.field(default_factory=list, repr=False)  # h2load
    timed_out: int = 0  # h2load with censor_after: requests still unanswered at the end
    app_cpu: float | None = None  # the app process's CPU seconds per second of the run
    app_cpu_ms_per_request: float | None = None

    @property
    def failed(self) -> bool:
        return self.errors > 0 or self.non_2xx > 0 or self.requests + self.timed_out == 0


def parse_wrk(stdout: str) -> Measurement:
    """wrk's output with the JSON line that WRK_SCRIPT's done() hook prints."""
    for line in stdout.splitlines():
        if line.startswith(WRK_MARK):
            data = json.loads(line[len(WRK_MARK) :])
            break
    else:
        raise ValueError("no LOADTEST_JSON line in wrk's output (was the script loaded?)")
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    errors = data["errors"]
    return Measurement(
        tool="wrk",
        requests=int(data["requests"]),
        seconds=seconds,
        rps=data["requests"] / seconds if seconds > 0 else 0.0,
        p50_ms=lat["p50"] / 1000,
        p99_ms=lat["p99"] / 1000,
        p999_ms=lat["p99.9"] / 1000,
        errors=sum(int(errors[k]) for k in ("connect", "read", "write", "timeout")),
        non_2xx=int(errors["status"]),
    )


_H2_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout"
)
_H2_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_H2_FINISHED = re.compile(r"finished in ([\d.]+)(ms|s|us), ([\d.]+) req/s")


def parse_h2load_summary(stdout: str) -> dict[str, Any]:
    """The counts in h2load's closing summary."""
    requests = _H2_REQUESTS.search(stdout)
    status = _H2_STATUS.search(stdout)
    finished = _H2_FINISHED.search(stdout)
    if not (requests and status and finished):
        raise ValueError("h2load's summary is missing (did it run?)")
    total, started, done, succeeded, failed, errored, timeout = map(int, requests.groups())
    value, unit = float(finished.group(1)), finished.group(2)
    seconds = value * {"s": 1.0, "ms": 1e-3, "us": 1e-6}[unit]
    return {
        "total": total,
        "started": started,
        "done": done,
        "succeeded": succeeded,
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "2xx": int(status.group(1)),
        "3xx": int(status.group(2)),
        "4xx": int(status.group(3)),
        "5xx": int(status.group(4)),
        "seconds": seconds,
        "rps": float(finished.group(3)),
    }


def parse_h2load_log(text: str) -> list[tuple[int, int, int]]:
    """h2load's --log-file rows: (start µs since the epoch, HTTP status or -1, elapsed µs)."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        start, status, elapsed = line.split("\t")[:3]
        rows.append((int(start), int(status), int(elapsed)))
    return rows


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p * len(sorted_values) / 100 - 1e-9))  # no float rounding up
    return sorted_values[rank - 1]


def h2load_measurement(
    stdout: str, log_text: str, offered_rps: float, censor_after: float | None = None
) -> Measurement:
    """One h2load run. With ``censor_after`` (h2load's -T, seconds), a request that timed out
    is not an error but an answer slower than every other (an infinite latency), so the
    percentiles it reaches read "timed out"; without it, a timeout is an error."""
    summary = parse_h2load_summary(stdout)
    rows = parse_h2load_log(log_text)
    ok = sorted(elapsed / 1000 for _, status, elapsed in rows if 200 <= status < 300)
    censored = summary["timeout"] if censor_after is not None else 0
    ok += [math.inf] * censored  # h2load logs no row for them
    starts = sorted(start for start, _, _ in rows)
    span = (starts[-1] - starts[0]) / 1e6 if len(starts) > 1 else 0.0
    arrival_rps = (len(starts) - 1) / span if span > 0 else 0.0
    note = ""
    if arrival_rps and arrival_rps < 0.95 * offered_rps:
        note = f"arrivals lagged: {arrival_rps:.0f}/s of {offered_rps:.0f}/s offered"
    responses = sum(summary[k] for k in ("2xx", "3xx", "4xx", "5xx"))
    if censored:
        waited = f"{censored} still unanswered after {censor_after:g} s, counted as slower"
        note = f"{note}; {waited}" if note else waited
    return Measurement(
        tool="h2load",
        requests=len(ok) - censored,
        seconds=span,
        rps=arrival_rps,
        p50_ms=percentile(ok, 50) if ok else None,
        p99_ms=percentile(ok, 99) if ok else None,
        p999_ms=percentile(ok, 99.9) if ok else None,
        errors=summary["total"] - responses - censored,  # no answer: refused, reset, timed out
        non_2xx=responses - summary["2xx"],
        offered_rps=offered_rps,
        note=note,
        latencies_ms=ok,
        timed_out=censored,
    )


def pooled(parts: Sequence[Measurement]) -> Measurement:
    """Several h2load runs at one rate as one: their latencies pooled, their counts summed."""
    ok = sorted(x for m in parts for x in m.latencies_ms)  # censored ones included, as inf
    seconds = sum(m.seconds for m in parts)
    notes = sorted({m.note for m in parts if m.note})
    return Measurement(
        tool="h2load",
        requests=sum(m.requests for m in parts),
        seconds=seconds,
        rps=statistics.fmean(m.rps for m in parts),
        p50_ms=percentile(ok, 50) if ok else None,
        p99_ms=percentile(ok, 99) if ok else None,
        p999_ms=percentile(ok, 99.9) if ok else None,
        errors=sum(m.errors for m in parts),
        timed_out=sum(m.timed_out for m in parts),
        non_2xx=sum(m.non_2xx for m in parts),
        offered_rps=parts[0].offered_rps,
        note="; ".join(notes),
        latencies_ms=ok,
    )


def rate_schedule(rps: float, max_period_ms: int = 2000) -> tuple[int, int]:
    """(connections, period in ms) for h2load's --rate/--rate-period closest to ``rps``.

    h2load takes whole milliseconds; of the pairs that come within 1% of the rate, the one
    with the shortest period wins (the smoothest arrivals).
    """
    best: tuple[float, int, int] | None = None
    for period in range(1, max_period_ms + 1):
        n = max(1, round(rps * period / 1000))
        error = abs(n * 1000 / period - rps) / rps
        if error <= 0.01:
            return n, period
        if best is None or error < best[0]:
            best = (error, n, period)
    assert best is not None
    return best[1], best[2]


# ----------------------------------------------------------------------------------------------
# Processes: every one in its own process group, stopped in a finally, every wait bounded
# ----------------------------------------------------------------------------------------------


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM to the process group, then SIGKILL if it is still there after ``grace``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


def run_bounded(argv: list[str], timeout: float, log: Path) -> tuple[int, str]:
    """Run a load generator; its output goes to ``log`` and is returned. Killed at ``timeout``."""
    with open(log, "w+") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = -1
            out.write(f"\n[loadtest] killed after {timeout:.0f} s\n")
        finally:
            stop_process(proc)
        out.seek(0)
        return code, out.read()


def listening_socket() -> socket.socket:
    """A socket listening on 127.0.0.1, on a port the kernel picks; handed to a server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def http(method: str, url: str, timeout: float = 10.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return response.status, json.loads(body)
    except ValueError:
        return response.status, body.decode(errors="replace")


class Server:
    """One server process (the app or the downstream service), stopped on exit."""

    def __init__(self, name: str, python: str, args: list[str], *, peer: bool = False) -> None:
        self.name = name
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if peer:  # nothing may lead 0.10.0's interpreter to the repository's antflow
            for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
                env.pop(var, None)
            env["PYTHONNOUSERSITE"] = "1"
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        fd = self.sock.fileno()
        try:
            self.proc = subprocess.Popen(
                [python, str(SERVE), *args, "--fd", str(fd)],
                pass_fds=[fd], cwd=str(SERVICE), env=env, stdin=subprocess.DEVNULL,
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            self.sock.close()  # the child has its own copy

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                status, body = http("GET", f"{self.url}/health", timeout=2.0)
                if status == 200:
                    return body if isinstance(body, dict) else {}
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start; see {self.log_path.relative_to(ROOT)}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux), else None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 15.0) -> None:
        """Until the app serves no request: what one run left behind is not the next one's."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = http("GET", f"{self.url}/health", timeout=5.0)
            if status == 200 and body.get("in_flight") == 0:
                time.sleep(0.2)
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} was still serving {timeout:.0f} s after its load ended")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------------
# The tools and the peer environment
# ----------------------------------------------------------------------------------------------


def ensure_tools(install: bool) -> str | None:
    """None when wrk and h2load are there (installed with apt-get if need be), else why not."""
    missing = [tool for tool in APT_PACKAGES if shutil.which(tool) is None]
    if not missing:
        return None
    packages = " ".join(APT_PACKAGES[tool] for tool in missing)
    how = f"sudo apt-get install -y {packages}   (Debian/Ubuntu; the tools: {', '.join(missing)})"
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if install and can_apt:
        print(f"installing {packages} with apt-get ...", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", *packages.split()],
        ):
            try:
                subprocess.run(argv, env=env, timeout=600, check=False, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                break
        missing = [tool for tool in APT_PACKAGES if shutil.which(tool) is None]
        if not missing:
            return None
    return f"the load generators are missing ({', '.join(missing)}). Install them with:\n  {how}"


def peer_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def peer_python(quick: bool, policy: str) -> tuple[str | None, str]:
    """antflow 0.10.0's interpreter (its environment made when missing), or None and why."""
    py = PEER_VENV / "bin" / "python"
    if policy in ("0", "no", "never", "off"):
        return None, "LOADTEST_PEER=0"
    if quick and policy == "auto":  # it would not fit in the quick run's minute
        return None, "not run in quick runs (LOADTEST_PEER=1 runs it)"
    wanted = " ".join(PEER_PACKAGES)  # the stamp names what was installed
    if not (py.exists() and PEER_STAMP.exists() and PEER_STAMP.read_text() == wanted):
        print(f"making {PEER_VENV.relative_to(ROOT)}: pip install {' '.join(PEER_PACKAGES)}")
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=300)
            subprocess.run(
                [str(py), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
                check=True, timeout=900, env=peer_env(), cwd=tempfile.gettempdir(),
            )  # fmt: skip
            PEER_STAMP.write_text(wanted)
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"its environment could not be made ({exc})"
    return str(py), ""


# ----------------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Settings:
    quick: bool
    duration: float  # seconds per measurement (one round of one contender)
    warmup: float  # seconds of wrk before the first measurement of each app, not recorded
    rounds: int  # saturation rounds: every contender once per round (medians reported)
    fixed_rounds: int  # rounds at each fixed rate (latencies pooled)
    mixed_duration: float  # seconds of the mixed case's measurement
    connections: int  # wrk's connections at saturation
    rates: tuple[float, ...]  # offered rates, as fractions of the baseline's saturation
    mixed_rate: float  # the mixed case's offered rate, as a fraction of the same
    mixed_contenders: tuple[str, ...]
    delay: float  # the downstream service's delay per call, seconds
    max_workers: int


def wrk_run(url: str, seconds: float, connections: int, script: Path, log: Path) -> Measurement:
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "-s", str(script), url,
    ]  # fmt: skip
    code, out = run_bounded(argv, timeout=seconds + 30, log=log)
    if code != 0:
        raise RuntimeError(f"wrk exited with {code}; see {log.relative_to(ROOT)}")
    return parse_wrk(out)


class H2load:
    """An open-loop run: one new connection and one request every 1/rate seconds."""

    def __init__(
        self, url: str, rps: float, seconds: float, patience: float, log: Path,
        censor: bool = False,
    ) -> None:  # fmt: skip
        self.per_period, self.period_ms = rate_schedule(rps)
        self.offered = self.per_period * 1000 / self.period_ms
        self.n = max(1, round(self.offered * seconds))
        self.seconds = seconds
        self.patience = max(1, math.ceil(patience))  # h2load's -T: whole seconds
        self.censor_after = float(self.patience) if censor else None
        self.log = log
        self.request_log = log.with_suffix(".requests.tsv")
        self.request_log.unlink(missing_ok=True)  # h2load appends to it
        self.argv = [
            "h2load", "--h1", "-t1", "-c", str(self.n), "-n", str(self.n),
            "--rate", str(self.per_period), "--rate-period", f"{self.period_ms}ms",
            "-T", str(self.patience), "--log-file", str(self.request_log), url,
        ]  # fmt: skip
        self.out = open(log, "w+")  # noqa: SIM115 - closed by result() or abandon()
        self.proc = subprocess.Popen(
            self.argv, stdout=self.out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def result(self) -> Measurement:
        try:
            code = self.proc.wait(self.seconds + self.patience + 30)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            stop_process(self.proc)
        self.out.seek(0)
        stdout = self.out.read()
        self.out.close()
        if code != 0:
            raise RuntimeError(f"h2load exited with {code}; see {self.log.relative_to(ROOT)}")
        text = self.request_log.read_text() if self.request_log.exists() else ""
        return h2load_measurement(stdout, text, self.offered, self.censor_after)

    def abandon(self) -> None:
        stop_process(self.proc)
        self.out.close()


def check_app(contender: Contender, info: dict[str, Any], url: str) -> None:
    """The app imported the right antflow and answers the 20 right results."""
    antflow_file = str(info.get("antflow_file", ""))
    if contender.peer:
        if info.get("antflow") != PEER_VERSION or not antflow_file.startswith(str(PEER_VENV)):
            raise RuntimeError(f"the peer app imported {info.get('antflow')} from {antflow_file}")
    elif not antflow_file.startswith(str(ROOT / "antflow")):
        raise RuntimeError(f"the app imported antflow from {antflow_file}, not this repository")
    if info.get("http") != HTTP_PARSER:
        raise RuntimeError(f"the app parses HTTP with {info.get('http')}, not {HTTP_PARSER}")
    if contender.mode not in info.get("modes", ()):
        raise RuntimeError(f"this Python has no {contender.mode} mode")
    status, body = http("GET", f"{url}/fanout/{contender.mode}")
    if status != 200 or body != EXPECTED:
        raise RuntimeError(f"/fanout/{contender.mode} answered {status} {body!r}")


@dataclasses.dataclass
class Outcome:
    contender: Contender
    saturation_rounds: list[tuple[int, Measurement]] = dataclasses.field(default_factory=list)
    fixed_rounds: dict[float, list[Measurement]] = dataclasses.field(default_factory=dict)
    mixed: Measurement | None = None
    background: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""
    skipped: str = ""

    @property
    def saturation(self) -> list[Measurement]:
        return [m for _, m in self.saturation_rounds]

    @property
    def saturation_rps(self) -> float | None:
        values = [m.rps for m in self.saturation]
        return statistics.median(values) if values else None

    @property
    def fixed(self) -> dict[float, Measurement]:
        return {f: pooled(parts) for f, parts in self.fixed_rounds.items() if parts}

    def failures(self) -> list[str]:
        out = [self.error] if self.error else []
        runs = [m for parts in self.fixed_rounds.values() for m in parts]
        for m in [*self.saturation, *runs, *([self.mixed] if self.mixed else [])]:
            if m.failed:
                out.append(f"{m.tool}: {m.errors} errors, {m.non_2xx} non-2xx, {m.requests} ok")
        return out


def paired_ratio(a: Outcome, b: Outcome) -> float | None:
    """The median over rounds of a's requests/s divided by b's in the same round."""
    b_by_round = dict(b.saturation_rounds)
    ratios = [m.rps / b_by_round[r].rps for r, m in a.saturation_rounds if r in b_by_round]
    return statistics.median(ratios) if ratios else None


def paired_cpu_ratio(a: Outcome, b: Outcome) -> float | None:
    """The median over rounds of b's app CPU per request divided by a's in the same round."""
    b_by_round = dict(b.saturation_rounds)
    ratios = [
        b_by_round[r].app_cpu_ms_per_request / m.app_cpu_ms_per_request  # type: ignore[operator]
        for r, m in a.saturation_rounds
        if r in b_by_round and m.app_cpu_ms_per_request and b_by_round[r].app_cpu_ms_per_request
    ]
    return statistics.median(ratios) if ratios else None


class Run:
    def __init__(self, settings: Settings, contenders: list[Contender], peer_py: str | None):
        self.s = settings
        self.contenders = contenders
        self.peer_py = peer_py
        self.outcomes = {c.key: Outcome(c) for c in contenders}
        self.wrk_script = LOGS / "wrk-report.lua"
        self.downstream: Server | None = None
        self.mixed_background_n = 0
        self.mixed_patience = 0.0
        self.revision = antflow_revision()  # before the run: antflow/ may change during it
        self.mixed_offered = 0.0

    def python(self, contender: Contender) -> str:
        return self.peer_py if contender.peer and self.peer_py else sys.executable

    def start_app(self, contender: Contender, tag: str) -> Server:
        """An app process for the contender, starting (see ready())."""
        assert self.downstream is not None
        args = ["app", "--downstream", self.downstream.url, "--http", HTTP_PARSER,
                "--max-workers", str(self.s.max_workers)]  # fmt: skip
        return Server(
            f"app-{contender.key}-{tag}", self.python(contender), args, peer=contender.peer
        )

    def ready(self, server: Server, contender: Contender) -> Server:
        """Wait until the app answers, and check it; stopped if it does not."""
        try:
            info = server.wait_ready()
            check_app(contender, info, server.url)
        except BaseException:
            server.stop()
            raise
        return server

    def app(self, contender: Contender, tag: str) -> Server:
        return self.ready(self.start_app(contender, tag), contender)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def execute(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.wrk_script.write_text(WRK_SCRIPT)
        self.downstream = Server(
            "downstream", sys.executable, ["downstream", "--delay", str(self.s.delay)]
        )
        with running(self.downstream):
            self.downstream.wait_ready()
            # One app per contender for the saturation and fixed-rate rounds, all started at
            # once: an idle app costs nothing, and rounds can alternate between contenders.
            with contextlib.ExitStack() as stack:
                starting = {}  # all start at once: their imports overlap
                for outcome in self.live():
                    c = outcome.contender
                    try:
                        starting[c.key] = stack.enter_context(running(self.start_app(c, "run")))
                    except Exception as exc:
                        self.fail(outcome, "start", exc)
                apps: dict[str, Server] = {}
                for outcome in self.live():
                    c = outcome.contender
                    try:
                        apps[c.key] = self.ready(starting[c.key], c)
                        self.warm_up(apps[c.key], c)
                    except Exception as exc:
                        self.fail(outcome, "start", exc)
                self.saturation_phase(apps)
                self.fixed_phase(apps)
            self.mixed_phase()

    def warm_up(self, app: Server, c: Contender) -> None:
        log = LOGS / f"wrk-{c.key}-warmup-{app.name}.log"
        wrk_run(f"{app.url}/fanout/{c.mode}", self.s.warmup, self.s.connections,
                self.wrk_script, log)  # fmt: skip
        app.wait_idle()

    def fail(self, outcome: Outcome, phase: str, exc: Exception) -> None:
        outcome.error = f"{phase}: {exc}"
        self.say(f"  {outcome.contender.label}: FAILED ({phase}) {exc}")

    def live(self) -> list[Outcome]:
        return [o for o in self.outcomes.values() if not (o.error or o.skipped)]

    def rotation(self, round_no: int) -> list[Outcome]:
        """The contenders in a different order each round, so none is always first."""
        live = self.live()
        k = round_no % len(live) if live else 0
        return live[k:] + live[:k]

    def saturation_phase(self, apps: dict[str, Server]) -> None:
        s = self.s
        for round_no in range(s.rounds):
            for outcome in self.rotation(round_no):
                c = outcome.contender
                try:
                    app = apps[c.key]
                    log = LOGS / f"wrk-{c.key}-{round_no}.log"
                    cpu = app.cpu_seconds()
                    m = wrk_run(f"{app.url}/fanout/{c.mode}", s.duration, s.connections,
                                self.wrk_script, log)  # fmt: skip
                    _, health = http("GET", f"{app.url}/health")
                    app.wait_idle()  # what the last connections left behind is not the next's
                    cpu_after = app.cpu_seconds()
                    served = m.requests + int(health.get("in_flight", 0))  # + those cut off
                    if cpu is not None and cpu_after is not None and served:
                        m.app_cpu_ms_per_request = (cpu_after - cpu) * 1000 / served
                        m.app_cpu = m.app_cpu_ms_per_request * m.rps / 1000
                    outcome.saturation_rounds.append((round_no, m))
                except Exception as exc:
                    self.fail(outcome, "saturation", exc)
                    continue
                self.say(
                    f"  round {round_no + 1}/{s.rounds} saturation {c.label:<20} "
                    f"{m.rps:7.1f} req/s  p99 {fmt_ms(m.p99_ms)}  app CPU "
                    f"{m.app_cpu_ms_per_request or 0:.2f} ms/request  errors {m.errors} "
                    f"non-2xx {m.non_2xx}"
                )

    def baseline_rps(self) -> float | None:
        base = self.outcomes.get(BASELINE)
        rps = base.saturation_rps if base else None
        if rps is None:  # no baseline: the slowest contender's rate
            rates = [o.saturation_rps for o in self.live() if o.saturation_rps]
            rps = min(rates) if rates else None
        return rps

    def fixed_phase(self, apps: dict[str, Server]) -> None:
        base = self.baseline_rps()
        if not base:
            return
        s = self.s
        for fraction in s.rates:
            for round_no in range(s.fixed_rounds):
                for outcome in self.rotation(round_no):
                    c = outcome.contender
                    try:
                        app = apps[c.key]
                        tag = f"{c.key}-{round(fraction * 100)}-{round_no}"
                        h2 = H2load(f"{app.url}/fanout/{c.mode}", base * fraction, s.duration,
                                    10.0, LOGS / f"h2load-{tag}.log")  # fmt: skip
                        m = h2.result()
                        outcome.fixed_rounds.setdefault(fraction, []).append(m)
                        app.wait_idle()
                    except Exception as exc:
                        self.fail(outcome, f"{fraction:.0%} rate", exc)
                        continue
                    self.say(
                        f"  round {round_no + 1}/{s.fixed_rounds} {fraction:4.0%} rate "
                        f"{c.label:<20} {m.rps:6.1f}/s  p50 {fmt_ms(m.p50_ms)}  p99 "
                        f"{fmt_ms(m.p99_ms)}  errors {m.errors} non-2xx {m.non_2xx}"
                    )

    def mixed_phase(self) -> None:
        base = self.baseline_rps()
        if not base:
            return
        s = self.s
        ramp = 0.5
        # The background must outlast the measurement: its size is 2.5 times what the pool did
        # in (ramp + duration) at the best saturation rate (a background call costs the app
        # less than a call made for a request, and the machine's speed drifts).
        best = max([o.saturation_rps or 0.0 for o in self.live()] + [base])
        n = max(2_000, math.ceil(best * FANOUT * (ramp + s.mixed_duration) * 2.5))
        self.mixed_background_n = n
        self.mixed_offered = base * s.mixed_rate
        for outcome in self.live():
            c = outcome.contender
            if c.key not in s.mixed_contenders:
                continue
            h2: H2load | None = None
            try:
                with running(self.app(c, "mixed")) as app:
                    url = f"{app.url}/fanout/{c.mode}"
                    self.warm_up(app, c)
                    status, _ = http("POST", f"{app.url}/background/{c.mode}?n={n}")
                    if status != 202:
                        raise RuntimeError(f"POST /background answered {status}")
                    time.sleep(ramp)
                    _, before = http("GET", f"{app.url}/background")
                    t0 = time.monotonic()
                    # A request may wait for the whole background (FIFO semaphore), which is
                    # sized to last 2.5 times the measurement at the best rate seen. Full runs
                    # wait for that to end even at under half that rate; quick runs give up
                    # after a few seconds, and such a request counts as slower than all others.
                    patience = (
                        3 + s.mixed_duration if s.quick else 20 + 6 * (ramp + s.mixed_duration)
                    )
                    log = LOGS / f"h2load-{c.key}-mixed.log"
                    self.mixed_patience = patience
                    h2 = H2load(url, self.mixed_offered, s.mixed_duration, patience, log,
                                censor=s.quick)  # fmt: skip
                    time.sleep(s.mixed_duration)
                    _, after = http("GET", f"{app.url}/background")
                    elapsed = time.monotonic() - t0
                    m, h2 = h2.result(), None
                    outcome.mixed = m
                    outcome.background = {
                        "n": n,
                        "calls_per_s": (after["done"] - before["done"]) / elapsed,
                        "running_through": bool(after["running"]),
                        "error": after.get("error"),
                    }
                    if after.get("error") not in (None, "cancelled"):
                        raise RuntimeError(f"background fan-out: {after['error']}")
                    if not after["running"]:
                        m.note = (m.note + "; " if m.note else "") + "background ended early"
                    self.say(
                        f"  mixed {c.label:<20} {m.rps:7.1f}/s  p50 {fmt_ms(m.p50_ms)}  p99 "
                        f"{fmt_ms(m.p99_ms)}  background {outcome.background['calls_per_s']:.0f}"
                        f" calls/s  errors {m.errors} non-2xx {m.non_2xx}"
                    )
            except Exception as exc:
                self.fail(outcome, "mixed", exc)
            finally:
                if h2 is not None:
                    h2.abandon()


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "timed out"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    return f"{value:.1f} ms"


def targets(run: Run) -> list[dict[str, Any]]:
    """bench.md's three targets, measured in this run."""
    out: list[dict[str, Any]] = []
    af, gs = run.outcomes.get("antflow"), run.outcomes.get(BASELINE)
    if not (af and gs):
        return out
    ratio = paired_ratio(af, gs)
    a_rps, g_rps = af.saturation_rps, gs.saturation_rps
    medians = f"; medians {a_rps:.0f} / {g_rps:.0f} req/s" if a_rps and g_rps else ""
    cpu_ratio = paired_cpu_ratio(af, gs)
    if cpu_ratio:
        medians += f"; app CPU per request, gather / antflow: {cpu_ratio:.2f}"
    out.append({
        "target": "saturation requests/s, antflow / gather+Semaphore "
        "(median of the per-round ratios)",
        "goal": "≥ 1.2",
        "measured": f"{ratio:.2f}{medians}" if ratio else "-",
        "met": ratio is not None and ratio >= 1.2,
    })  # fmt: skip
    fa, fg = af.fixed.get(0.7), gs.fixed.get(0.7)
    a99 = fa.p99_ms if fa else None
    g99 = fg.p99_ms if fg else None
    out.append({
        "target": "p99 at 70% of gather+Semaphore's saturation rate, antflow vs gather+Semaphore",
        "goal": "antflow ≤ gather",
        "measured": f"{fmt_ms(a99)} vs {fmt_ms(g99)}" if a99 and g99 else "-",
        "met": a99 is not None and g99 is not None and a99 <= g99,
    })  # fmt: skip
    m99 = af.mixed.p99_ms if af.mixed else None
    n99 = gs.mixed.p99_ms if gs.mixed else None
    out.append({
        "target": "mixed case: the fan-out's p99 beside a large background map, "
        "antflow vs gather+Semaphore",
        "goal": "antflow ≤ ½ gather",
        "measured": f"{fmt_ms(m99)} vs {fmt_ms(n99)}" if m99 and n99 else "-",
        "met": m99 is not None and n99 is not None and m99 <= n99 / 2,
    })  # fmt: skip
    return out


def antflow_revision() -> str:
    """The commit whose antflow was measured, and whether antflow/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "antflow"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown revision"
    if not head:
        return "unknown revision"
    return f"{head} + uncommitted changes in antflow/" if dirty else head


def machine() -> str:
    import platform

    return f"{platform.node() or 'host'}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def report(run: Run, notes: list[str], started: float) -> str:
    s = run.s
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    lines = [
        f"## Load test ({'quick' if s.quick else 'full'} run, {when}, {machine()}; "
        f"antflow at {run.revision})",
        "",
        f"App: Starlette on uvicorn (uvloop, 1 worker); each request = {FANOUT} downstream "
        f"calls of {s.delay * 1000:g} ms; limit {s.max_workers} calls in flight per process. "
        f"uvicorn parses HTTP with {HTTP_PARSER}. Rounds of {s.duration:g} s, the contenders "
        "taking turns within each round (in a rotating order) so that the machine's drift "
        "falls on all of them alike.",
        "",
        f"### Saturation (wrk, {s.connections} keep-alive connections, {s.rounds} rounds)",
        "",
        "requests/s is the median over the rounds; p50 / p99 / p99.9 are those of the median "
        "round (closed loop: they show the queue inside the app at saturation). App CPU: the "
        "app process's CPU time per request served and its share of one core during the "
        "round (medians over the rounds); the CPU ratio is taken round by round, like the "
        "requests/s ratio, and drifts less with the machine's load.",
        "",
        "| contender | requests/s | min - max | / gather+Semaphore (paired) | p50 | p99 | p99.9 "
        "| app CPU per request | gather+Semaphore's / this (paired) | app CPU busy | errors "
        "| non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    gather = run.outcomes.get(BASELINE)
    for o in run.outcomes.values():
        if o.saturation:
            m = sorted(o.saturation, key=lambda x: x.rps)[len(o.saturation) // 2]
            rates = [x.rps for x in o.saturation]
            ratio = paired_ratio(o, gather) if gather else None
            cpu_ratio = paired_cpu_ratio(o, gather) if gather else None
            cpu = [x.app_cpu_ms_per_request for x in o.saturation if x.app_cpu_ms_per_request]
            busy = [x.app_cpu for x in o.saturation if x.app_cpu]
            lines.append(
                f"| {o.contender.label} | {o.saturation_rps:.0f} | {min(rates):.0f} - "
                f"{max(rates):.0f} | {f'{ratio:.2f}' if ratio else '-'} | {fmt_ms(m.p50_ms)} | "
                f"{fmt_ms(m.p99_ms)} | {fmt_ms(m.p999_ms)} | "
                f"{f'{statistics.median(cpu):.2f} ms' if cpu else '-'} | "
                f"{f'{cpu_ratio:.2f}' if cpu_ratio else '-'} | "
                f"{f'{statistics.median(busy):.0%}' if busy else '-'} | "
                f"{sum(x.errors for x in o.saturation)} | {sum(x.non_2xx for x in o.saturation)} |"
            )
    base = run.baseline_rps()
    if base:
        lines += [
            "",
            "### Fixed offered rates (h2load, open loop: one new connection per request)",
            "",
            f"Rates are fractions of gather+Semaphore's saturation rate ({base:.0f} req/s); "
            f"{s.fixed_rounds} rounds per rate, their latencies pooled.",
            "",
            "| contender | rate | offered req/s | arrived req/s | responses | p50 | p99 | p99.9 "
            "| errors | non-2xx | note |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for fraction in s.rates:
            for o in run.outcomes.values():
                m = o.fixed.get(fraction)
                if m is not None:
                    lines.append(
                        f"| {o.contender.label} | {fraction:.0%} | {m.offered_rps:.0f} | "
                        f"{m.rps:.0f} | {m.requests} | {fmt_ms(m.p50_ms)} | {fmt_ms(m.p99_ms)} | "
                        f"{fmt_ms(m.p999_ms)} | {m.errors} | {m.non_2xx} | {m.note} |"
                    )
    if any(o.mixed for o in run.outcomes.values()):
        lines += [
            "",
            f"### Mixed case: a background fan-out of {run.mixed_background_n:,} calls on the "
            f"same pool, the fan-out endpoint at {run.mixed_offered:.0f} req/s for "
            f"{s.mixed_duration:g} s (h2load, open loop; a fresh app per contender)",
            "",
            f"A request may wait {run.mixed_patience:g} s for its answer; one still waiting then "
            + ('counts as slower than every answer ("timed out").' if s.quick else "is an error."),
            "",
            "| contender | p50 | p99 | p99.9 | background calls/s | background ran throughout "
            "| errors | non-2xx |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
        ]
        for o in run.outcomes.values():
            if o.mixed:
                m, b = o.mixed, o.background
                lines.append(
                    f"| {o.contender.label} | {fmt_ms(m.p50_ms)} | {fmt_ms(m.p99_ms)} | "
                    f"{fmt_ms(m.p999_ms)} | {b.get('calls_per_s', 0):.0f} | "
                    f"{'yes' if b.get('running_through') else 'no'} | {m.errors} | {m.non_2xx} |"
                )
    goals = targets(run)
    if goals:
        lines += ["", "### Targets (bench.md)", "", "| target | goal | measured | status |"]
        lines.append("| --- | --- | --- | --- |")
        for g in goals:
            status = "met" if g["met"] else "**NOT met**"
            lines.append(f"| {g['target']} | {g['goal']} | {g['measured']} | {status} |")
        met = sum(1 for g in goals if g["met"])
        lines += ["", f"{met} of {len(goals)} targets met."]
    skipped = [f"{o.contender.label}: {o.skipped}" for o in run.outcomes.values() if o.skipped]
    failed = [
        f"{o.contender.label}: {'; '.join(o.failures())}"
        for o in run.outcomes.values()
        if o.failures()
    ]
    if notes or skipped or failed:
        lines += ["", "Notes:", ""]
        lines += [f"- {n}" for n in notes]
        lines += [f"- skipped: {n}" for n in skipped]
        lines += [f"- FAILED, {n}" for n in failed]
    return "\n".join(lines) + "\n"


def as_json(m: Measurement | None) -> dict[str, Any] | None:
    if m is None:
        return None
    out = dataclasses.asdict(m)
    del out["latencies_ms"]  # the raw samples stay in the h2load logs
    for key, value in out.items():
        if isinstance(value, float) and math.isinf(value):
            out[key] = None  # timed out (see "note"): JSON has no infinity
    return out


def summary_json(run: Run, notes: list[str]) -> dict[str, Any]:
    gather = run.outcomes.get(BASELINE)
    return {
        "settings": dataclasses.asdict(run.s),
        "machine": machine(),
        "antflow_revision": run.revision,
        "baseline_rps": run.baseline_rps(),
        "mixed": {"background_n": run.mixed_background_n, "offered_rps": run.mixed_offered},
        "contenders": {
            key: {
                "label": o.contender.label,
                "saturation_rps": o.saturation_rps,
                "saturation_ratio_to_gather": paired_ratio(o, gather) if gather else None,
                "cpu_per_request_ratio_gather_to_this": (
                    paired_cpu_ratio(o, gather) if gather else None
                ),
                "saturation_rounds": [
                    dict(as_json(m) or {}, round=r) for r, m in o.saturation_rounds
                ],
                "fixed": [dict(as_json(m) or {}, fraction=f) for f, m in o.fixed.items()],
                "fixed_rounds": [
                    dict(as_json(m) or {}, fraction=f)
                    for f, parts in o.fixed_rounds.items()
                    for m in parts
                ],
                "mixed": as_json(o.mixed),
                "background": o.background,
                "error": o.error,
                "skipped": o.skipped,
            }
            for key, o in run.outcomes.items()
        },
        "targets": targets(run),
        "notes": notes,
    }


def chart(run: Run, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no chart"
    outcomes = [o for o in run.outcomes.values() if o.saturation]
    if not outcomes:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    labels = [o.contender.label for o in outcomes]
    colors = [f"C{i}" for i in range(len(outcomes))]
    ax = axes[0]
    ax.bar(labels, [o.saturation_rps or 0 for o in outcomes], color=colors)
    ax.set_title("saturation (wrk)")
    ax.set_ylabel("requests/s")
    ax.tick_params(axis="x", labelrotation=20)
    ax = axes[1]
    for o, color in zip(outcomes, colors, strict=True):
        points = [(m.offered_rps, m.p99_ms) for m in o.fixed.values() if m.p99_ms is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "o-", color=color, label=f"{o.contender.label} p99")
        points = [(m.offered_rps, m.p50_ms) for m in o.fixed.values() if m.p50_ms is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, "x:", color=color, alpha=0.6)
    ax.set_yscale("log")
    ax.set_title("fixed offered rates (h2load): p99 o-, p50 x:")
    ax.set_xlabel("offered requests/s")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    ax = axes[2]
    mixed = [
        (o.contender.label, o.mixed.p99_ms, c)
        for o, c in zip(outcomes, colors, strict=True)
        if o.mixed
    ]
    mixed = [(label, p99, c) for label, p99, c in mixed if p99 is not None]
    if mixed:
        # A p99 that timed out (quick runs give up after a few seconds) is drawn at the
        # longest wait allowed, hatched: the true value is larger.
        cap = max([x[1] for x in mixed if math.isfinite(x[1])] + [run.mixed_patience * 1000])
        bars = ax.bar(
            [x[0] for x in mixed],
            [x[1] if math.isfinite(x[1]) else cap for x in mixed],
            color=[x[2] for x in mixed],
        )
        for bar, x in zip(bars, mixed, strict=True):
            if not math.isfinite(x[1]):
                bar.set_hatch("//")
        ax.set_yscale("log")
        ax.tick_params(axis="x", labelrotation=20)
    ax.set_title("mixed case: fan-out p99 beside a large map")
    ax.set_ylabel("ms")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    duration = args.duration or float(os.environ.get("LOADTEST_DURATION", 2 if quick else 3))
    return Settings(
        quick=quick,
        duration=duration,
        warmup=1.0 if quick else 2.0,
        rounds=args.rounds or (2 if quick else 8),
        fixed_rounds=2 if quick else 3,
        mixed_duration=duration if quick else 3 * duration,
        connections=args.connections,
        rates=(0.7,) if quick else (0.3, 0.5, 0.7, 0.9),
        mixed_rate=0.1,
        mixed_contenders=("antflow", "gather") if quick else tuple(c.key for c in CONTENDERS),
        delay=args.delay,
        max_workers=args.max_workers,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/loadtest.py",
        description=__doc__.split("\n\n")[2],
        epilog="Environment: LOADTEST_QUICK=1, LOADTEST_PEER=auto|1|0, LOADTEST_DURATION=s.",
    )
    parser.add_argument("--quick", action="store_true", default=None,
                        help="short runs (also LOADTEST_QUICK=1): under a minute")  # fmt: skip
    parser.add_argument("--duration", type=float, help="seconds per round (2 quick, 3)")
    parser.add_argument("--rounds", type=int, help="saturation rounds (2 quick, 8)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's connections")
    parser.add_argument("--delay", type=float, default=0.002, help="downstream delay, seconds")
    parser.add_argument("--max-workers", type=int, default=100, help="calls in flight")
    parser.add_argument(
        "--contender",
        help="comma list of " + ", ".join(c.key for c in CONTENDERS) + " (default: all)",
    )
    parser.add_argument("--peer", help="make antflow 0.10.0's environment: auto, 1 or 0")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    args = parser.parse_args(argv)
    if args.quick is None:
        args.quick = os.environ.get("LOADTEST_QUICK", "") not in ("", "0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    started = time.time()

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped

    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C stops the run and its servers even where the shell started us with SIGINT ignored
    # (a background job): KeyboardInterrupt unwinds through the same finally blocks.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    problem = ensure_tools(install=not args.no_install)
    if problem:
        print(f"loadtest: {problem}", file=sys.stderr)
        return 2
    wanted = set(args.contender.split(",")) if args.contender else None
    if wanted and not wanted <= {c.key for c in CONTENDERS}:
        print(f"loadtest: unknown contender in {args.contender!r}", file=sys.stderr)
        return 2
    contenders = [c for c in CONTENDERS if wanted is None or c.key in wanted]
    notes: list[str] = []
    peer_py, why_no_peer = None, ""
    if any(c.peer for c in contenders):
        policy = (args.peer or os.environ.get("LOADTEST_PEER", "auto")).lower()
        peer_py, why_no_peer = peer_python(settings.quick, policy)
    run = Run(settings, contenders, peer_py)
    for outcome in run.outcomes.values():
        if outcome.contender.peer and peer_py is None:
            outcome.skipped = why_no_peer
        if outcome.contender.mode == "taskgroup" and sys.version_info < (3, 11):
            outcome.skipped = "asyncio.TaskGroup needs Python 3.11"
    if settings.quick:
        notes.append("quick run: short measurements, numbers are only a smoke test")
    print(f"loadtest: {'quick' if settings.quick else 'full'} run, logs in "
          f"{LOGS.relative_to(ROOT)}/", flush=True)  # fmt: skip
    try:
        run.execute()
    except KeyboardInterrupt:
        print("loadtest: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # the downstream service did not start
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1
    notes.append(
        f"{time.time() - started:.0f} s in all; the machine is shared, so figures are noisy"
    )
    text = report(run, notes, started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = RESULTS / "loadtest.png"
    why_no_chart = chart(run, png)
    if why_no_chart:
        text += f"\n{why_no_chart}\n"
    else:
        text += f"\n![load test chart]({png.name})\n"
    (RESULTS / "loadtest.md").write_text(text)
    (RESULTS / "loadtest.json").write_text(json.dumps(summary_json(run, notes), indent=2))
    print()
    print(text)
    failed = [o for o in run.outcomes.values() if o.failures() and not o.contender.peer]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
