"""Buffer pool: one preallocated buffer cut into fixed slots, and the slot lifecycle.

Rules this module obeys (the slot lifecycle lives here and nowhere else):

* Every slot is in exactly one :class:`SlotState`, stored as one byte in ``BufferPool.states``.
* A slot moves only by a transition in :data:`TRANSITIONS`; anything else raises
  :class:`~horizon_core.errors.SlotStateError` naming the slot, its state, the operation and the
  states that operation is allowed from, and leaves the pool exactly as it was (every check runs
  before the first write).
* Read path: ``FREE -> POSTED -> FILLED -> FREE``. POSTED means the kernel owns the slot (a receive
  is in flight); FILLED means it holds a datagram the consumer has not released yet.
  Write path: ``FREE -> FILLED`` (the user composed an outgoing datagram), then ``FILLED -> FREE``.
* Zero-copy sends (MSG_ZEROCOPY): the kernel reads a sent slot's memory until its completion
  arrives, long after the send call returned. The driver counts each such send on the slot
  (``lend_to_kernel``), and one completion gives one back (``return_from_kernel``). Releasing a
  FILLED slot the kernel still holds is the DEFER step, ``FILLED -> POSTED`` (the kernel owns
  it again), and the last completion is the RETURN step, ``POSTED -> FREE``. So a slot is never
  FREE, and never handed out again, while the kernel may still read it.
* Who may move a slot:

  - drivers post slots and complete or cancel them (``begin_receive``/``commit_receive`` for
    readiness drivers, once per batch; ``post``/``complete``/``cancel`` for completion drivers,
    once per slot), and write the metadata of POSTED slots (lengths, addresses...);
  - the user appends outgoing datagrams (WRITE) and releases what it has consumed (RELEASE);
  - drivers and users read ``states``, and never write it.

* Slots are only ever moved inside a :class:`Batch`: a batch reserves a contiguous run of slots,
  ``Batch.order`` lists its FILLED slots in fill order, and the pool keeps the two in step.
* Payload views are zero-copy and valid until the batch is released; copy what must outlive it.

Bulk operations touch a whole run with slice assignments on ``states`` (C speed, O(1) Python
calls per batch), after checking the run against the source state the table gives for that
operation. The native driver calls them once per ``recvmmsg`` batch and writes the metadata arrays
directly through the buffer protocol.

Example:
    >>> from horizon_core.buffers import BufferPool
    >>> pool = BufferPool(8, 64)
    >>> batch = pool.batch(4)
    >>> first, count = batch.begin_receive()       # the driver points recvmmsg at these slots
    >>> pool.slot_view(first)[:5] = b"hello"        # ... the kernel writes the data
    >>> pool.lengths[first] = pool.original_lengths[first] = 5
    >>> batch.commit_receive(1)                    # one datagram arrived
    >>> bytes(batch.payload(0))
    b'hello'
    >>> batch.release()
"""

from __future__ import annotations

import array
import enum
from collections.abc import Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, NamedTuple, Self

from horizon_core.addresses import (
    PACKED_ADDRESS_SIZE,
    SocketAddress,
    SocketAddressLike,
    as_socket_address,
)
from horizon_core.errors import PoolExhaustedError, SlotStateError

if TYPE_CHECKING:
    # collections.abc.Buffer is 3.12+; typeshed ships the backport for the checker.
    from typing_extensions import Buffer
else:
    # At runtime any object with the buffer protocol is accepted (memoryview() checks it).
    Buffer = object

__all__ = [
    "MAX_SLOT_COUNT",
    "MAX_SLOT_SIZE",
    "MAX_POOL_BYTES",
    "TRANSITIONS",
    "Batch",
    "BufferPool",
    "Datagram",
    "SlotOp",
    "SlotState",
    "check_batch",
    "check_start",
]

#: Most slots one pool may have.
MAX_SLOT_COUNT = 1_048_576
#: Largest slot in bytes: room for a 64 KiB GRO super-datagram with headroom, times four.
MAX_SLOT_SIZE = 262_144
#: Largest pool in bytes; keeps every offset in a signed 32-bit int for the C driver.
MAX_POOL_BYTES = 2**31


class SlotState(enum.IntEnum):
    """The state of one slot, stored as one byte in ``BufferPool.states``.

    Example:
        >>> SlotState(2)
        <SlotState.FILLED: 2>
    """

    FREE = 0
    POSTED = 1
    FILLED = 2


class SlotOp(enum.StrEnum):
    """An operation that moves a slot from one state to another.

    Example:
        >>> SlotOp.POST.value
        'post'
    """

    POST = "post"
    COMPLETE = "complete"
    CANCEL = "cancel"
    WRITE = "write"
    RELEASE = "release"
    DEFER = "defer"
    RETURN = "return"


FREE = SlotState.FREE
POSTED = SlotState.POSTED
FILLED = SlotState.FILLED

#: The slot lifecycle: (state, operation) -> next state. Pairs not listed are illegal.
TRANSITIONS: Mapping[tuple[SlotState, SlotOp], SlotState] = MappingProxyType(
    {
        # a driver hands the slot to the kernel (recv in flight / overlapped receive posted)
        (FREE, SlotOp.POST): POSTED,
        # the kernel filled it: length/address/flags recorded
        (POSTED, SlotOp.COMPLETE): FILLED,
        # the call filled fewer slots than posted; IOCP cancellation on close
        (POSTED, SlotOp.CANCEL): FREE,
        # the user composed an outgoing datagram in it
        (FREE, SlotOp.WRITE): FILLED,
        # the consumer is done with it
        (FILLED, SlotOp.RELEASE): FREE,
        # released while a zero-copy send still has it: the kernel owns it until completion
        (FILLED, SlotOp.DEFER): POSTED,
        # the last zero-copy completion of a deferred slot arrived
        (POSTED, SlotOp.RETURN): FREE,
    }
)


