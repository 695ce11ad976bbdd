"""Zero-copy lending: a slot the kernel still reads is never FREE, so never reused."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from horizon_core.buffers import Batch, BufferPool, SlotOp, SlotState
from horizon_core.errors import PoolExhaustedError, SlotStateError

FREE, POSTED, FILLED = SlotState.FREE, SlotState.POSTED, SlotState.FILLED


def test_a_lent_slot_released_waits_for_its_completion() -> None:
    pool = BufferPool(4, 16)
    batch = pool.batch(2)
    batch.append(b"one")
    batch.append(b"two")
    assert pool.lend_to_kernel(0) == 1
    assert pool.lend_to_kernel(0) == 2  # sent twice before either completed
    batch.release()
    assert [pool.state(s) for s in (0, 1)] == [POSTED, FREE]
    assert pool.lent == 2
    # The deferred slot is not handed out again: append takes slot 1, then the batch is full.
    batch.append(b"three")
    with pytest.raises(PoolExhaustedError):
        batch.append(b"four")
    assert pool.return_from_kernel(0) == 1
    assert pool.state(0) is POSTED
    assert pool.return_from_kernel(0) == 0
    assert pool.state(0) is FREE
    assert pool.lent == 0
    pool.check_invariants()


def test_a_completion_before_release_leaves_the_slot_filled() -> None:
    pool = BufferPool(2, 16)
    batch = pool.batch(2)
    batch.append(b"x")
    pool.lend_to_kernel(0)
    assert pool.return_from_kernel(0) == 0
    assert pool.state(0) is FILLED
    batch.release()
    assert pool.state(0) is FREE


def test_lending_and_returning_refuse_what_is_not_in_flight() -> None:
    pool = BufferPool(2, 16)
    batch = pool.batch(2)
    with pytest.raises(SlotStateError, match="only a datagram being sent can be lent"):
        pool.lend_to_kernel(0)
    batch.append(b"x")
    with pytest.raises(ValueError, match="slot 0 has no zero-copy send in flight"):
        pool.return_from_kernel(0)
    with pytest.raises(IndexError):
        pool.lend_to_kernel(2)


def test_a_held_slot_refuses_cancel_and_complete_and_cannot_be_freed() -> None:
    pool = BufferPool(2, 16)
    batch = pool.batch(2)
    batch.append(b"x")
    pool.lend_to_kernel(0)
    assert pool.apply(0, SlotOp.RELEASE) is POSTED  # RELEASE of a held slot is DEFER
    for op in (SlotOp.CANCEL, SlotOp.COMPLETE, SlotOp.RETURN):
        with pytest.raises(SlotStateError, match="the kernel holds it for 1 zero-copy sends"):
            pool.apply(0, op)
    with pytest.raises(SlotStateError, match="free_batch"):
        pool.free_batch(batch)
    with pytest.raises(SlotStateError):
        batch.begin_receive()
    pool.return_from_kernel(0)
    pool.free_batch(batch)
    pool.check_invariants()


class LendingMachine(RuleBasedStateMachine):
    """Any interleaving of append, zero-copy send, release and completion, checked against a
    model: a slot with a send in flight is never FREE, and every completion frees what it must."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = BufferPool(6, 8)
        self.batches: list[Batch] = [self.pool.batch(3), self.pool.batch(3)]
        self.in_flight: list[int] = []  # one entry per zero-copy send awaiting completion
        self.contents: dict[int, bytes] = {}  # slot -> what a send in flight must still read

    @rule(which=st.integers(0, 1), data=st.binary(min_size=1, max_size=8))
    def append(self, which: int, data: bytes) -> None:
        batch = self.batches[which]
        try:
            index = batch.append(data)
        except PoolExhaustedError:
            assert self.pool.states.count(FREE, batch.start, batch.start + 3) == 0
            return
        slot = batch.slot(index)
        assert slot not in self.in_flight, "a slot the kernel reads was handed out again"
        self.contents[slot] = data

    @rule(which=st.integers(0, 1), data=st.data())
    def send_zero_copy(self, which: int, data: st.DataObject) -> None:
        batch = self.batches[which]
        if not len(batch):
            return
        slot = data.draw(st.sampled_from(batch.order.tolist()))
        self.pool.lend_to_kernel(slot)
        self.in_flight.append(slot)

    @rule(which=st.integers(0, 1))
    def release(self, which: int) -> None:
        self.batches[which].release()

    @precondition(lambda self: bool(self.in_flight))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        # Completions may arrive in any order (coalesced ranges, several sockets).
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        slot = self.in_flight.pop(index)
        state = self.pool.state(slot)
        left = self.pool.return_from_kernel(slot)
        assert left == self.in_flight.count(slot)
        if left == 0 and state is POSTED:
            assert self.pool.state(slot) is FREE
        else:
            assert self.pool.state(slot) is state

    @invariant()
    def held_slots_are_never_free_and_keep_their_bytes(self) -> None:
        pool = self.pool
        for slot in set(self.in_flight):
            assert pool.state(slot) is not FREE
            assert pool.kernel_holds[slot] == self.in_flight.count(slot)
            view = pool.slot_view(slot)
            data = self.contents[slot]
            assert bytes(view[: len(data)]) == data
        assert pool.lent == len(self.in_flight)
        pool.check_invariants()


TestLending = LendingMachine.TestCase
TestLending.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
