"""Host tuning: CPU affinity, usable CPU count, NUMA topology, real-time priority.

The reference library's guidance, which these helpers exist to follow:

* pin each network thread to its own CPU for steady latency (``pin_to_cpus``);
* run one network thread per usable CPU (``usable_cpu_count`` respects the affinity mask, which
  containers and ``taskset`` shrink, unlike ``os.cpu_count``);
* keep a thread's buffers on the NUMA node of the NIC it serves (``numa_nodes``);
* real-time scheduling (``set_realtime_priority``) only on dedicated cores: a SCHED_FIFO thread that
  busy-polls can starve everything else on its CPU.

Every function raises a clear ``OSError``/``ValueError`` where the host does not allow what was
asked; none silently does nothing.

Example:
    >>> from horizon_drivers.tuning import usable_cpu_count
    >>> usable_cpu_count() >= 1
    True
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "NumaNode",
    "current_affinity",
    "numa_nodes",
    "parse_cpu_list",
    "pin_to_cpu",
    "pin_to_cpus",
    "set_realtime_priority",
    "usable_cpu_count",
]

_SYS_NODES = Path("/sys/devices/system/node")
# A plain variable, not sys.platform itself: type checkers on Linux must still see the Windows code.
_PLATFORM: str = sys.platform
_THREAD_PRIORITY_TIME_CRITICAL = 15


def _kernel32() -> Any:
    """Windows' kernel32 with errors captured (ctypes.WinDLL exists only on Windows).

    Handles are pointer-sized: without these prototypes ctypes would pass the pseudo handle of
    GetCurrentThread (-2) as a 32-bit int, which Windows rejects as an invalid handle.
    """
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
    handle, size, ulong_p = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)
    kernel32.GetCurrentThread.restype = handle
    kernel32.GetCurrentProcess.restype = handle
    kernel32.GetProcessAffinityMask.argtypes = (handle, ulong_p, ulong_p)
    kernel32.SetThreadAffinityMask.argtypes = (handle, size)
    kernel32.SetThreadAffinityMask.restype = size
    kernel32.SetThreadPriority.argtypes = (handle, ctypes.c_int)
    kernel32.GetThreadPriority.argtypes = (handle,)
    return kernel32


def _windows_error(what: str) -> OSError:
    code = ctypes.get_last_error()  # type: ignore[attr-defined,unused-ignore]
    return OSError(code, f"{what} failed (Windows error {code})")


def _windows_affinity() -> tuple[int, ...]:
    kernel32 = _kernel32()
    process_mask, system_mask = ctypes.c_size_t(), ctypes.c_size_t()
    handle = kernel32.GetCurrentProcess()
    if not kernel32.GetProcessAffinityMask(handle, ctypes.byref(process_mask), ctypes.byref(system_mask)):
        raise _windows_error("GetProcessAffinityMask")
    mask = process_mask.value
    return tuple(cpu for cpu in range(mask.bit_length()) if mask >> cpu & 1)


@attrs.frozen
class NumaNode:
    """One NUMA node and the CPUs that belong to it.

    Example:
        >>> NumaNode(0, (0, 1)).cpus
        (0, 1)
    """

    node: int
    cpus: tuple[int, ...]


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """Parse the kernel's CPU list format (``"0-3,8,10-11"``) into sorted CPU numbers.

    Example:
        >>> parse_cpu_list("0-2,5")
        (0, 1, 2, 5)
    """
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first = int(lo)
            last = int(hi) if sep else first
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}: {part!r} is not N or N-M") from None
        if first < 0 or last < first:
            raise ValueError(f"bad CPU list {text!r}: {part!r} is not an ascending range")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def current_affinity() -> tuple[int, ...]:
    """The CPUs the calling thread may run on (all CPUs where the OS has no affinity API).

    Example:
        >>> len(current_affinity()) >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    if _PLATFORM == "win32":
        return _windows_affinity()
    return tuple(range(os.cpu_count() or 1))


def usable_cpu_count() -> int:
    """How many CPUs this process may use: the affinity mask, not the machine's total.

    Example:
        >>> usable_cpu_count() <= (os.cpu_count() or 1)
        True
    """
    return len(current_affinity())