def _rule(op: SlotOp) -> tuple[int, int]:
    # Bulk operations check a whole run against one source state, so each operation must have
    # exactly one; a table edit that breaks this fails at import, not in a driver.
    pairs = [(state, target) for (state, each), target in TRANSITIONS.items() if each is op]
    if len(pairs) != 1:
        raise RuntimeError(f"TRANSITIONS must give {op} exactly one source state, got {pairs}")
    return int(pairs[0][0]), int(pairs[0][1])


_POST_FROM, _POST_TO = _rule(SlotOp.POST)
_COMPLETE_FROM, _COMPLETE_TO = _rule(SlotOp.COMPLETE)
_CANCEL_FROM, _CANCEL_TO = _rule(SlotOp.CANCEL)
_WRITE_FROM, _WRITE_TO = _rule(SlotOp.WRITE)
_RELEASE_FROM, _RELEASE_TO = _rule(SlotOp.RELEASE)
_DEFER_FROM, _DEFER_TO = _rule(SlotOp.DEFER)
_RETURN_FROM, _RETURN_TO = _rule(SlotOp.RETURN)
if _DEFER_FROM != _RELEASE_FROM or _DEFER_TO != _RETURN_FROM or _RETURN_TO != _RELEASE_TO:
    raise RuntimeError("TRANSITIONS: DEFER must leave the state RELEASE leaves and lead to the "
                       "state RETURN leaves, and RETURN lead where RELEASE does")

# The bulk paths check a run against one prebuilt byte run per step: commit_receive checks the
# whole run once for "posted" (the state both COMPLETE and CANCEL leave), and release() checks
# for "completed" (the state RELEASE leaves). A table that breaks either fails here, at import.
if not _POST_TO == _COMPLETE_FROM == _CANCEL_FROM or _COMPLETE_TO != _RELEASE_FROM:
    raise RuntimeError("TRANSITIONS: POST must lead to the state COMPLETE and CANCEL leave, "
                       "and COMPLETE to the state RELEASE leaves")

# release() maps every RELEASE source byte of a run to its target with one bytes.translate call
# and leaves every other state alone (a completion driver may still have slots POSTED).
_RELEASE_TABLE = bytes(_RELEASE_TO if b == _RELEASE_FROM else b for b in range(256))

# TRANSITIONS keyed by plain values: ``states`` holds ints, and SlotOp is a str enum, so the
# per-slot path looks up (int, op) without building a SlotState first.
_LOOKUP: dict[tuple[int, str], int] = {
    (int(state), str(op)): int(target) for (state, op), target in TRANSITIONS.items()
}

_ALLOWED_FROM: dict[SlotOp, tuple[str, ...]] = {
    op: tuple(state.name for (state, each) in TRANSITIONS if each is op) for op in SlotOp
}

if array.array("I").itemsize != 4:  # pragma: no cover - true on every CPython platform we know
    raise ImportError("horizon_core.buffers needs array('I') items of 4 bytes (C unsigned int)")

_MAX_U32 = 2**32 - 1
_NO_ADDRESS = bytes(PACKED_ADDRESS_SIZE)


def _u32_array(count: int) -> array.array[int]:
    return array.array("I", bytes(4 * count))


def _slot_error(
    slot: int, state: int, op: SlotOp | str, allowed: tuple[str, ...], hint: str = ""
) -> SlotStateError:
    name = op.value if isinstance(op, SlotOp) else op
    error = SlotStateError(slot, SlotState(state).name, name, allowed)
    if hint:
        error.args = (f"{error.args[0]} ({hint})",)
    return error


class Datagram(NamedTuple):
    """One received (or composed) datagram, as ``Batch`` iteration yields it.

    ``payload`` is a zero-copy view, valid until the batch is released.

    Example:
        >>> pool = BufferPool(1, 16)
        >>> batch = pool.batch(1)
        >>> _ = batch.append(b"hi")
        >>> [bytes(d.payload) for d in batch]
        [b'hi']
    """

    payload: memoryview
    address: SocketAddress | None
    truncated: bool
    original_length: int
    #: The GRO stride of the slot the datagram came from (0: it arrived alone).
    segment_size: int


