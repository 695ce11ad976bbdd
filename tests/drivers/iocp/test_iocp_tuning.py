"""The tuning helpers' Windows equivalents: thread affinity masks and thread priority.

Windows only (run ``.ci/wine/run`` on Linux); Wine implements these kernel32 calls as Windows does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from horizon_drivers import tuning
from tests.drivers.iocp.iocp_helpers import windows_only

pytestmark = windows_only


def _in_thread(body: Callable[[Any], object]) -> object:
    # Affinity and priority are per thread: a throwaway thread leaves the test runner's alone.
    result: list[object] = []

    def run() -> None:
        kernel32 = tuning._kernel32()  # with pointer-sized handle prototypes
        try:
            result.append(body(kernel32))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=10)
    assert len(result) == 1
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def test_affinity_comes_from_the_process_mask() -> None:
    cpus = tuning.current_affinity()
    assert cpus
    assert all(cpu >= 0 for cpu in cpus)
    assert tuning.usable_cpu_count() == len(cpus)


def test_pinning_sets_the_thread_mask() -> None:
    first = tuning.current_affinity()[0]

    def body(kernel32: Any) -> int:
        tuning.pin_to_cpu(first)
        # SetThreadAffinityMask returns the previous mask: the one pin_to_cpu set.
        full = sum(1 << cpu for cpu in tuning.current_affinity())
        return int(kernel32.SetThreadAffinityMask(kernel32.GetCurrentThread(), full))

    assert _in_thread(body) == 1 << first


def test_pinning_to_missing_cpus_is_refused() -> None:
    with pytest.raises(ValueError, match="do not exist"):
        tuning.pin_to_cpus([10_000])


def test_realtime_priority_is_time_critical() -> None:
    def body(kernel32: Any) -> int:
        tuning.set_realtime_priority(10)
        return int(kernel32.GetThreadPriority(kernel32.GetCurrentThread()))

    assert _in_thread(body) == 15  # THREAD_PRIORITY_TIME_CRITICAL
