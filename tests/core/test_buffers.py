"""BufferPool and Batch: the slot lifecycle table, swept and model-checked, and the hot paths."""

from __future__ import annotations

import gc
import ipaddress
import itertools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from horizon_core.addresses import PACKED_ADDRESS_SIZE, SocketAddress
from horizon_core.buffers import (
    TRANSITIONS,
    Batch,
    BufferPool,
    Datagram,
    SlotOp,
    SlotState,
)
from horizon_core.errors import PoolExhaustedError, SlotStateError

FREE, POSTED, FILLED = SlotState.FREE, SlotState.POSTED, SlotState.FILLED

PEERS: list[SocketAddress | None] = [
    None,
    SocketAddress.parse("127.0.0.1:9"),
    SocketAddress.parse("[fe80::1%2]:443"),
    SocketAddress(ipaddress.IPv6Address("2001:db8::1"), 53, 0x12345, 0),
]
peers = st.sampled_from(PEERS)


def snapshot(pool: BufferPool) -> tuple[Any, ...]:
    """Everything observable about a pool, for byte-for-byte comparisons."""
    return (
        bytes(pool.states),
        bytes(pool.memory),
        pool.lengths.tobytes(),
        pool.original_lengths.tobytes(),
        bytes(pool.truncated),
        pool.segment_sizes.tobytes(),
        bytes(pool.addresses),
        bytes(pool._reserved),
        {start: b.order.tolist() for start, b in pool._batches.items()},
    )


def drive(batch: Batch, slot: int, state: SlotState, data: bytes = b"xyz") -> None:
    """Move a FREE slot of ``batch`` to ``state`` through legal operations only."""
    if state is POSTED:
        batch.post(slot)
    elif state is FILLED:
        batch.post(slot)
        batch.pool.slot_view(slot)[: len(data)] = data
        batch.complete(slot, len(data), address=PEERS[1])


# -- the table ---------------------------------------------------------------------------


def test_transition_table_is_the_documented_lifecycle() -> None:
    assert dict(TRANSITIONS) == {
        (FREE, SlotOp.POST): POSTED,
        (POSTED, SlotOp.COMPLETE): FILLED,
        (POSTED, SlotOp.CANCEL): FREE,
        (FREE, SlotOp.WRITE): FILLED,
        (FILLED, SlotOp.RELEASE): FREE,
        (FILLED, SlotOp.DEFER): POSTED,
        (POSTED, SlotOp.RETURN): FREE,
    }
    with pytest.raises(TypeError):
        TRANSITIONS[(FREE, SlotOp.RELEASE)] = FREE  # type: ignore[index]


ALL_PAIRS = list(itertools.product(SlotState, SlotOp))


@pytest.mark.parametrize(("state", "op"), ALL_PAIRS, ids=[f"{s.name}-{o.name}" for s, o in ALL_PAIRS])
@settings(max_examples=20, deadline=None)
@given(
    background=st.lists(st.sampled_from(SlotState), min_size=3, max_size=3),
    position=st.integers(0, 3),
)
def test_every_state_with_every_operation(
    state: SlotState, op: SlotOp, background: list[SlotState], position: int
) -> None:
    """h2 style: each (state, op) pair either follows the table or raises and changes nothing."""
    pool = BufferPool(6, 8)
    pool.batch(1)  # slot 0 reserved by another batch
    batch = pool.batch(4)  # slots 1..4; slot 5 unreserved
    states = [*background[:position], state, *background[position:]]
    for offset, each in enumerate(states):
        drive(batch, batch.start + offset, each, bytes([offset]) * (offset + 1))
    slot = batch.start + position
    before = snapshot(pool)
    order_before = batch.order.tolist()
    expected = TRANSITIONS.get((state, op))
    if expected is not None and op in (SlotOp.DEFER, SlotOp.RETURN):
        # The zero-copy steps need a kernel hold (tests/core/test_buffers_lending.py): with none,
        # they are refused like any illegal pair.
        with pytest.raises(SlotStateError, match="no zero-copy send holds it"):
            pool.apply(slot, op)
        assert snapshot(pool) == before
    elif expected is None:
        with pytest.raises(SlotStateError) as info:
            pool.apply(slot, op)
        error = info.value
        assert (error.slot, error.state, error.operation) == (slot, state.name, op.value)
        assert error.allowed_from == tuple(s.name for (s, o) in TRANSITIONS if o is op)
        assert f"slot {slot}" in str(error)
        assert state.name in str(error)
        assert snapshot(pool) == before
    else:
        assert pool.apply(slot, op) is expected
        assert pool.state(slot) is expected
        if expected is FILLED:
            assert batch.order.tolist() == [*order_before, slot]
        elif state is FILLED:
            assert batch.order.tolist() == [s for s in order_before if s != slot]
        else:
            assert batch.order.tolist() == order_before
        # Only the one state byte changed.
        after = snapshot(pool)
        assert after[1:8] == before[1:8]
        changed = [i for i in range(pool.slot_count) if after[0][i] != before[0][i]]
        assert changed == [slot]
    pool.check_invariants()


