"""Helpers shared by the test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import subprocess
import sys
import sysconfig
import venv
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop

_T = TypeVar("_T")

# The two loops every test runs on (conftest.py parametrises the async tests with them).
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


async def wait_until(predicate: Any, timeout: float = 2.0) -> None:
    """Let the loop run until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "the condition never became true"
        await asyncio.sleep(0.001)


def run_in_fresh_loop(
    factory: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, _T]
) -> _T:
    """``asyncio.run(main)`` on a loop from ``factory``: leftover tasks cancelled, loop closed."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    loop = factory()  # pragma: no cover - Python 3.10
    try:
        return loop.run_until_complete(main)
    finally:
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class CountingInput:
    """An input iterable that records how far it has been read (endless when n is None)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.read = 0

    def __iter__(self) -> Iterator[int]:
        numbers = itertools.count() if self.n is None else range(self.n)
        for i in numbers:
            self.read += 1
            yield i


class StallingInput:
    """An async input that yields ``first`` items, then waits for ``go`` (maybe forever),
    and records in ``closed`` that its ``finally`` ran (after an await: a clean-up that
    takes a moment)."""

    def __init__(self, first: int = 1) -> None:
        self.first = first
        self.go = asyncio.Event()
        self.closed = False

    async def __call__(self) -> AsyncIterator[int]:
        try:
            for i in range(self.first):
                yield i
            await self.go.wait()
            yield self.first
        finally:
            await asyncio.sleep(0.001)
            self.closed = True


async def read_async(iterable: Iterable[_T]) -> AsyncIterator[_T]:
    """``iterable`` as an async input, read one value per step: an executor's ``map`` /
    ``map_iter`` reads an async input itself and queues its items (a synchronous input is
    read by the workers as they free up, and nothing is queued)."""
    for value in iterable:
        yield value


ROOT = Path(__file__).resolve().parent.parent
_dist_wheel: Path | None = None


def dist_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """antflow's wheel, built once per test session the way ``make dist`` builds it.

    ``make dist`` runs ``python -m build``: the sdist first, then the wheel from that sdist,
    so the wheel holds only what the sdist ships. Where the ``build`` package is missing (the
    ``test`` extra alone, as in ``make test-matrix``), ``pip wheel`` builds from the tree.
    """
    global _dist_wheel
    if _dist_wheel is None:
        out = tmp_path_factory.mktemp("dist")
        if importlib.util.find_spec("build") is not None:
            command = ["-m", "build", "--outdir", str(out), str(ROOT)]
        else:
            command = ["-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)]
        subprocess.run([sys.executable, *command], check=True, stdout=subprocess.DEVNULL)
        (_dist_wheel,) = out.glob("antflow-*.whl")
    return _dist_wheel


def venv_without_antflow(path: Path) -> Path:
    """Create a virtual environment at ``path`` that sees this one's packages, bar antflow.

    Nothing is copied or downloaded: a ``.pth`` file puts a folder of links to the running
    environment's packages (antflow's own entries left out) on the new one's path, so pip
    there finds antflow's dependencies installed and antflow not. Returns its python.
    """
    venv.create(path, with_pip=False)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    borrowed = path / "borrowed-packages"
    borrowed.mkdir()
    for folder in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}:
        for entry in Path(folder).iterdir():
            link = borrowed / entry.name
            if "antflow" not in entry.name.lower() and not link.exists():
                link.symlink_to(entry)
    Path(site, "borrowed-packages.pth").write_text(f"{borrowed}\n")
    return python
