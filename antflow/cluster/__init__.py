"""antflow.cluster: the antflow executor over the processes and machines of a Dask cluster.

``ClusterExecutor`` has the methods of :class:`antflow.AsyncExecutor`, with the same
meaning; each Dask worker process runs the items on an antflow ``AsyncExecutor``. Install
it with ``pip install "antflow[cluster]"`` (the ``distributed`` package); ``import
antflow`` alone never imports Dask.
"""

from __future__ import annotations

try:
    import distributed  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
    raise ImportError(
        'antflow.cluster needs Dask distributed: pip install "antflow[cluster]"'
    ) from exc

from ._executor import ClusterExecutor

__all__ = ["ClusterExecutor"]
