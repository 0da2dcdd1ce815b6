"""Every async test runs twice: on asyncio's own loop and on uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from _cluster_fixtures import cluster_address  # noqa: F401 - one Dask cluster per session
from _helpers import LOOPS


def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return LOOPS