class BufferPool:
    """One contiguous buffer of ``slot_count`` slots of ``slot_size`` bytes, with metadata arrays.

    The metadata is structure-of-arrays so a C driver writes each field straight into place:
    ``lengths``, ``original_lengths``, ``segment_sizes`` (``array('I')``), ``truncated`` (bytes
    of 0/1) and ``addresses`` (``PACKED_ADDRESS_SIZE`` bytes per slot).

    Example:
        >>> pool = BufferPool(4, 1024)
        >>> len(pool.memory), pool.counts()[SlotState.FREE]
        (4096, 4)
    """

    __slots__ = (
        "_batches",
        "_buffer",
        "_held",
        "_owners",
        "_reserved",
        "addresses",
        "kernel_holds",
        "lengths",
        "memory",
        "original_lengths",
        "segment_sizes",
        "slot_count",
        "slot_size",
        "states",
        "truncated",
    )

    def __init__(self, slot_count: int, slot_size: int = 2048) -> None:
        if type(slot_count) is not int or not 1 <= slot_count <= MAX_SLOT_COUNT:
            raise ValueError(f"slot_count must be an int from 1 to {MAX_SLOT_COUNT}, got {slot_count!r}")
        if type(slot_size) is not int or not 1 <= slot_size <= MAX_SLOT_SIZE:
            raise ValueError(f"slot_size must be an int from 1 to {MAX_SLOT_SIZE}, got {slot_size!r}")
        if slot_count * slot_size > MAX_POOL_BYTES:
            raise ValueError(
                f"slot_count * slot_size must be at most {MAX_POOL_BYTES} bytes (2 GiB), "
                f"got {slot_count} * {slot_size} = {slot_count * slot_size}"
            )
        self.slot_count = slot_count
        self.slot_size = slot_size
        self._buffer = bytearray(slot_count * slot_size)
        # While this view exists the bytearray cannot be resized, so slot offsets stay valid.
        self.memory = memoryview(self._buffer)
        # bytearray(n) is all zeros, and SlotState.FREE is 0.
        self.states = bytearray(slot_count)
        self.lengths = _u32_array(slot_count)
        self.original_lengths = _u32_array(slot_count)
        self.truncated = bytearray(slot_count)
        self.segment_sizes = _u32_array(slot_count)
        self.addresses = bytearray(slot_count * PACKED_ADDRESS_SIZE)
        self._reserved = bytearray(slot_count)  # 1 where a live batch holds the slot
        self._owners: list[Batch | None] = [None] * slot_count
        self._batches: dict[int, Batch] = {}  # start slot -> live batch
        # Zero-copy sends in flight per slot; _held is their sum, so release() keeps its
        # fast paths whenever no slot of the pool is lent.
        self.kernel_holds = _u32_array(slot_count)
        self._held = 0

    def __repr__(self) -> str:
        counts = ", ".join(f"{s.name}={n}" for s, n in self.counts().items())
        return f"<BufferPool {self.slot_count}x{self.slot_size}B: {counts}>"

    def batch(self, capacity: int) -> Batch:
        """Reserve the first run of ``capacity`` unreserved slots as a Batch.

        PoolExhaustedError when no run that long is free.

        Example:
            >>> pool = BufferPool(8, 64)
            >>> a, b = pool.batch(3), pool.batch(3)
            >>> (a.start, b.start)
            (0, 3)
        """
        if type(capacity) is not int or not 1 <= capacity <= self.slot_count:
            raise ValueError(
                f"capacity must be an int from 1 to {self.slot_count} (the pool's slot_count), "
                f"got {capacity!r}"
            )
        start = self._reserved.find(bytes(capacity))
        if start < 0:
            largest = max(len(run) for run in self._reserved.split(b"\x01"))
            raise PoolExhaustedError(
                f"no run of {capacity} free slots in the pool: "
                f"{self._reserved.count(0)} of {self.slot_count} slots are unreserved, "
                f"the longest run is {largest}; free_batch() a batch or use a larger pool"
            )
        batch = Batch(self, start, capacity)
        end = start + capacity
        self._reserved[start:end] = b"\x01" * capacity
        self._owners[start:end] = [batch] * capacity
        self._batches[start] = batch
        return batch

    def free_batch(self, batch: Batch) -> None:
        """Unreserve a batch's slots; all of them must be FREE (release or cancel first).

        Example:
            >>> pool = BufferPool(4, 64)
            >>> pool.free_batch(pool.batch(4))
            >>> pool.batch(4).capacity
            4
        """
        if batch.pool is not self or self._batches.get(batch.start) is not batch:
            raise ValueError(f"{batch!r} is not a live batch of this pool (freed twice?)")
        start, end = batch.start, batch.start + batch.capacity
        if self.states.count(FREE, start, end) != batch.capacity:
            slot = next(s for s in range(start, end) if self.states[s] != FREE)
            raise _slot_error(
                slot,
                self.states[slot],
                "free_batch",
                (FREE.name,),
                f"the batch holds {len(batch)} datagrams; release() them and cancel posted slots",
            )
        self._reserved[start:end] = bytes(batch.capacity)
        self._owners[start:end] = [None] * batch.capacity
        del self._batches[start]
        batch._active = False

    def state(self, slot: int) -> SlotState:
        """The state of ``slot``.

        Example:
            >>> BufferPool(2, 64).state(1)
            <SlotState.FREE: 0>
        """
        self._check_slot(slot)
        return SlotState(self.states[slot])

    def slot_view(self, slot: int) -> memoryview:
        """The whole slot as a writable, zero-copy view (what a driver receives into).

        Example:
            >>> pool = BufferPool(2, 64)
            >>> len(pool.slot_view(1)), pool.slot_view(1).readonly
            (64, False)
        """
        self._check_slot(slot)
        offset = slot * self.slot_size
        return self.memory[offset : offset + self.slot_size]

    def counts(self) -> dict[SlotState, int]:
        """How many slots are in each state.

        Example:
            >>> BufferPool(3, 8).counts()
            {<SlotState.FREE: 0>: 3, <SlotState.POSTED: 1>: 0, <SlotState.FILLED: 2>: 0}
        """
        return {state: self.states.count(state) for state in SlotState}

    def apply(self, slot: int, op: SlotOp) -> SlotState:
        """Apply one transition of :data:`TRANSITIONS` to ``slot`` and return the new state.

        The slot must belong to a batch; the batch's ``order`` follows (a slot entering FILLED is
        appended, one leaving it is removed). Illegal pairs raise SlotStateError, changing nothing.

        Example:
            >>> pool = BufferPool(2, 64)
            >>> batch = pool.batch(2)
            >>> pool.apply(0, SlotOp.POST)
            <SlotState.POSTED: 1>
            >>> pool.apply(0, SlotOp.RELEASE)
            Traceback (most recent call last):
            ...
            horizon_core.errors.SlotStateError: cannot release slot 0: it is POSTED; release is allowed from FILLED
        """  # noqa: E501
        self._check_slot(slot)
        owner = self._owners[slot]
        if owner is None:
            raise ValueError(f"slot {slot} is not in any batch; reserve it with BufferPool.batch()")
        state = self.states[slot]
        target = _LOOKUP.get((state, op))
        if target is None:
            op = SlotOp(op)  # a ValueError here names an unknown operation
            raise _slot_error(slot, state, op, _ALLOWED_FROM[op])
        holds = self.kernel_holds[slot]
        if holds:
            if op == SlotOp.RELEASE:
                target = _DEFER_TO  # the kernel may still read it: DEFER, never FREE
            elif op != SlotOp.DEFER:
                raise _slot_error(slot, state, SlotOp(op), _ALLOWED_FROM[SlotOp(op)],
                                  f"the kernel holds it for {holds} zero-copy sends; "
                                  "return_from_kernel() follows each completion")
        elif op == SlotOp.DEFER or op == SlotOp.RETURN:
            raise _slot_error(slot, state, SlotOp(op), _ALLOWED_FROM[SlotOp(op)],
                              "no zero-copy send holds it: lend_to_kernel() comes first")
        self.states[slot] = target
        if target == FILLED:
            owner.order.append(slot)
        elif state == FILLED:
            owner.order.remove(slot)
        return SlotState(target)

    def lend_to_kernel(self, slot: int) -> int:
        """Count one zero-copy send of FILLED ``slot`` in flight; return its sends in flight.

        The kernel reads the slot until that send's completion; until then ``release()`` moves
        the slot to POSTED (DEFER) instead of FREE, so nothing reuses it.

        Example:
            >>> pool = BufferPool(2, 64)
            >>> batch = pool.batch(2)
            >>> _ = batch.append(b"payload")
            >>> pool.lend_to_kernel(0)
            1
            >>> batch.release(); pool.state(0)
            <SlotState.POSTED: 1>
            >>> pool.return_from_kernel(0), pool.state(0)
            (0, <SlotState.FREE: 0>)
        """
        self._check_slot(slot)
        state = self.states[slot]
        if state != FILLED or self._owners[slot] is None:
            raise _slot_error(slot, state, "lend_to_kernel", (FILLED.name,),
                              "only a datagram being sent can be lent to the kernel")
        holds = self.kernel_holds[slot]
        if holds == _MAX_U32:
            raise OverflowError(f"slot {slot} already has {holds} zero-copy sends in flight")
        self.kernel_holds[slot] = holds + 1
        self._held += 1
        return holds + 1

    def return_from_kernel(self, slot: int) -> int:
        """One zero-copy send of ``slot`` completed; return its sends still in flight.

        The last completion of a slot released meanwhile (POSTED by DEFER) frees it (RETURN);
        a slot not yet released stays FILLED.

        Example:
            >>> pool = BufferPool(1, 64)
            >>> _ = pool.batch(1).append(b"x")
            >>> pool.return_from_kernel(0)
            Traceback (most recent call last):
            ...
            ValueError: slot 0 has no zero-copy send in flight (it is FILLED)
        """
        self._check_slot(slot)
        holds = self.kernel_holds[slot]
        state = self.states[slot]
        if not holds:
            raise ValueError(
                f"slot {slot} has no zero-copy send in flight (it is {SlotState(state).name})"
            )
        holds -= 1
        self.kernel_holds[slot] = holds
        self._held -= 1
        if not holds and state == _RETURN_FROM:
            self.states[slot] = _RETURN_TO
        return holds

    @property
    def lent(self) -> int:
        """Zero-copy sends in flight over all slots (what ``return_from_kernel`` still awaits).

        Example:
            >>> BufferPool(2, 64).lent
            0
        """
        return self._held

    def _check_slot(self, slot: int) -> None:
        if type(slot) is not int or not 0 <= slot < self.slot_count:
            raise IndexError(f"slot must be an int from 0 to {self.slot_count - 1}, got {slot!r}")

    def check_invariants(self) -> None:
        """Raise RuntimeError naming the first broken invariant; return None if all hold.

        Example:
            >>> BufferPool(4, 64).check_invariants()
        """

        def broken(message: str) -> RuntimeError:
            return RuntimeError(f"BufferPool invariant broken: {message}")

        n = self.slot_count
        if len(self.states) != n:
            raise broken(f"len(states) is {len(self.states)}, expected {n}")
        counts = self.counts()
        if sum(counts.values()) != n:
            slot = next(s for s in range(n) if self.states[s] not in set(SlotState))
            raise broken(f"slot {slot} has state byte {self.states[slot]}, not a SlotState")
        if any(len(a) != n for a in (self.lengths, self.original_lengths, self.segment_sizes)):
            raise broken("a metadata array does not have one entry per slot")
        if len(self.addresses) != n * PACKED_ADDRESS_SIZE or len(self.truncated) != n:
            raise broken("addresses or truncated does not have one entry per slot")
        if len(self.memory) != n * self.slot_size:
            raise broken(f"memory is {len(self.memory)} bytes, expected {n * self.slot_size}")
        if max(self.lengths) > self.slot_size:
            slot = next(s for s in range(n) if self.lengths[s] > self.slot_size)
            raise broken(f"lengths[{slot}] = {self.lengths[slot]} > slot_size {self.slot_size}")
        if self.truncated.count(0) + self.truncated.count(1) != n:
            raise broken("truncated holds a value other than 0 or 1")
        covered = 0
        previous_end = 0
        for start in sorted(self._batches):
            batch = self._batches[start]
            end = start + batch.capacity
            if start < previous_end:
                raise broken(f"batches overlap at slot {start}")
            if batch.pool is not self or not batch._active:
                raise broken(f"{batch!r} is registered but not live in this pool")
            if self._reserved.count(1, start, end) != batch.capacity:
                raise broken(f"{batch!r} is not fully reserved")
            if any(owner is not batch for owner in self._owners[start:end]):
                raise broken(f"a slot of {batch!r} is owned by another batch")
            # Slots between batches are unreserved and must be FREE.
            if self.states.count(FREE, previous_end, start) != start - previous_end:
                raise broken(f"an unreserved slot in [{previous_end}, {start}) is not FREE")
            order = batch.order
            filled = self.states.count(FILLED, start, end)
            if len(order) != filled:
                raise broken(f"{batch!r}: len(order) is {len(order)} but it has {filled} FILLED")
            if len(set(order)) != len(order):
                raise broken(f"{batch!r}: order has duplicates: {order.tolist()}")
            for slot in order:
                if not start <= slot < end or self.states[slot] != FILLED:
                    raise broken(f"{batch!r}: order lists slot {slot}, not a FILLED slot of it")
            covered += batch.capacity
            previous_end = end
        if self.states.count(FREE, previous_end, n) != n - previous_end:
            raise broken(f"an unreserved slot in [{previous_end}, {n}) is not FREE")
        if sum(self.kernel_holds) != self._held or len(self.kernel_holds) != n:
            raise broken(f"kernel_holds sum to {sum(self.kernel_holds)}, expected {self._held}")
        for slot in range(n) if self._held else ():
            if self.kernel_holds[slot] and self.states[slot] not in (FILLED, POSTED):
                raise broken(f"slot {slot} is lent to the kernel but FREE")
        if self._reserved.count(1) != covered or self._reserved.count(0) != n - covered:
            raise broken("reserved slots do not match the live batches")
        if sum(owner is not None for owner in self._owners) != covered:
            raise broken("slot owners do not match the live batches")