@pytest.mark.parametrize("state", list(SlotState))
@pytest.mark.parametrize("method", ["post", "complete", "cancel", "record"])
def test_per_slot_batch_methods_follow_the_table(state: SlotState, method: str) -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    drive(batch, 2, state)
    calls: dict[str, tuple[SlotOp | None, Callable[[], None]]] = {
        "post": (SlotOp.POST, lambda: batch.post(2)),
        "complete": (SlotOp.COMPLETE, lambda: batch.complete(2, 4, original_length=9)),
        "cancel": (SlotOp.CANCEL, lambda: batch.cancel(2)),
        "record": (None, lambda: batch.record(2, 4, 4, PEERS[2])),
    }
    op, call = calls[method]
    legal = state is POSTED if op is None else (state, op) in TRANSITIONS
    before = snapshot(pool)
    if legal:
        call()
        expected = state if op is None else TRANSITIONS[(state, op)]
        assert pool.state(2) is expected
    else:
        with pytest.raises(SlotStateError, match=f"slot 2: it is {state.name}"):
            call()
        assert snapshot(pool) == before
    pool.check_invariants()


@settings(max_examples=60, deadline=None)
@given(
    states=st.lists(st.sampled_from(SlotState), min_size=4, max_size=4),
    filled=st.integers(0, 4),
    operation=st.sampled_from(["begin_receive", "commit_receive", "release", "free_batch"]),
)
def test_bulk_operations_check_the_whole_run(states: list[SlotState], filled: int, operation: str) -> None:
    pool = BufferPool(6, 8)
    batch = pool.batch(4)
    for offset, state in enumerate(states):
        drive(batch, offset, state)
    before = snapshot(pool)
    if operation == "begin_receive":
        legal = all(s is FREE for s in states)
        call: Callable[[], object] = batch.begin_receive
    elif operation == "commit_receive":
        legal = all(s is POSTED for s in states)
        call = lambda: batch.commit_receive(filled)  # noqa: E731
    elif operation == "release":
        legal = True
        call = batch.release
    else:
        legal = all(s is FREE for s in states)
        call = lambda: pool.free_batch(batch)  # noqa: E731
    if legal:
        call()
        if operation == "begin_receive":
            assert bytes(pool.states[:4]) == bytes([POSTED]) * 4
        elif operation == "commit_receive":
            assert bytes(pool.states[:4]) == bytes([FILLED] * filled + [FREE] * (4 - filled))
            assert batch.order.tolist() == list(range(filled))
        elif operation == "release":
            expected = [FREE if s is FILLED else s for s in states]
            assert list(pool.states[:4]) == expected
            assert len(batch) == 0
    else:
        with pytest.raises(SlotStateError):
            call()
        assert snapshot(pool) == before
    pool.check_invariants()


def test_begin_receive_on_a_full_batch_says_release_first() -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    batch.append(b"a")
    batch.append(b"b")
    with pytest.raises(SlotStateError) as info:
        batch.begin_receive()
    assert "batch still holds 2 datagrams; call release() first" in str(info.value)
    assert (info.value.slot, info.value.state, info.value.operation) == (0, "FILLED", "post")
    assert info.value.allowed_from == ("FREE",)
    batch.release()
    assert batch.begin_receive() == (0, 4)


def test_commit_without_begin_says_so() -> None:
    batch = BufferPool(4, 8).batch(4)
    with pytest.raises(SlotStateError, match=r"call begin_receive\(\) first"):
        batch.commit_receive(1)


