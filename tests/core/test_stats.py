"""Stats counters, histogram bucketing and snapshots."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.stats import HISTOGRAM_BUCKETS, Stats, StatsSnapshot, histogram_bucket


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(st.integers(1, 2**40))
def test_histogram_bucket_bounds(size: int) -> None:
    bucket = histogram_bucket(size)
    assert 0 <= bucket < HISTOGRAM_BUCKETS
    assert 2**bucket <= size
    if bucket < HISTOGRAM_BUCKETS - 1:
        assert size < 2 ** (bucket + 1)
    else:
        assert size >= 2 ** (HISTOGRAM_BUCKETS - 1)  # the open-ended last bucket


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(st.integers(1, 2**20))
def test_histogram_bucket_is_monotonic(size: int) -> None:
    assert histogram_bucket(size) <= histogram_bucket(size + 1)


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "4"])
def test_histogram_bucket_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        histogram_bucket(bad)  # type: ignore[arg-type]


receive = st.tuples(st.just("recv"), st.integers(0, 5000), st.integers(0, 10**6), st.integers(0, 5))
send = st.tuples(st.just("send"), st.integers(0, 5000), st.integers(0, 5000), st.integers(0, 10**6))


@settings(deadline=None)  # shared CI machines are slow; the work per example is tiny
@given(st.lists(st.one_of(receive, send), max_size=30), st.integers(0, 30))
def test_counters_match_a_model(calls: list[tuple[str, int, int, int]], split: int) -> None:
    stats = Stats()
    model_recv = [0] * HISTOGRAM_BUCKETS
    model_send = [0] * HISTOGRAM_BUCKETS
    totals = {
        "datagrams_received": 0,
        "bytes_received": 0,
        "truncated": 0,
        "recv_calls": 0,
        "datagrams_sent": 0,
        "bytes_sent": 0,
        "partial_sends": 0,
        "send_calls": 0,
    }
    before = StatsSnapshot()
    for n, (kind, a, b, c) in enumerate(calls):
        if n == split:
            before = stats.snapshot()
        if kind == "recv":
            truncated = min(c, a)
            stats.record_receive(a, b, truncated)
            totals["recv_calls"] += 1
            totals["datagrams_received"] += a
            totals["bytes_received"] += b
            totals["truncated"] += truncated
            if a:
                model_recv[histogram_bucket(a)] += 1
        else:
            requested, sent = max(a, b), min(a, b)
            stats.record_send(requested, sent, c)
            totals["send_calls"] += 1
            totals["datagrams_sent"] += sent
            totals["bytes_sent"] += c
            totals["partial_sends"] += sent < requested
            if sent:
                model_send[histogram_bucket(sent)] += 1
    snap = stats.snapshot()
    for name, value in totals.items():
        assert getattr(snap, name) == value
    assert snap.recv_batch_sizes == tuple(model_recv)
    assert snap.send_batch_sizes == tuple(model_send)
    assert sum(snap.recv_batch_sizes) == sum(1 for k, a, _, _ in calls if k == "recv" and a)
    # Subtraction gives the activity since `before`; adding it back restores the totals.
    delta = snap - before
    for name in totals:
        assert getattr(before, name) + getattr(delta, name) == getattr(snap, name)
    assert all(d >= 0 for d in delta.recv_batch_sizes + delta.send_batch_sizes)
    json.dumps(snap.to_dict())


def test_snapshot_is_frozen_and_detached() -> None:
    stats = Stats()
    snap = stats.snapshot()
    stats.record_receive(3, 30)
    assert snap.recv_calls == 0
    assert snap.recv_batch_sizes == (0,) * HISTOGRAM_BUCKETS
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        snap.errors = 1  # type: ignore[misc]


def test_to_dict_has_every_field() -> None:
    stats = Stats(kernel_drops=4)
    stats.would_block += 2
    stats.errors += 1
    data = stats.snapshot().to_dict()
    assert set(data) == {f.name for f in attrs.fields(StatsSnapshot)}
    assert data["would_block"] == 2
    assert data["errors"] == 1
    assert data["kernel_drops"] == 4
    assert data["send_batch_sizes"] == [0] * HISTOGRAM_BUCKETS


@pytest.mark.parametrize(
    ("after", "before", "expected"),
    [(10, 4, 6), (10, None, 10), (None, 4, None), (None, None, None)],
)
def test_kernel_drops_delta(after: int | None, before: int | None, expected: int | None) -> None:
    delta = StatsSnapshot(kernel_drops=after) - StatsSnapshot(kernel_drops=before)
    assert delta.kernel_drops == expected


def test_sub_with_other_types_is_not_implemented() -> None:
    with pytest.raises(TypeError):
        StatsSnapshot() - 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "method"),
    [
        ((-1, 0, 0), "record_receive"),
        ((1, -1, 0), "record_receive"),
        ((1, 10, 2), "record_receive"),
        ((1, 2, 10), "record_send"),
        ((2, 1, -1), "record_send"),
    ],
)
def test_record_rejects_impossible_counts(args: tuple[int, int, int], method: str) -> None:
    stats = Stats()
    with pytest.raises(ValueError, match=method):
        getattr(stats, method)(*args)
    assert stats.snapshot() == StatsSnapshot()