class Batch:
    """A contiguous run ``[start, start + capacity)`` of one pool, plus the fill order.

    Created by :meth:`BufferPool.batch`. ``order`` (``array('I')``) lists the absolute indices
    of the FILLED slots in fill order; datagram ``i`` of the batch is slot ``order[i]``.

    Example:
        >>> pool = BufferPool(4, 64)
        >>> batch = pool.batch(4)
        >>> batch.append(b"ping", SocketAddress.parse("127.0.0.1:9"))
        0
        >>> len(batch), batch.remaining, str(batch.address(0))
        (1, 3, '127.0.0.1:9')
    """

    __slots__ = (
        "_active",
        "_cancel_run",
        "_complete_run",
        "_end",
        "_free_run",
        "_indices",
        "_post_run",
        "_release_run",
        "_span",
        "capacity",
        "order",
        "pool",
        "start",
    )

    def __init__(self, pool: BufferPool, start: int, capacity: int) -> None:
        self.pool = pool
        self.start = start
        self.capacity = capacity
        self.order: array.array[int] = array.array("I")
        self._end = start + capacity
        self._active = True
        # Precomputed once so the per-call bulk paths allocate nothing that outlives the call.
        # The bulk paths check a run with ``states.startswith(run, start)`` (a memcmp) rather
        # than ``states.count`` (a byte loop): on a 1,024-slot batch that is the difference
        # between ~0.2 and ~1 microsecond per check, paid on every recv_batch.
        self._span = (start, capacity)
        self._indices = array.array("I", range(start, start + capacity))
        self._free_run = bytes([_POST_FROM]) * capacity
        self._post_run = bytes([_POST_TO]) * capacity
        self._complete_run = bytes([_COMPLETE_TO]) * capacity
        self._cancel_run = bytes([_CANCEL_TO]) * capacity
        self._release_run = bytes([_RELEASE_TO]) * capacity

    def __repr__(self) -> str:
        state = "" if self._active else " (freed)"
        return f"<Batch slots [{self.start}, {self._end}) holding {len(self.order)}{state}>"

    def __len__(self) -> int:
        """The number of datagrams held (FILLED slots).

        Example:
            >>> len(BufferPool(2, 8).batch(2))
            0
        """
        return len(self.order)

    @property
    def remaining(self) -> int:
        """``capacity - len(batch)``: slots not holding a datagram.

        Example:
            >>> BufferPool(2, 8).batch(2).remaining
            2
        """
        return self.capacity - len(self.order)

    # -- reading -------------------------------------------------------------------------

    def _slot_of(self, i: int) -> int:
        order = self.order
        if type(i) is not int or not 0 <= i < len(order):
            raise IndexError(
                f"datagram index {i!r} is out of range: the batch holds {len(order)} "
                f"(valid indices 0..{len(order) - 1})"
            )
        return order[i]

    def payload(self, i: int) -> memoryview:
        """Datagram ``i``'s bytes: a zero-copy view trimmed to its length.

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> bytes(batch.payload(batch.append(b"abc")))
            b'abc'
        """
        slot = self._slot_of(i)
        pool = self.pool
        offset = slot * pool.slot_size
        return pool.memory[offset : offset + pool.lengths[slot]]

    def address(self, i: int) -> SocketAddress | None:
        """Datagram ``i``'s peer (sender on receive, destination on send), or None.

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> batch.address(batch.append(b"x")) is None
            True
        """
        slot = self._slot_of(i)
        return SocketAddress.unpack_from(self.pool.addresses, slot * PACKED_ADDRESS_SIZE)

    def is_truncated(self, i: int) -> bool:
        """True when datagram ``i`` was longer than its slot (MSG_TRUNC).

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> batch.is_truncated(batch.append(b"x"))
            False
        """
        return bool(self.pool.truncated[self._slot_of(i)])

    def original_length(self, i: int) -> int:
        """Datagram ``i``'s true length (greater than ``len(payload(i))`` when truncated).

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> batch.original_length(batch.append(b"xy"))
            2
        """
        return self.pool.original_lengths[self._slot_of(i)]

    def segment_size(self, i: int) -> int:
        """Datagram ``i``'s GRO segment stride; 0 means it is one datagram.

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> batch.segment_size(batch.append(b"x"))
            0
        """
        return self.pool.segment_sizes[self._slot_of(i)]

    def slot(self, i: int) -> int:
        """The absolute pool slot of datagram ``i``.

        Example:
            >>> pool = BufferPool(4, 8)
            >>> _ = pool.batch(1)
            >>> batch = pool.batch(2)
            >>> batch.slot(batch.append(b"x"))
            1
        """
        return self._slot_of(i)

    def __iter__(self) -> Iterator[Datagram]:
        """Every datagram held, in fill order: a GRO slot yields one Datagram per datagram.

        A slot with a GRO stride (``segment_size(i) > 0``, UDP_GRO on Linux) holds several
        datagrams of one sender back to back, each ``stride`` bytes but the last; iteration cuts
        it into them, each with the sender's address and the stride as ``segment_size``. If the kernel
        cut the slot short (MSG_TRUNC), the datagram it cut is yielded truncated with its true
        length; datagrams entirely past the cut left no bytes and are not yielded. Indexed
        access (``payload(i)``, ``address(i)``...) and ``len()`` stay per slot, as ``send_batch``
        sends them (a GRO slot echoed back leaves as one GSO send). POSTED slots are never
        yielded.

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> _ = batch.append(b"a"); _ = batch.append(b"b")
            >>> [bytes(d.payload) for d in batch]
            [b'a', b'b']
        """
        pool = self.pool
        memory, size = pool.memory, pool.slot_size
        lengths, originals, strides = pool.lengths, pool.original_lengths, pool.segment_sizes
        for slot in self.order:
            offset = slot * size
            address = SocketAddress.unpack_from(pool.addresses, slot * PACKED_ADDRESS_SIZE)
            stored, stride, original = lengths[slot], strides[slot], originals[slot]
            if not (stride and stored):
                truncated = bool(pool.truncated[slot])
                yield Datagram(memory[offset : offset + stored], address, truncated, original, stride)
                continue
            for at in range(0, stored, stride):
                kept = min(stride, stored - at)
                true_length = min(stride, original - at)
                view = memory[offset + at : offset + at + kept]
                yield Datagram(view, address, kept < true_length, true_length, stride)

    @property
    def datagram_count(self) -> int:
        """How many datagrams iteration yields; ``len(batch)`` counts slots, and a GRO slot
        holds several.

        Example:
            >>> pool = BufferPool(2, 64)
            >>> batch = pool.batch(2)
            >>> _ = batch.append(b"x" * 25)
            >>> pool.segment_sizes[batch.slot(0)] = 10   # as a GRO receive leaves it
            >>> len(batch), batch.datagram_count, [len(d.payload) for d in batch]
            (1, 3, [10, 10, 5])
        """
        pool = self.pool
        lengths, strides = pool.lengths, pool.segment_sizes
        return sum(
            -(-lengths[slot] // strides[slot]) if strides[slot] and lengths[slot] else 1
            for slot in self.order
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Release every datagram held: ``with pool.batch(n) as batch:`` never leaks a slot."""
        self.release()

    # -- composing (sending) -------------------------------------------------------------

    def append(self, data: Buffer, address: SocketAddressLike | None = None) -> int:
        """Copy ``data`` into the next FREE slot of the run (WRITE); return its datagram index.

        ``address`` is what ``send_to`` takes: a SocketAddress, a ``(host, port)`` tuple or
        ``"host:port"`` text (None: the connected peer).

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> print(batch.address(batch.append(b"x", "127.0.0.1:9")))
            127.0.0.1:9
            >>> batch = BufferPool(2, 4).batch(2)
            >>> batch.append(b"12345")
            Traceback (most recent call last):
            ...
            ValueError: datagram of 5 bytes does not fit a slot of 4 bytes
        """
        self._check_active()
        view = memoryview(data)
        nbytes = view.nbytes
        pool = self.pool
        if nbytes > pool.slot_size:
            raise ValueError(f"datagram of {nbytes} bytes does not fit a slot of {pool.slot_size} bytes")
        if address is not None and not isinstance(address, SocketAddress):
            try:
                address = as_socket_address(address)
            except ValueError as exc:
                raise TypeError(f"address: {exc}") from None
        slot = pool.states.find(_WRITE_FROM, self.start, self._end)
        if slot < 0:
            posted = pool.states.count(POSTED, self.start, self._end)
            raise PoolExhaustedError(
                f"batch is full: its {self.capacity} slots hold {len(self.order)} datagrams"
                f" and {posted} posted receives; send it and release() it first"
            )
        offset = slot * pool.slot_size
        # Same-length slice assignment: a copy into place, never a resize.
        pool._buffer[offset : offset + nbytes] = view
        self._write_metadata(slot, nbytes, nbytes, address, 0)
        pool.apply(slot, SlotOp.WRITE)
        return len(self.order) - 1

    def release(self) -> None:
        """Every FILLED slot -> FREE (RELEASE); ``order`` is cleared. Payload views go stale.

        A slot a zero-copy send still holds goes to POSTED instead (DEFER) and becomes FREE with
        its last completion (:meth:`BufferPool.return_from_kernel`).

        Example:
            >>> batch = BufferPool(2, 8).batch(2)
            >>> _ = batch.append(b"x")
            >>> batch.release(); len(batch)
            0
        """
        order = self.order
        held = len(order)
        if not held:
            return
        pool = self.pool
        states = pool.states
        start = self.start
        if pool._held:
            # Some slot is lent to the kernel: DEFER those (FILLED -> POSTED), RELEASE the rest.
            holds = pool.kernel_holds
            for slot in order:
                states[slot] = _DEFER_TO if holds[slot] else _RELEASE_TO
        elif held == 1 and states[start] == _RELEASE_FROM:
            # One datagram in the run's first slot: what a low-latency server releases on every
            # round trip. An item move, no slice; about half of the general path's cost.
            states[start] = _RELEASE_TO
        elif held == self.capacity:
            # Every slot is FILLED (len(order) counts them): one constant run, no temporary.
            states[start : self._end] = self._release_run
        elif states.startswith(self._complete_run[:held], start):
            # The FILLED slots are the first ``held`` of the run (every recv_batch leaves them
            # so, and so does appending to an empty batch): O(held), not O(capacity).
            states[start : start + held] = self._release_run[:held]
        else:
            end = self._end
            states[start:end] = states[start:end].translate(_RELEASE_TABLE)
        del order[:]

    # -- readiness drivers (bulk) --------------------------------------------------------

    def begin_receive(self) -> tuple[int, int]:
        """Post the whole run (FREE -> POSTED); return ``(first_slot, count)`` for recvmmsg.

        The batch must be empty and none of its slots posted.

        Example:
            >>> pool = BufferPool(8, 64)
            >>> batch = pool.batch(4)
            >>> batch.begin_receive(), pool.counts()[SlotState.POSTED]
            ((0, 4), 4)
        """
        self._check_active()
        states = self.pool.states
        if not states.startswith(self._free_run, self.start):
            raise self._bulk_error(SlotOp.POST, _POST_FROM, self.start)
        states[self.start : self._end] = self._post_run
        return self._span

    def commit_receive(self, filled: int) -> None:
        """First ``filled`` posted slots -> FILLED (COMPLETE), the rest -> FREE (CANCEL).

        The driver has already written lengths, original_lengths, truncated, segment_sizes and
        addresses for the filled slots.

        Example:
            >>> pool = BufferPool(4, 64)
            >>> batch = pool.batch(4)
            >>> _ = batch.begin_receive()
            >>> batch.commit_receive(2)
            >>> batch.order.tolist(), pool.counts()[SlotState.FREE]
            ([0, 1], 2)
        """
        capacity = self.capacity
        if type(filled) is not int or not 0 <= filled <= capacity:
            raise ValueError(f"filled must be an int from 0 to {capacity}, got {filled!r}")
        states = self.pool.states
        start, end = self.start, self._end
        # COMPLETE and CANCEL both leave POSTED, so one memcmp checks the whole run.
        if not states.startswith(self._post_run, start):
            middle = start + filled
            if states.count(_COMPLETE_FROM, start, middle) != filled:
                raise self._bulk_error(SlotOp.COMPLETE, _COMPLETE_FROM, start, middle)
            raise self._bulk_error(SlotOp.CANCEL, _CANCEL_FROM, middle)
        if filled == capacity:
            states[start:end] = self._complete_run
            self.order[:] = self._indices
        else:
            # CANCEL the whole run, then COMPLETE its first ``filled``: two constant-source
            # assignments, no slice of a capacity-sized run.
            states[start:end] = self._cancel_run
            if filled:
                states[start : start + filled] = self._complete_run[:filled]
            # order is empty here: every slot was POSTED, so none was FILLED.
            self.order[:] = self._indices[:filled]

    # -- completion drivers (per slot) ---------------------------------------------------

    def post(self, slot: int) -> None:
        """Hand one slot to the kernel (FREE -> POSTED).

        Example:
            >>> pool = BufferPool(2, 8)
            >>> batch = pool.batch(2)
            >>> batch.post(1); pool.state(1)
            <SlotState.POSTED: 1>
        """
        self._check_active()
        self._check_in_run(slot)
        self.pool.apply(slot, SlotOp.POST)

    def cancel(self, slot: int) -> None:
        """Take back a posted slot the kernel did not fill (POSTED -> FREE).

        Example:
            >>> pool = BufferPool(2, 8)
            >>> batch = pool.batch(2)
            >>> batch.post(1); batch.cancel(1); pool.state(1)
            <SlotState.FREE: 0>
        """
        self._check_in_run(slot)
        self.pool.apply(slot, SlotOp.CANCEL)

    def complete(
        self,
        slot: int,
        length: int,
        *,
        original_length: int | None = None,
        address: SocketAddress | None = None,
        segment_size: int = 0,
    ) -> None:
        """Record a completed receive into a posted slot (POSTED -> FILLED); appends to order.

        Example:
            >>> pool = BufferPool(2, 8)
            >>> batch = pool.batch(2)
            >>> batch.post(1)
            >>> batch.complete(1, 8, original_length=1500)
            >>> batch.order.tolist(), batch.is_truncated(0)
            ([1], True)
        """
        self._check_in_run(slot)
        state = self.pool.states[slot]
        if state != _COMPLETE_FROM:
            raise _slot_error(slot, state, SlotOp.COMPLETE, _ALLOWED_FROM[SlotOp.COMPLETE])
        original = length if original_length is None else original_length
        self._check_metadata(length, original, address, segment_size)
        self._write_metadata(slot, length, original, address, segment_size)
        self.pool.apply(slot, SlotOp.COMPLETE)

    def record(
        self,
        slot: int,
        length: int,
        original_length: int,
        address: SocketAddress | None,
        segment_size: int = 0,
    ) -> None:
        """Write a POSTED slot's metadata (pure-Python drivers, before ``commit_receive``).

        Example:
            >>> pool = BufferPool(2, 8)
            >>> batch = pool.batch(2)
            >>> _ = batch.begin_receive()
            >>> batch.record(0, 3, 3, SocketAddress.parse("[::1]:5"))
            >>> batch.commit_receive(1)
            >>> str(batch.address(0))
            '[::1]:5'
        """
        self._check_in_run(slot)
        state = self.pool.states[slot]
        # Only a slot the kernel owns (POSTED) is written by a driver; a FILLED slot's metadata
        # belongs to the consumer reading it.
        if state != _COMPLETE_FROM:
            raise _slot_error(slot, state, "record", _ALLOWED_FROM[SlotOp.COMPLETE])
        self._check_metadata(length, original_length, address, segment_size)
        self._write_metadata(slot, length, original_length, address, segment_size)

    # -- internals -----------------------------------------------------------------------

    def _check_active(self) -> None:
        if not self._active:
            raise ValueError(f"{self!r} was freed by free_batch(); take a new one with pool.batch()")

    def _check_in_run(self, slot: int) -> None:
        if type(slot) is not int or not self.start <= slot < self._end:
            raise ValueError(f"slot {slot!r} is outside this batch's run [{self.start}, {self._end})")

    def _check_metadata(
        self, length: int, original_length: int, address: SocketAddress | None, segment_size: int
    ) -> None:
        size = self.pool.slot_size
        if type(length) is not int or not 0 <= length <= size:
            raise ValueError(f"length must be an int from 0 to slot_size {size}, got {length!r}")
        if type(original_length) is not int or not length <= original_length <= _MAX_U32:
            raise ValueError(
                f"original_length must be an int from length ({length}) to {_MAX_U32}, "
                f"got {original_length!r}"
            )
        if type(segment_size) is not int or not 0 <= segment_size <= _MAX_U32:
            raise ValueError(f"segment_size must be an int from 0 to {_MAX_U32}, got {segment_size!r}")
        if address is not None and not isinstance(address, SocketAddress):
            raise TypeError(f"address must be a SocketAddress or None, got {address!r}")

    def _write_metadata(
        self,
        slot: int,
        length: int,
        original_length: int,
        address: SocketAddress | None,
        segment_size: int,
    ) -> None:
        pool = self.pool
        pool.lengths[slot] = length
        pool.original_lengths[slot] = original_length
        pool.truncated[slot] = original_length > length
        pool.segment_sizes[slot] = segment_size
        offset = slot * PACKED_ADDRESS_SIZE
        if address is None:
            pool.addresses[offset : offset + PACKED_ADDRESS_SIZE] = _NO_ADDRESS
        else:
            address.pack_into(pool.addresses, offset)

    def _bulk_error(self, op: SlotOp, source: int, first: int, last: int = -1) -> SlotStateError:
        # Error path only: find the first slot of [first, last) that is not in the source state.
        states = self.pool.states
        stop = self._end if last < 0 else last
        slot = next(s for s in range(first, stop) if states[s] != source)
        state = states[slot]
        if self.order:
            hint = f"batch still holds {len(self.order)} datagrams; call release() first"
        elif state == POSTED:
            hint = "a receive is in flight; commit_receive() or cancel() it first"
        else:
            hint = "call begin_receive() first"
        return _slot_error(slot, state, op, _ALLOWED_FROM[op], hint)


def check_batch(batch: object) -> Batch:
    """``batch`` for a driver's ``recv_batch``/``send_batch``: TypeError unless it is a Batch,
    ValueError if ``free_batch`` freed it.

    Example:
        >>> pool = BufferPool(4, 64)
        >>> check_batch(pool)
        Traceback (most recent call last):
        ...
        TypeError: expected a Batch (take one with pool.batch(n)), not BufferPool
    """
    if not isinstance(batch, Batch):
        raise TypeError(f"expected a Batch (take one with pool.batch(n)), not {type(batch).__name__}")
    batch._check_active()
    return batch


def check_start(start: object, total: int) -> int:
    """``send_batch``'s ``start``: an int from 0 to ``total`` (``total`` sends nothing).

    TypeError for what is not an int; IndexError for anything outside the range, however large.

    Example:
        >>> check_start(2**70, 3)
        Traceback (most recent call last):
        ...
        IndexError: start must be 0..3, got 1180591620717411303424
    """
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(f"start must be an int, not {type(start).__name__}")
    if not 0 <= start <= total:
        raise IndexError(f"start must be 0..{total}, got {start}")
    return start
