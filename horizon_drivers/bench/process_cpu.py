"""CPU time a process has used, read from ``/proc``: the bench's server-cost measure.

Example:
    >>> import os
    >>> used = cpu_seconds(os.getpid())
    >>> used is None or used >= 0
    True
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds"]


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds process ``pid`` has used (Linux ``/proc``), else None.

    The kernel counts in clock ticks (``SC_CLK_TCK``, usually 100 per second): a difference of
    two readings is good to 10 ms, under 1% of a bench run.

    Example:
        >>> used = cpu_seconds(os.getpid())
        >>> used is None or used >= 0
        True
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
