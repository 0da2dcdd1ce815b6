"""Reading this process's resident memory from Linux's /proc, for the memory rows.

``reset_peak`` sets the kernel's peak mark (VmHWM) back to the current RSS, so that the
peak read after a batch is the batch's own; both need /proc (Linux >= 4.0).
"""

from __future__ import annotations


def status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), or None where it cannot be read."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Set VmHWM back to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