def pin_to_cpus(cpus: Iterable[int]) -> tuple[int, ...]:
    """Restrict the calling thread to ``cpus``; return the mask now in force.

    Raises ``ValueError`` naming CPUs outside the allowed set, and ``OSError`` where the platform
    has no affinity API (macOS) or the kernel refuses.

    Example:
        >>> before = current_affinity()
        >>> pin_to_cpus(before[:1]) == before[:1]
        True
        >>> _ = pin_to_cpus(before)
    """
    wanted = tuple(sorted(set(cpus)))
    if not wanted:
        raise ValueError("pin_to_cpus needs at least one CPU")
    total = os.cpu_count() or 1
    bad = [c for c in wanted if not isinstance(c, int) or c < 0 or c >= total]
    if bad:
        raise ValueError(f"CPUs {bad} do not exist: this machine has CPUs 0-{total - 1}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, wanted)
        return current_affinity()
    if _PLATFORM == "win32":
        # Windows pins threads with a bit mask (the reference's SetThreadAffinityMask); the process
        # mask bounds it, so report the thread's mask as set, not the process's.
        mask = sum(1 << cpu for cpu in wanted)
        kernel32 = _kernel32()
        if not kernel32.SetThreadAffinityMask(kernel32.GetCurrentThread(), mask):
            raise _windows_error(f"SetThreadAffinityMask({mask:#x})")
        return wanted
    raise OSError(f"CPU pinning is not available on {sys.platform}")


def pin_to_cpu(cpu: int) -> None:
    """Pin the calling thread to one CPU (see :func:`pin_to_cpus`).

    Example:
        >>> before = current_affinity()
        >>> pin_to_cpu(before[0]); current_affinity() == (before[0],)
        True
        >>> _ = pin_to_cpus(before)
    """
    pin_to_cpus((cpu,))


def numa_nodes(sys_root: Path = _SYS_NODES) -> tuple[NumaNode, ...]:
    """The NUMA nodes and their CPUs, from ``/sys/devices/system/node`` on Linux.

    A machine without that directory (non-Linux, or a kernel without NUMA) is reported as one
    node holding every CPU, which is what the scheduler does there.

    Example:
        >>> nodes = numa_nodes()
        >>> sum(len(n.cpus) for n in nodes) >= 1
        True
    """
    nodes: list[NumaNode] = []
    if sys_root.is_dir():
        for entry in sorted(sys_root.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
            cpulist = entry / "cpulist"
            try:
                text = cpulist.read_text()
            except OSError:
                continue
            nodes.append(NumaNode(int(entry.name[4:]), parse_cpu_list(text)))
    if not nodes:
        nodes.append(NumaNode(0, tuple(range(os.cpu_count() or 1))))
    return tuple(nodes)


def set_realtime_priority(priority: int = 10) -> None:
    """Run the calling thread under SCHED_FIFO at ``priority`` (1-99).

    Raises ``PermissionError`` with the reason when the process lacks CAP_SYS_NICE or an
    RLIMIT_RTPRIO allowance, and ``OSError`` on platforms without SCHED_FIFO. On Windows the
    thread gets THREAD_PRIORITY_TIME_CRITICAL (Windows has no numbered real-time levels per thread;
    ``priority`` is still validated).

    Example:
        >>> try:
        ...     set_realtime_priority(0)
        ... except ValueError as exc:
        ...     print(exc)
        real-time priority must be 1-99, got 0
    """
    if not isinstance(priority, int) or isinstance(priority, bool) or not 1 <= priority <= 99:
        raise ValueError(f"real-time priority must be 1-99, got {priority!r}")
    if _PLATFORM == "win32":
        kernel32 = _kernel32()
        if not kernel32.SetThreadPriority(kernel32.GetCurrentThread(), _THREAD_PRIORITY_TIME_CRITICAL):
            raise _windows_error("SetThreadPriority(THREAD_PRIORITY_TIME_CRITICAL)")
        return
    if not hasattr(os, "sched_setscheduler"):
        raise OSError(f"SCHED_FIFO is not available on {sys.platform}")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as exc:
        raise PermissionError(
            exc.errno,
            "SCHED_FIFO not permitted: needs CAP_SYS_NICE or an RLIMIT_RTPRIO of at least "
            f"{priority} (ulimit -r)",
        ) from exc
