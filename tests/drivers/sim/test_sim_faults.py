"""FaultPlan: validation, and the pure decisions it draws from a seeded random source."""

from __future__ import annotations

import errno
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.errors import ConfigError
from horizon_core.faults import FaultPlan
from horizon_core.strategies import fault_plans

PROBABILITIES = [
    "loss",
    "duplication",
    "reordering",
    "truncation",
    "port_unreachable",
    "send_eagain",
    "send_enobufs",
    "recv_eagain",
    "partial_write",
]


class CountingRandom(random.Random):
    """A Random that counts its draws."""

    draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()


def test_none_is_the_default_and_draws_nothing() -> None:
    plan = FaultPlan.none()
    rng = CountingRandom(1)
    assert plan == FaultPlan()
    assert plan.is_none
    fate = plan.datagram_fate(rng, 100)
    assert fate.delivers
    assert (fate.length, fate.delay) == (100, 0.0)
    assert plan.send_error(rng) is None
    assert not plan.recv_blocks(rng)
    assert not plan.stream_send_blocks(rng)
    assert plan.accepted_bytes(rng, 100) == 100
    assert rng.draws == 0


@pytest.mark.parametrize("field", PROBABILITIES)
@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf"), True, "0.5", None])
def test_probabilities_are_checked(field: str, bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan(**{field: bad})  # type: ignore[arg-type]
    assert info.value.fields == (field,)
    assert info.value.what == "FaultPlan"


@pytest.mark.parametrize("field", ["latency", "reorder_delay"])
@pytest.mark.parametrize(
    "bad", [(1.0, 0.5), (-1.0, 1.0), (0.0, float("inf")), (0.0,), 0.5, (0.0, 3601.0), (True, 1)]
)
def test_delay_ranges_are_checked(field: str, bad: object) -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan(**{field: bad})  # type: ignore[arg-type]
    assert info.value.fields == (field,)


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        FaultPlan(loss=2, partial_write=-1, latency=(3, 1))
    assert info.value.fields == ("loss", "latency", "partial_write")


def test_reordering_needs_an_extra_delay() -> None:
    with pytest.raises(ConfigError, match="reorder_delay"):
        FaultPlan(reordering=0.5)
    assert FaultPlan(reordering=0.5, reorder_delay=(0.0, 0.1)).reordering == 0.5


def test_lists_are_accepted_for_ranges_and_evolve_revalidates() -> None:
    plan = FaultPlan(latency=[0.1, 0.2])
    assert plan.latency == (0.1, 0.2)
    with pytest.raises(ConfigError):
        attrs.evolve(plan, loss=3)
    assert plan.to_mapping()["latency"] == [0.1, 0.2]


@settings(max_examples=200)
@given(fault_plans(), st.integers(0, 2**32), st.integers(0, 2000))
def test_decisions_replay_from_the_seed_and_stay_in_range(plan: FaultPlan, seed: int, size: int) -> None:
    fate = plan.datagram_fate(random.Random(seed), size)
    assert plan.datagram_fate(random.Random(seed), size) == fate
    low, high = plan.latency
    if fate.delivers:
        extra = plan.reorder_delay[1] if fate.reordered else 0.0
        assert low <= fate.delay <= high + extra + 1e-12
        assert 0 <= fate.length <= size
        assert fate.truncated == (fate.length < size)
    rng = random.Random(seed)
    taken = plan.accepted_bytes(rng, size)
    assert (taken == size) if size < 2 else (1 <= taken <= size)
    assert plan.send_error(rng) in (None, errno.EAGAIN, errno.ENOBUFS)


def test_certain_faults_always_happen() -> None:
    rng = random.Random(0)
    assert FaultPlan(loss=1).datagram_fate(rng, 10).lost
    assert FaultPlan(port_unreachable=1).datagram_fate(rng, 10).port_unreachable
    cut = FaultPlan(truncation=1).datagram_fate(rng, 10)
    assert cut.truncated
    assert cut.length < 10
    assert not FaultPlan(truncation=1).datagram_fate(rng, 0).truncated
    assert FaultPlan(duplication=1).datagram_fate(rng, 10).duplicated
    assert not FaultPlan(duplication=1).datagram_fate(rng, 10, copy=True).duplicated
    assert FaultPlan(send_eagain=1).send_error(rng) == errno.EAGAIN
    assert FaultPlan(send_enobufs=1).send_error(rng) == errno.ENOBUFS
    assert FaultPlan(partial_write=1).accepted_bytes(rng, 2) == 1
    assert FaultPlan(partial_write=1).accepted_bytes(rng, 1) == 1
    with pytest.raises(ValueError):
        FaultPlan().datagram_fate(rng, -1)


@settings(max_examples=50)
@given(fault_plans())
def test_strategy_plans_are_valid(plan: FaultPlan) -> None:
    assert attrs.evolve(plan) == plan