@pytest.mark.parametrize("filled", [-1, 5, True, 1.0, None])
def test_commit_receive_validates_filled(filled: object) -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    batch.begin_receive()
    before = snapshot(pool)
    with pytest.raises(ValueError, match="filled must be an int from 0 to 4"):
        batch.commit_receive(filled)  # type: ignore[arg-type]
    assert snapshot(pool) == before


# -- model-based -------------------------------------------------------------------------

SLOTS = 10
SIZE = 8
datagrams = st.binary(max_size=SIZE + 4)  # some longer than a slot: truncation


class PoolMachine(RuleBasedStateMachine):
    """BufferPool/Batch against a model: a state per slot, an order list per batch, payloads."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = BufferPool(SLOTS, SIZE)
        self.states = [FREE] * SLOTS
        self.reserved = [False] * SLOTS
        self.live: list[tuple[Batch, list[int]]] = []
        self.freed: list[Batch] = []
        # slot -> (payload, original length, address, segment size) of FILLED slots
        self.content: dict[int, tuple[bytes, int, SocketAddress | None, int]] = {}

    def pick(self, index: int) -> tuple[Batch, list[int]]:
        return self.live[index % len(self.live)]

    def run(self, batch: Batch) -> range:
        return range(batch.start, batch.start + batch.capacity)

    def expect_refused(self, call: Callable[[], object], error: type[Exception]) -> None:
        before = snapshot(self.pool)
        with pytest.raises(error):
            call()
        assert snapshot(self.pool) == before

    @initialize(capacity=st.integers(1, SLOTS))
    def first_batch(self, capacity: int) -> None:
        self.make_batch(capacity)

    @rule(capacity=st.integers(1, SLOTS))
    def make_batch(self, capacity: int) -> None:
        fits = [s for s in range(SLOTS - capacity + 1) if not any(self.reserved[s : s + capacity])]
        if not fits:
            self.expect_refused(lambda: self.pool.batch(capacity), PoolExhaustedError)
            return
        batch = self.pool.batch(capacity)
        assert batch.start == fits[0]  # first fit
        assert batch.capacity == capacity
        for s in self.run(batch):
            self.reserved[s] = True
        self.live.append((batch, []))

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99))
    def free_batch(self, index: int) -> None:
        batch, _ = self.pick(index)
        if all(self.states[s] is FREE for s in self.run(batch)):
            self.pool.free_batch(batch)
            for s in self.run(batch):
                self.reserved[s] = False
            self.live = [entry for entry in self.live if entry[0] is not batch]
            self.freed.append(batch)
        else:
            self.expect_refused(lambda: self.pool.free_batch(batch), SlotStateError)

    @precondition(lambda self: self.freed)
    @rule(index=st.integers(0, 99))
    def use_freed_batch(self, index: int) -> None:
        batch = self.freed[index % len(self.freed)]
        self.expect_refused(batch.begin_receive, ValueError)
        self.expect_refused(lambda: batch.append(b"x"), ValueError)
        self.expect_refused(lambda: self.pool.free_batch(batch), ValueError)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99))
    def begin_receive(self, index: int) -> None:
        batch, _ = self.pick(index)
        if all(self.states[s] is FREE for s in self.run(batch)):
            assert batch.begin_receive() == (batch.start, batch.capacity)
            for s in self.run(batch):
                self.states[s] = POSTED
        else:
            self.expect_refused(batch.begin_receive, SlotStateError)

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 99),
        fill=st.integers(0, SLOTS),
        incoming=st.lists(st.tuples(datagrams, peers, st.integers(0, 3)), max_size=SLOTS),
        through_record=st.booleans(),
    )
    def commit_receive(
        self,
        index: int,
        fill: int,
        incoming: list[tuple[bytes, SocketAddress | None, int]],
        through_record: bool,
    ) -> None:
        batch, order = self.pick(index)
        filled = min(fill, batch.capacity, len(incoming))
        if not all(self.states[s] is POSTED for s in self.run(batch)):
            self.expect_refused(lambda: batch.commit_receive(filled), SlotStateError)
            return
        pool = self.pool
        for slot, (data, peer, segment) in zip(self.run(batch), incoming[:filled], strict=False):
            stored = data[:SIZE]
            pool.slot_view(slot)[: len(stored)] = stored
            if through_record:  # what a pure-Python driver does
                batch.record(slot, len(stored), len(data), peer, segment)
            else:  # what the C driver does: write the arrays in place
                pool.lengths[slot] = len(stored)
                pool.original_lengths[slot] = len(data)
                pool.truncated[slot] = len(data) > SIZE
                pool.segment_sizes[slot] = segment
                offset = slot * PACKED_ADDRESS_SIZE
                if peer is None:
                    pool.addresses[offset : offset + PACKED_ADDRESS_SIZE] = bytes(32)
                else:
                    peer.pack_into(memoryview(pool.addresses), offset)
            self.content[slot] = (stored, len(data), peer, segment)
        batch.commit_receive(filled)
        for offset, slot in enumerate(self.run(batch)):
            self.states[slot] = FILLED if offset < filled else FREE
        order[:] = list(self.run(batch))[:filled]

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99), data=datagrams, peer=peers)
    def append(self, index: int, data: bytes, peer: SocketAddress | None) -> None:
        batch, order = self.pick(index)
        free = [s for s in self.run(batch) if self.states[s] is FREE]
        if len(data) > SIZE:
            self.expect_refused(lambda: batch.append(data, peer), ValueError)
        elif not free:
            self.expect_refused(lambda: batch.append(data, peer), PoolExhaustedError)
        else:
            assert batch.append(data, peer) == len(order)
            self.states[free[0]] = FILLED
            order.append(free[0])
            self.content[free[0]] = (data, len(data), peer, 0)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99))
    def release(self, index: int) -> None:
        batch, order = self.pick(index)
        batch.release()
        for slot in order:
            self.states[slot] = FREE
            del self.content[slot]
        order.clear()

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99), position=st.integers(0, SLOTS - 1))
    def post(self, index: int, position: int) -> None:
        batch, _ = self.pick(index)
        slot = batch.start + position % batch.capacity
        if self.states[slot] is FREE:
            batch.post(slot)
            self.states[slot] = POSTED
        else:
            self.expect_refused(lambda: batch.post(slot), SlotStateError)

    @precondition(lambda self: self.live)
    @rule(index=st.integers(0, 99), position=st.integers(0, SLOTS - 1))
    def cancel(self, index: int, position: int) -> None:
        batch, _ = self.pick(index)
        slot = batch.start + position % batch.capacity
        if self.states[slot] is POSTED:
            batch.cancel(slot)
            self.states[slot] = FREE
        else:
            self.expect_refused(lambda: batch.cancel(slot), SlotStateError)

    @precondition(lambda self: self.live)
    @rule(
        index=st.integers(0, 99),
        position=st.integers(0, SLOTS - 1),
        data=datagrams,
        peer=peers,
        segment=st.integers(0, 3),
    )
    def complete(
        self, index: int, position: int, data: bytes, peer: SocketAddress | None, segment: int
    ) -> None:
        batch, order = self.pick(index)
        slot = batch.start + position % batch.capacity
        stored = data[:SIZE]

        def call() -> None:
            batch.complete(
                slot,
                len(stored),
                original_length=len(data),
                address=peer,
                segment_size=segment,
            )

        if self.states[slot] is POSTED:
            self.pool.slot_view(slot)[: len(stored)] = stored  # the kernel's write
            call()
            self.states[slot] = FILLED
            order.append(slot)
            self.content[slot] = (stored, len(data), peer, segment)
        else:
            self.expect_refused(call, SlotStateError)

    @invariant()
    def pool_matches_model(self) -> None:
        pool = self.pool
        pool.check_invariants()
        assert list(pool.states) == [int(s) for s in self.states]
        counts = pool.counts()
        assert sum(counts.values()) == SLOTS
        for state in SlotState:
            assert counts[state] == self.states.count(state)
        for batch, order in self.live:
            assert batch.order.tolist() == order
            assert len(batch) == len(order)
            assert batch.remaining == batch.capacity - len(order)
            got = [
                (bytes(d.payload), d.original_length, d.address, d.segment_size, d.truncated) for d in batch
            ]
            want = [d for s in order for d in split_gro(*self.content[s])]
            assert got == want
            assert batch.datagram_count == len(want)
            for i, slot in enumerate(order):
                assert batch.slot(i) == slot
                assert bytes(batch.payload(i)) == self.content[slot][0]
                assert batch.address(i) == self.content[slot][2]
                assert batch.is_truncated(i) == (self.content[slot][1] > len(self.content[slot][0]))
                assert batch.original_length(i) == self.content[slot][1]
                assert batch.segment_size(i) == self.content[slot][3]
            # A POSTED slot is never handed out.
            assert not any(self.states[s] is POSTED for s in order)


PoolMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None)
TestPoolMachine = PoolMachine.TestCase


# -- hot paths ---------------------------------------------------------------------------


def receive_cycles(batch: Batch, count: int) -> None:
    fills = (0, 1, batch.capacity, batch.capacity - 1, 17)
    for i in range(count):
        batch.begin_receive()
        batch.commit_receive(fills[i % 5])
        batch.release()


def test_receive_cycle_does_not_allocate() -> None:
    pool = BufferPool(256, 64)
    pool.batch(3)
    batch = pool.batch(64)
    receive_cycles(batch, 1000)  # warm up caches, array buffers, method lookups
    gc.collect()
    before = sys.getallocatedblocks()
    receive_cycles(batch, 100_000)
    grown = sys.getallocatedblocks() - before
    assert grown < 100, f"begin/commit/release grew the heap by {grown} blocks"
    pool.check_invariants()


def count_calls(action: Callable[[], None]) -> int:
    """How many Python and C function calls ``action`` makes."""
    calls = 0

    def profiler(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profiler)
    try:
        action()
    finally:
        sys.setprofile(None)
    return calls


@pytest.mark.parametrize("fill", ["none", "half", "all"])
def test_bulk_operations_make_the_same_calls_at_any_capacity(fill: str) -> None:
    """No per-slot Python work: the call count does not depend on the batch size."""

    def calls_for(capacity: int) -> tuple[int, int, int]:
        batch = BufferPool(capacity, 16).batch(capacity)
        filled = {"none": 0, "half": capacity // 2, "all": capacity}[fill]
        return (
            count_calls(lambda: batch.begin_receive() and None),
            count_calls(lambda: batch.commit_receive(filled)),
            count_calls(batch.release),
        )

    assert calls_for(8) == calls_for(4096)


# -- pool construction and reservation ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0,), "slot_count"),
        ((1_048_577,), "slot_count"),
        ((True,), "slot_count"),
        ((4.0,), "slot_count"),
        ((4, 0), "slot_size"),
        ((4, 262_145), "slot_size"),
        ((4, False), "slot_size"),
        ((1_048_576, 4096), r"slot_count \* slot_size"),
    ],
)
def test_pool_arguments_are_validated(args: tuple[Any, ...], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        BufferPool(*args)


def test_pool_layout() -> None:
    pool = BufferPool(4, 100)
    assert pool.memory.nbytes == 400
    assert not pool.memory.readonly
    assert pool.memory.format == "B"
    assert len(pool.states) == len(pool.truncated) == 4
    for array in (pool.lengths, pool.original_lengths, pool.segment_sizes):
        assert array.typecode == "I"
        assert len(array) == 4
    assert len(pool.addresses) == 4 * PACKED_ADDRESS_SIZE
    assert pool.counts() == {FREE: 4, POSTED: 0, FILLED: 0}
    assert "FREE=4" in repr(pool)


def test_views_are_zero_copy() -> None:
    pool = BufferPool(4, 16)
    batch = pool.batch(4)
    view = pool.slot_view(2)
    assert view.obj is pool.memory.obj
    view[:3] = b"abc"
    assert bytes(pool.memory[32:35]) == b"abc"
    batch.post(2)
    batch.complete(2, 3)
    payload = batch.payload(0)
    assert payload.obj is pool.memory.obj
    pool.memory[32] = ord("z")
    assert bytes(payload) == b"zbc"


def test_metadata_arrays_are_writable_through_the_buffer_protocol() -> None:
    # What the Cython driver does with typed memoryviews.
    pool = BufferPool(4, 16)
    batch = pool.batch(4)
    first, _ = batch.begin_receive()
    memoryview(pool.lengths)[first] = 5
    memoryview(pool.original_lengths)[first] = 9
    memoryview(pool.truncated)[first] = 1
    memoryview(pool.segment_sizes)[first] = 0
    PEERS[2].pack_into(memoryview(pool.addresses), first * PACKED_ADDRESS_SIZE)  # type: ignore[union-attr]
    pool.slot_view(first)[:5] = b"hello"
    batch.commit_receive(1)
    assert list(batch) == [Datagram(batch.payload(0), PEERS[2], True, 9, 0)]
    assert bytes(batch.payload(0)) == b"hello"


def test_batches_are_first_fit_and_never_overlap() -> None:
    pool = BufferPool(10, 8)
    a = pool.batch(4)
    b = pool.batch(4)
    assert (a.start, b.start) == (0, 4)
    with pytest.raises(PoolExhaustedError, match="no run of 3 free slots"):
        pool.batch(3)
    pool.free_batch(a)
    c = pool.batch(3)
    assert c.start == 0
    d = pool.batch(2)
    assert d.start == 8
    pool.check_invariants()


@pytest.mark.parametrize("capacity", [0, 11, True, 2.0])
def test_batch_capacity_is_validated(capacity: Any) -> None:
    with pytest.raises(ValueError, match="capacity must be an int from 1 to 10"):
        BufferPool(10, 8).batch(capacity)


def test_free_batch_refuses_foreign_and_freed_batches() -> None:
    pool, other = BufferPool(4, 8), BufferPool(4, 8)
    batch = other.batch(2)
    with pytest.raises(ValueError, match="not a live batch of this pool"):
        pool.free_batch(batch)
    other.free_batch(batch)
    with pytest.raises(ValueError, match="not a live batch"):
        other.free_batch(batch)
    with pytest.raises(ValueError, match="was freed"):
        batch.begin_receive()
    assert "(freed)" in repr(batch)


def test_free_batch_with_datagrams_names_the_slot() -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    batch.append(b"x")
    with pytest.raises(SlotStateError, match=r"cannot free_batch slot 0: it is FILLED"):
        pool.free_batch(batch)


def test_apply_needs_a_batch_and_a_valid_slot() -> None:
    pool = BufferPool(4, 8)
    with pytest.raises(ValueError, match="not in any batch"):
        pool.apply(1, SlotOp.WRITE)
    pool.batch(4)
    with pytest.raises(IndexError, match="slot must be an int from 0 to 3"):
        pool.apply(4, SlotOp.POST)
    with pytest.raises(ValueError, match="bogus"):
        pool.apply(0, "bogus")  # type: ignore[arg-type]
    with pytest.raises(IndexError):
        pool.state(-1)
    with pytest.raises(IndexError):
        pool.slot_view(4)


# -- composing ---------------------------------------------------------------------------


def test_append_fills_the_next_free_slot_and_reports_full() -> None:
    pool = BufferPool(6, 4)
    pool.batch(1)
    batch = pool.batch(3)
    batch.post(1)  # a posted slot is skipped, never overwritten
    assert batch.append(b"ab", PEERS[1]) == 0
    assert batch.append(bytearray(b"cd")) == 1
    assert batch.order.tolist() == [2, 3]
    with pytest.raises(PoolExhaustedError, match="2 datagrams and 1 posted receives"):
        batch.append(b"e")
    assert [bytes(d.payload) for d in batch] == [b"ab", b"cd"]
    assert [d.address for d in batch] == [PEERS[1], None]


def split_gro(
    stored: bytes, original: int, peer: SocketAddress | None, stride: int
) -> list[tuple[bytes, int, SocketAddress | None, int, bool]]:
    """The model of Batch iteration: (payload, true length, peer, stride, truncated) per datagram."""
    if not (stride and stored):
        return [(stored, original, peer, stride, original > len(stored))]
    out = []
    for at in range(0, len(stored), stride):
        kept, true_length = min(stride, len(stored) - at), min(stride, original - at)
        out.append((stored[at : at + kept], true_length, peer, stride, kept < true_length))
    return out


def test_append_validates_size_and_address() -> None:
    batch = BufferPool(2, 4).batch(2)
    with pytest.raises(ValueError, match="datagram of 5 bytes does not fit a slot of 4 bytes"):
        batch.append(b"12345")
    with pytest.raises(TypeError, match="address: expected an IP literal"):
        batch.append(b"1", ("example.com", 9))
    with pytest.raises(TypeError, match="address"):
        batch.append(b"1", 9)  # type: ignore[arg-type]
    assert len(batch) == 0


def test_append_takes_what_send_to_takes() -> None:
    batch = BufferPool(4, 16).batch(4)
    for address in (("127.0.0.1", 9), "127.0.0.1:9", SocketAddress.parse("127.0.0.1:9")):
        batch.append(b"x", address)
    assert {str(batch.address(i)) for i in range(3)} == {"127.0.0.1:9"}


def test_a_batch_releases_on_leaving_its_with_block() -> None:
    pool = BufferPool(2, 16)
    with pool.batch(2) as batch:
        batch.append(b"x")
        batch.append(b"y")
    assert len(batch) == 0
    assert pool.counts()[SlotState.FREE] == 2


def test_iteration_cuts_gro_slots_into_their_datagrams() -> None:
    pool = BufferPool(2, 4096)
    batch = pool.batch(2)
    peer = SocketAddress.parse("127.0.0.1:9")
    # What a GRO receive of 11 datagrams of 200 bytes leaves, the last one 4 bytes short.
    payload = b"".join(bytes([i]) * (200 if i < 10 else 196) for i in range(11))
    start, _ = batch.begin_receive()
    pool.slot_view(start)[: len(payload)] = payload
    pool.lengths[start], pool.original_lengths[start] = len(payload), len(payload)
    pool.segment_sizes[start] = 200
    peer.pack_into(pool.addresses, start * PACKED_ADDRESS_SIZE)
    batch.commit_receive(1)
    assert (len(batch), batch.datagram_count) == (1, 11)
    got = list(batch)
    assert [bytes(d.payload) for d in got] == [bytes([i]) * (200 if i < 10 else 196) for i in range(11)]
    assert {d.address for d in got} == {peer}
    assert not any(d.truncated for d in got)


def test_a_gro_slot_cut_short_yields_the_cut_datagram_truncated() -> None:
    stored, original = b"a" * 200 + b"b" * 50, 600  # the kernel kept 250 of 3 x 200 bytes
    pieces = split_gro(stored, original, None, 200)
    assert [(len(p[0]), p[1], p[4]) for p in pieces] == [(200, 200, False), (50, 200, True)]


def test_append_accepts_any_buffer() -> None:
    import array

    batch = BufferPool(2, 16).batch(2)
    batch.append(array.array("H", [1, 2]))
    batch.append(memoryview(b"hello")[1:4])
    assert [bytes(d.payload) for d in batch] == [bytes(array.array("H", [1, 2])), b"ell"]


def test_release_keeps_posted_slots() -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    batch.append(b"a")
    batch.post(1)
    batch.append(b"b")
    batch.release()
    assert list(pool.states) == [FREE, POSTED, FREE, FREE]
    assert len(batch) == 0


def test_complete_validates_metadata_before_changing_anything() -> None:
    pool = BufferPool(2, 8)
    batch = pool.batch(2)
    batch.post(0)
    before = snapshot(pool)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"length": 9}, "length must be an int from 0 to slot_size 8"),
        ({"length": 4, "original_length": 3}, "original_length must be"),
        ({"length": 4, "segment_size": -1}, "segment_size must be"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            batch.complete(0, **kwargs)
        assert snapshot(pool) == before
    with pytest.raises(TypeError, match="address"):
        batch.complete(0, 1, address="1.2.3.4:5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"outside this batch's run \[0, 2\)"):
        batch.complete(2, 1)
    assert snapshot(pool) == before


def test_reading_out_of_range_names_the_range() -> None:
    batch = BufferPool(2, 8).batch(2)
    batch.append(b"a")
    for read in (
        batch.payload,
        batch.address,
        batch.is_truncated,
        batch.original_length,
        batch.segment_size,
        batch.slot,
    ):
        with pytest.raises(IndexError, match=r"holds 1 \(valid indices 0..0\)"):
            read(1)
        with pytest.raises(IndexError):
            read(-1)


def test_iteration_never_yields_posted_slots() -> None:
    pool = BufferPool(4, 8)
    batch = pool.batch(4)
    for slot in range(4):
        batch.post(slot)
    batch.complete(2, 1)
    batch.complete(0, 2)

    def payloads() -> Iterator[bytes]:
        for d in batch:
            yield bytes(d.payload)

    assert batch.order.tolist() == [2, 0]  # fill order, not slot order
    assert len(list(payloads())) == 2
    pool.check_invariants()
