"""The exceptions antflow raises of its own."""

from __future__ import annotations

__all__ = ["AntFlowError", "ExecutorShutdownError"]


class AntFlowError(Exception):
    """Base class of the errors that antflow itself raises."""


class ExecutorShutdownError(AntFlowError, RuntimeError):
    """Work was offered to an executor that has been shut down.

    A ``RuntimeError``, as ``concurrent.futures`` raises after ``shutdown()``, so code
    written for either catches it. Create a new executor to run more work.
    """
