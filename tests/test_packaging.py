"""The built wheel installs into a fresh virtual environment and works there."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest
from _helpers import dist_wheel

SMOKE = """
import asyncio, antflow
from antflow import AsyncExecutor, AsyncFuture, WaitStrategy, ExecutorShutdownError, run
from antflow import new_event_loop

async def double(x):
    await asyncio.sleep(0)
    return 2 * x

async def main():
    async with AsyncExecutor(max_workers=2) as executor:
        return await executor.map(double, range(5))

assert run(main()) == [0, 2, 4, 6, 8]
import importlib.resources
assert importlib.resources.files("antflow").joinpath("py.typed").is_file()
print("ok", antflow.__file__)
"""


@pytest.mark.timeout(600)
def test_the_wheel_installs_into_a_fresh_venv_and_runs(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wheel = dist_wheel(tmp_path_factory)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheel)], check=True)
    out = subprocess.run(
        [python, "-c", SMOKE], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert out.startswith("ok ") and str(env_dir) in out
