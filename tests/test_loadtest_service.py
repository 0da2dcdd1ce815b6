"""The load test's service (perf/service/) and its driver's parsing (scripts/loadtest.py).

The app runs in-process (httpx's ASGI transport, its lifespan entered by the test) against a
real aiohttp downstream server on 127.0.0.1, on both loops. The load generators' outputs
below were captured from Debian's wrk 4.1.0 and h2load (nghttp2 1.52.0) on this project's
machine, with scripts/loadtest.py's wrk script loaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "perf" / "service"))

import service_app  # noqa: E402
from downstream import create_downstream_app  # noqa: E402

import antflow  # noqa: E402
from antflow import ExecutorShutdownError  # noqa: E402


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "scripts" / "loadtest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["loadtest"] = module
    spec.loader.exec_module(module)
    return module


loadtest = _load_script()

SQUARES = [i * i for i in range(20)]
IMPORTED_ANTFLOW = os.path.abspath(antflow.__file__ or "")


class Partner:
    """The downstream service, with a record of the calls it received."""

    def __init__(self, delay: float) -> None:
        self.app = create_downstream_app(delay)
        self.items: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.path.startswith("/item/"):
                self.items.append(int(request.match_info["i"]))
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
                try:
                    return await handler(request)
                finally:
                    self.in_flight -= 1
            return await handler(request)

        self.app.middlewares.append(record)


@asynccontextmanager
async def service(
    delay: float = 0.0, max_workers: int = 100
) -> AsyncIterator[tuple[httpx.AsyncClient, Partner, Any]]:
    """The app with its lifespan entered, a client for it, and its downstream partner."""
    partner = Partner(delay)
    server = TestServer(partner.app, host="127.0.0.1")
    await server.start_server()
    try:
        app = service_app.create_app(str(server.make_url("")), max_workers=max_workers)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                yield client, partner, app.state.service
    finally:
        await server.close()


async def wait_for_background(client: httpx.AsyncClient, timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = (await client.get("/background")).json()
        if not status["running"]:
            return status
        assert loop.time() < deadline, f"the background fan-out never finished: {status}"
        await asyncio.sleep(0.01)


# ----------------------------------------------------------------------------------------------
# The service
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", service_app.MODES)
async def test_each_fanout_endpoint_answers_the_twenty_downstream_results(mode: str) -> None:
    async with service() as (client, partner, _):
        response = await client.get(f"/fanout/{mode}")
        assert response.status_code == 200
        assert response.json() == {"results": SQUARES}
        assert sorted(partner.items) == list(range(20))


@pytest.mark.parametrize("mode", service_app.MODES)
async def test_concurrent_requests_share_one_process_wide_limit(mode: str) -> None:
    async with service(delay=0.005, max_workers=3) as (client, partner, _):
        responses = await asyncio.gather(*(client.get(f"/fanout/{mode}") for _ in range(4)))
        assert [r.json() for r in responses] == [{"results": SQUARES}] * 4
        assert len(partner.items) == 80
        assert partner.most_in_flight == 3  # reached, never exceeded, across the 4 requests


async def test_a_failing_downstream_call_turns_into_a_502() -> None:
    async with service() as (client, _, svc):
        svc.downstream_url += "/missing"  # every call now gets a 404 from the partner
        for mode in service_app.MODES:
            response = await client.get(f"/fanout/{mode}")
            assert response.status_code == 502, mode
            assert "downstream answered 404" in response.json()["error"]


async def test_an_unknown_mode_is_not_found() -> None:
    async with service() as (client, partner, _):
        assert (await client.get("/fanout/threads")).status_code == 404
        assert (await client.post("/background/threads")).status_code == 404
        assert partner.items == []


async def test_health_names_the_antflow_in_use_and_the_modes() -> None:
    async with service() as (client, _, _):
        health = (await client.get("/health")).json()
        assert health["antflow_file"] == IMPORTED_ANTFLOW
        assert health["antflow"] == antflow.__version__
        assert health["modes"] == list(service_app.MODES)
        assert health["max_workers"] == 100


@pytest.mark.parametrize("mode", service_app.MODES)
async def test_a_background_fan_out_runs_to_the_end_and_reports_its_progress(mode: str) -> None:
    async with service(max_workers=10) as (client, partner, _):
        started = await client.post(f"/background/{mode}", params={"n": 300})
        assert started.status_code == 202
        assert started.json() == {"mode": mode, "n": 300}
        status = await wait_for_background(client)
        assert status["done"] == 300
        assert status["error"] is None
        assert sorted(partner.items) == list(range(300))


async def test_only_one_background_fan_out_runs_at_a_time() -> None:
    async with service(delay=0.01, max_workers=2) as (client, _, _):
        assert (await client.post("/background/gather", params={"n": 1000})).status_code == 202
        assert (await client.post("/background/antflow", params={"n": 10})).status_code == 409


async def test_the_fan_out_endpoint_answers_while_a_background_map_holds_the_pool() -> None:
    async with service(delay=0.002, max_workers=4) as (client, _, _):
        await client.post("/background/antflow", params={"n": 2000})
        response = await asyncio.wait_for(client.get("/fanout/antflow"), timeout=10)
        assert response.json() == {"results": SQUARES}
        assert (await client.get("/background")).json()["running"] is True


async def test_the_executor_is_shut_down_when_the_lifespan_ends() -> None:
    async with service() as (client, _, svc):
        assert (await client.get("/fanout/antflow")).status_code == 200
        executor = svc.executor
    with pytest.raises(ExecutorShutdownError):
        executor.submit(asyncio.sleep, 0)
    assert svc.session.closed


@pytest.mark.parametrize("mode", service_app.MODES)
async def test_the_lifespan_end_cancels_a_running_background_fan_out(mode: str) -> None:
    async with service(delay=0.01, max_workers=2) as (client, partner, svc):
        await client.post(f"/background/{mode}", params={"n": 5000})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while len(partner.items) < 4:
            assert loop.time() < deadline, "the background fan-out never started"
            await asyncio.sleep(0.005)
    background = svc.background
    assert background.task.done()
    assert background.error == "cancelled"
    calls = len(partner.items)
    assert calls < 1000
    await asyncio.sleep(0.05)
    assert len(partner.items) == calls  # nothing more reached the partner


# ----------------------------------------------------------------------------------------------
# Parsing the load generators' output
# ----------------------------------------------------------------------------------------------

WRK_OUTPUT = """\
Running 1s test @ http://127.0.0.1:35321/item/3
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.77ms    1.05ms  10.38ms   87.80%
    Req/Sec     1.47k    41.46     1.56k    81.82%
  1613 requests in 1.10s, 241.00KB read
