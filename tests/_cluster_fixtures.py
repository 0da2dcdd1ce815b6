"""A Dask cluster for the cluster tests: a scheduler and two workers, started once.

They are separate processes started with the ``dask`` command-line tools on 127.0.0.1,
as on a real set of machines; most tests connect to them with ``ClusterExecutor(address)``.
The test folder is on the workers' PYTHONPATH, so the functions of cluster_items travel by
reference. Every wait is bounded, and every process is killed at the end of the session
(and at exit, should the session end abnormally).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DASK = Path(sys.executable).with_name("dask")
WORKERS = 2
THREADS = 4
START_TIMEOUT = 60.0


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 3
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _die_with_parent() -> None:
    """(In the child, Linux) be killed when the test process ends, however it ends: a
    test that hangs is ended by pytest-timeout's thread method, which runs no finalizer."""
    with contextlib.suppress(AttributeError, OSError):  # (not Linux: nothing to do)
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_env() -> dict[str, str]:
    """The environment of worker processes: the test folder importable, uvloop as loop."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["DASK_DISTRIBUTED__ADMIN__EVENT_LOOP"] = "uvloop"
    return env


async def _wait_for_workers(address: str, n: int, timeout: float) -> None:
    from distributed import Client

    async with Client(address, asynchronous=True, timeout=timeout) as client:
        await asyncio.wait_for(client.wait_for_workers(n), timeout)


@pytest.fixture(scope="session")
def cluster_address() -> Iterator[str]:
    """The address of a scheduler with two workers, all started with the dask CLI."""
    processes: list[subprocess.Popen[bytes]] = []
    atexit.register(_stop, processes)
    with tempfile.TemporaryDirectory(prefix="antflow-cluster-") as tmp:
        scheduler_file = Path(tmp, "scheduler.json")
        env = worker_env()
        logs = open(Path(tmp, "cluster.log"), "wb")  # noqa: SIM115 - closed below
        try:
            processes.append(
                subprocess.Popen(
                    [
                        str(DASK),
                        "scheduler",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        "0",
                        "--dashboard-address",
                        "127.0.0.1:0",
                        "--scheduler-file",
                        str(scheduler_file),
                    ],
                    env=env,
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,
                )
            )
            deadline = time.monotonic() + START_TIMEOUT
            while not scheduler_file.exists() or not scheduler_file.read_text().strip():
                assert time.monotonic() < deadline, "the dask scheduler did not start"
                assert processes[0].poll() is None, "the dask scheduler exited"
                time.sleep(0.05)
            address = json.loads(scheduler_file.read_text())["address"]
            for i in range(WORKERS):
                processes.append(
                    subprocess.Popen(
                        [
                            str(DASK),
                            "worker",
                            address,
                            "--host",
                            "127.0.0.1",
                            "--nthreads",
                            str(THREADS),
                            "--no-nanny",
                            "--no-dashboard",
                            "--dashboard-address",
                            "127.0.0.1:0",
                            "--name",
                            f"w{i}",
                        ],
                        env=env,
                        stdout=logs,
                        stderr=subprocess.STDOUT,
                        preexec_fn=_die_with_parent,
                        cwd=tmp,
                    )
                )
            asyncio.run(_wait_for_workers(address, WORKERS, START_TIMEOUT))
            yield address
        finally:
            _stop(processes)
            logs.close()
