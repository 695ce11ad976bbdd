"""Tuning helpers: CPU lists, affinity, NUMA topology, real-time priority."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from horizon_drivers import tuning


@given(st.sets(st.integers(min_value=0, max_value=4095), min_size=1, max_size=64))
def test_cpu_list_round_trips_through_kernel_format(cpus: set[int]) -> None:
    # Render the set the way the kernel does: ascending runs as "a-b".
    ordered = sorted(cpus)
    runs: list[str] = []
    start = prev = ordered[0]
    for cpu in [*ordered[1:], -1]:
        if cpu == prev + 1:
            prev = cpu
            continue
        runs.append(f"{start}-{prev}" if prev != start else str(start))
        start = prev = cpu
    assert tuning.parse_cpu_list(",".join(runs) + "\n") == tuple(ordered)


@pytest.mark.parametrize("text", ["a", "3-1", "-1", "1-x", "1--2"])
def test_bad_cpu_lists_name_the_part(text: str) -> None:
    with pytest.raises(ValueError, match="bad CPU list"):
        tuning.parse_cpu_list(text)


def test_numa_nodes_read_from_sys_tree(tmp_path: Path) -> None:
    for node, cpus in ((0, "0-3"), (1, "4-7"), (10, "8")):
        (tmp_path / f"node{node}").mkdir()
        (tmp_path / f"node{node}" / "cpulist").write_text(cpus + "\n")
    (tmp_path / "possible").write_text("0-1\n")  # not a node directory
    nodes = tuning.numa_nodes(tmp_path)
    assert nodes == (
        tuning.NumaNode(0, (0, 1, 2, 3)),
        tuning.NumaNode(1, (4, 5, 6, 7)),
        tuning.NumaNode(10, (8,)),
    )


def test_numa_nodes_without_sys_is_one_node_of_all_cpus(tmp_path: Path) -> None:
    nodes = tuning.numa_nodes(tmp_path / "absent")
    assert nodes == (tuning.NumaNode(0, tuple(range(os.cpu_count() or 1))),)


def test_usable_cpu_count_follows_the_affinity_mask() -> None:
    before = tuning.current_affinity()
    try:
        tuning.pin_to_cpus(before[:1])
        assert tuning.usable_cpu_count() == 1
        assert tuning.current_affinity() == before[:1]
    finally:
        tuning.pin_to_cpus(before)
    assert tuning.current_affinity() == before


def test_pinning_to_missing_cpus_is_refused_by_name() -> None:
    total = os.cpu_count() or 1
    with pytest.raises(ValueError, match=rf"\[{total}\] do not exist"):
        tuning.pin_to_cpus([0, total])
    with pytest.raises(ValueError, match="at least one CPU"):
        tuning.pin_to_cpus([])


@pytest.mark.parametrize("priority", [0, 100, -1, True, 1.5])
def test_realtime_priority_range_is_checked(priority: object) -> None:
    with pytest.raises(ValueError, match="1-99"):
        tuning.set_realtime_priority(priority)  # type: ignore[arg-type]


def test_realtime_priority_applies_or_says_why() -> None:
    # Run in a throwaway thread: the policy is per thread on Linux, so the test process keeps its own.
    outcome: list[object] = []

    def body() -> None:
        try:
            tuning.set_realtime_priority(1)
        except PermissionError as exc:
            outcome.append(exc)
            return
        outcome.append(os.sched_getscheduler(0))
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(timeout=10)
    assert len(outcome) == 1
    if isinstance(outcome[0], PermissionError):
        assert "CAP_SYS_NICE" in str(outcome[0])
    else:
        assert outcome[0] == os.SCHED_FIFO