Requests/sec:   1469.24
Transfer/sec:    219.53KB
LOADTEST_JSON {"requests": 1613, "duration_us": 1097845, "bytes": 246789, "errors": \
{"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, "latency_us": {"min": 1263, \
"mean": 2774.5, "max": 10384, "p50": 2396, "p90": 3938, "p99": 7381, "p99.9": 10381}}
"""

WRK_OUTPUT_404 = """\
Running 1s test @ http://127.0.0.1:36267/nope
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   737.89us    1.27ms  11.45ms   87.38%
    Req/Sec     7.74k     2.72k   11.77k    60.00%
  7702 requests in 1.00s, 1.28MB read
  Non-2xx or 3xx responses: 7702
Requests/sec:   7676.22
Transfer/sec:      1.27MB
LOADTEST_JSON {"requests": 7702, "duration_us": 1003359, "bytes": 1340148, "errors": \
{"connect": 0, "read": 0, "write": 0, "status": 7702, "timeout": 0}, "latency_us": {"min": 78, \
"mean": 737.9, "max": 11452, "p50": 143, "p90": 2429, "p99": 5841, "p99.9": 10152}}
"""

H2LOAD_OUTPUT = """\
starting benchmark...
spawning thread #0: 8 total client(s). Up to 2 client(s) will be created every 10ms 8 total \
requests
progress: 12% of clients started
progress: 25% of clients started
Application protocol: http/1.1
progress: 37% of clients started
progress: 50% of clients started
progress: 62% of clients started
progress: 75% of clients started
progress: 87% of clients started
progress: 100% of clients started

finished in 36.74ms, 217.73 req/s, 32.53KB/s
requests: 8 total, 8 started, 8 done, 8 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 8 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.20KB (1224) total, 936B (936) headers (space savings 0.00%), 8B (8) data
                     min         max         mean         sd        +/- sd
time for request:     1.72ms      3.02ms      2.64ms       388us    87.50%
time for connect:       29us       316us       128us       100us    87.50%
time to 1st byte:     2.04ms      3.11ms      2.77ms       320us    75.00%
req/s           :     320.35      476.45      361.34       48.47    87.50%
"""

H2LOAD_LOG = """\
1795969488542301\t200\t1721
1795969488542291\t200\t3022
1795969488551638\t200\t2748
1795969488551637\t200\t2829
1795969488561742\t200\t2653
1795969488561744\t200\t2669
1795969488571648\t200\t2724
1795969488571650\t200\t2739
"""

H2LOAD_OUTPUT_404 = """\
starting benchmark...
spawning thread #0: 4 total client(s). Up to 2 client(s) will be created every 10ms 4 total \
requests
progress: 25% of clients started
progress: 50% of clients started
Application protocol: http/1.1
progress: 75% of clients started
progress: 100% of clients started

finished in 11.40ms, 350.88 req/s, 59.62KB/s
requests: 4 total, 4 started, 4 done, 0 succeeded, 4 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 4 4xx, 0 5xx
traffic: 696B (696) total, 472B (472) headers (space savings 0.00%), 56B (56) data
                     min         max         mean         sd        +/- sd
time for request:      370us       783us       568us       170us    50.00%
time for connect:       42us       584us       217us       254us    75.00%
time to 1st byte:      595us       955us       788us       149us    50.00%
req/s           :    1008.26     1638.09     1268.49      265.78    75.00%
"""

H2LOAD_LOG_404 = """\
1795969492827506\t404\t370
1795969492827497\t404\t535
1795969492837342\t404\t582
1795969492837340\t404\t783
"""


def test_wrk_output_gives_requests_per_second_and_latency_percentiles() -> None:
    m = loadtest.parse_wrk(WRK_OUTPUT)
    assert m.requests == 1613
    assert m.seconds == pytest.approx(1.097845)
    assert m.rps == pytest.approx(1613 / 1.097845)
    assert (m.p50_ms, m.p99_ms, m.p999_ms) == (2.396, 7.381, 10.381)
    assert (m.errors, m.non_2xx) == (0, 0)
    assert not m.failed


def test_wrk_output_counts_non_2xx_answers_as_a_failure() -> None:
    m = loadtest.parse_wrk(WRK_OUTPUT_404)
    assert (m.requests, m.errors, m.non_2xx) == (7702, 0, 7702)
    assert m.failed


def test_wrk_output_without_the_report_line_is_refused() -> None:
    without = "\n".join(line for line in WRK_OUTPUT.splitlines() if "LOADTEST_JSON" not in line)
    with pytest.raises(ValueError, match="LOADTEST_JSON"):
        loadtest.parse_wrk(without)


def test_h2load_summary_counts_are_read() -> None:
    summary = loadtest.parse_h2load_summary(H2LOAD_OUTPUT)
    assert summary["total"] == summary["started"] == summary["succeeded"] == 8
    assert (summary["failed"], summary["errored"], summary["timeout"]) == (0, 0, 0)
    assert (summary["2xx"], summary["4xx"]) == (8, 0)
    assert summary["seconds"] == pytest.approx(0.03674)
    assert summary["rps"] == pytest.approx(217.73)


def test_h2load_request_log_gives_latency_percentiles_and_the_arrival_rate() -> None:
    rows = loadtest.parse_h2load_log(H2LOAD_LOG)
    assert rows[0] == (1795969488542301, 200, 1721)
    m = loadtest.h2load_measurement(H2LOAD_OUTPUT, H2LOAD_LOG, offered_rps=200.0)
    assert m.requests == 8
    elapsed = sorted(e / 1000 for _, _, e in rows)
    assert m.p50_ms == elapsed[3]  # nearest rank: the 4th of 8
    assert m.p99_ms == m.p999_ms == elapsed[-1] == 3.022
    span = (1795969488571650 - 1795969488542291) / 1e6
    assert m.rps == pytest.approx(7 / span)
    assert (m.errors, m.non_2xx, m.note) == (0, 0, "")


def test_h2load_counts_4xx_as_non_2xx_not_as_transport_errors() -> None:
    m = loadtest.h2load_measurement(H2LOAD_OUTPUT_404, H2LOAD_LOG_404, offered_rps=200.0)
    assert (m.requests, m.errors, m.non_2xx) == (0, 0, 4)
    assert m.p99_ms is None
    assert m.failed


def test_h2load_flags_arrivals_slower_than_offered() -> None:
    m = loadtest.h2load_measurement(H2LOAD_OUTPUT, H2LOAD_LOG, offered_rps=1000.0)
    assert m.note.startswith("arrivals lagged")


def test_h2load_requests_without_a_response_count_as_errors() -> None:
    stdout = H2LOAD_OUTPUT.replace(
        "8 done, 8 succeeded, 0 failed, 0 errored, 0 timeout",
        "8 done, 6 succeeded, 2 failed, 0 errored, 2 timeout",
    ).replace("status codes: 8 2xx", "status codes: 6 2xx")
    log = H2LOAD_LOG.replace("\t200\t2739", "\t-1\t2739").replace("\t200\t2724", "\t-1\t2724")
    m = loadtest.h2load_measurement(stdout, log, offered_rps=200.0)
    assert (m.requests, m.errors, m.non_2xx) == (6, 2, 0)


def test_rounds_at_one_rate_pool_their_latencies() -> None:
    first = loadtest.h2load_measurement(H2LOAD_OUTPUT, H2LOAD_LOG, offered_rps=200.0)
    second = loadtest.h2load_measurement(H2LOAD_OUTPUT_404, H2LOAD_LOG_404, offered_rps=200.0)
    both = loadtest.pooled([first, second])
    assert both.requests == 8 and both.latencies_ms == first.latencies_ms
    assert (both.errors, both.non_2xx) == (0, 4)
    assert both.p99_ms == first.p99_ms
    assert both.rps == pytest.approx((first.rps + second.rps) / 2)
    again = loadtest.pooled([first, first])
    assert again.requests == 16
    assert again.p50_ms == first.p50_ms


def test_the_saturation_ratio_pairs_the_rounds() -> None:
    def outcome(key: str, rates: dict[int, float]) -> Any:
        contender = next(c for c in loadtest.CONTENDERS if c.key == key)
        o = loadtest.Outcome(contender)
        for round_no, rps in rates.items():
            m = loadtest.parse_wrk(WRK_OUTPUT)
            m.rps = rps
            m.app_cpu_ms_per_request = 900 / rps  # the app is 90% busy in every round
            o.saturation_rounds.append((round_no, m))
        return o

    # The machine slowed down in round 1: antflow is 1.5x gather in every round all the same.
    antflow = outcome("antflow", {0: 300.0, 1: 150.0, 2: 330.0})
    gather = outcome("gather", {0: 200.0, 1: 100.0, 2: 220.0, 3: 999.0})
    assert loadtest.paired_ratio(antflow, gather) == pytest.approx(1.5)
    assert antflow.saturation_rps == 300.0
    assert loadtest.paired_ratio(antflow, outcome("gather", {})) is None
    assert loadtest.paired_cpu_ratio(antflow, gather) == pytest.approx(1.5)
    assert loadtest.paired_cpu_ratio(antflow, outcome("gather", {})) is None


H2LOAD_OUTPUT_TIMEOUT = """\
starting benchmark...
spawning thread #0: 4 total client(s). Up to 2 client(s) will be created every 10ms 4 total \
requests
progress: 25% of clients started
progress: 50% of clients started
Application protocol: http/1.1
progress: 75% of clients started
progress: 100% of clients started

finished in 1.01s, 0.00 req/s, 0B/s
requests: 4 total, 4 started, 0 done, 0 succeeded, 4 failed, 4 errored, 4 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :       0.00        0.00        0.00        0.00     0.00%
"""


def test_h2load_timeouts_are_errors_unless_censored() -> None:
    # -T 1 against a partner that takes 3 s: h2load logs no row for the 4 timed-out requests.
    plain = loadtest.h2load_measurement(H2LOAD_OUTPUT_TIMEOUT, "", offered_rps=200.0)
    assert (plain.requests, plain.errors, plain.p99_ms) == (0, 4, None)
    assert plain.failed
    censored = loadtest.h2load_measurement(
        H2LOAD_OUTPUT_TIMEOUT, "", offered_rps=200.0, censor_after=1.0
    )
    assert (censored.requests, censored.errors, censored.timed_out) == (0, 0, 4)
    assert not censored.failed  # a slow contender, not a broken one
    assert censored.p50_ms == censored.p99_ms == math.inf
    assert "4 still unanswered after 1 s" in censored.note
    assert loadtest.fmt_ms(censored.p99_ms) == "timed out"


def test_censored_timeouts_rank_above_every_answer() -> None:
    stdout = H2LOAD_OUTPUT.replace(
        "8 done, 8 succeeded, 0 failed, 0 errored, 0 timeout",
        "8 done, 7 succeeded, 1 failed, 1 errored, 1 timeout",
    ).replace("status codes: 8 2xx", "status codes: 7 2xx")
    log = "\n".join(H2LOAD_LOG.splitlines()[:7]) + "\n"
    m = loadtest.h2load_measurement(stdout, log, offered_rps=200.0, censor_after=5.0)
    assert (m.requests, m.errors, m.non_2xx) == (7, 0, 0)
    assert m.p99_ms == math.inf
    assert m.p50_ms == sorted(e / 1000 for _, _, e in loadtest.parse_h2load_log(log))[3]
    assert not m.failed


def test_h2load_output_without_a_summary_is_refused() -> None:
    with pytest.raises(ValueError):
        loadtest.parse_h2load_summary("starting benchmark...\n")


def test_nearest_rank_percentiles() -> None:
    values = list(range(1, 1001))
    assert loadtest.percentile(values, 50) == 500
    assert loadtest.percentile(values, 99) == 990
    assert loadtest.percentile(values, 99.9) == 999
    assert loadtest.percentile([7], 99.9) == 7
    with pytest.raises(ValueError):
        loadtest.percentile([], 50)


@pytest.mark.parametrize("rps", [1.5, 18.2, 128.0, 455.0, 3333.0])
def test_rate_schedule_comes_within_one_percent_of_the_offered_rate(rps: float) -> None:
    n, period_ms = loadtest.rate_schedule(rps)
    assert n >= 1 and 1 <= period_ms <= 1000
    assert n * 1000 / period_ms == pytest.approx(rps, rel=0.01)


def test_the_script_explains_itself() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "loadtest.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "LOADTEST_QUICK" in result.stdout
