"""The C bulk receive transitions leave exactly what the core's Batch methods leave.

``horizon_drivers.native.linux.batch_states`` does ``begin_receive``/``commit_receive`` in C for
``recv_batch``; the core stays the specification. Two pools are driven through the same generated
history (appends, per-slot posts and completions, releases, freed batches), then the C function
runs on one and the core's method on the other: states, order and any error must be identical.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from tests.drivers.native.native_helpers import WAIT  # first: it skips this module off Linux

# isort: split
from horizon_core.buffers import Batch, BufferPool, SlotState
from horizon_core.errors import HorizonError
from horizon_drivers.native.linux import batch_states

Step = tuple[str, int]
_STEPS = st.lists(
    st.tuples(st.sampled_from(["append", "post", "complete", "release", "begin", "commit"]),
              st.integers(0, 7)),
    max_size=6,
)


def _replay(slot_count: int, capacity: int, offset: int, history: list[Step], freed: bool) -> Batch:
    """A pool and a batch in the state ``history`` leaves (steps the core refuses are skipped:
    they change nothing, which the core guarantees and tests/core checks)."""
    pool = BufferPool(slot_count, 32)
    if offset:
        pool.batch(offset)  # the batch under test starts past slot 0
    batch = pool.batch(capacity)
    for op, arg in history:
        slot = batch.start + arg % capacity
        try:
            if op == "append":
                batch.append(b"x" * (arg + 1), "127.0.0.1:9")
            elif op == "post":
                batch.post(slot)
            elif op == "complete":
                batch.complete(slot, arg)
            elif op == "release":
                batch.release()
            elif op == "begin":
                batch.begin_receive()
            else:
                batch.commit_receive(arg % (capacity + 1))
        except (HorizonError, ValueError, IndexError):
            pass
    if freed:
        batch.release()
        for s in range(batch.start, batch.start + capacity):
            if pool.state(s) is SlotState.POSTED:
                batch.cancel(s)
        pool.free_batch(batch)
    return batch


def _outcome(batch: Batch, call: Callable[[], object]) -> tuple[object, bytes, list[int]]:
    try:
        result: object = call()
    except Exception as exc:  # the error itself is part of what must match
        result = (type(exc), str(exc))
    return result, bytes(batch.pool.states), batch.order.tolist()


@given(
    slot_count=st.integers(1, 8),
    data=st.data(),
    history=_STEPS,
    freed=st.booleans(),
    filled=st.integers(-1, 9),
)
def test_c_transitions_equal_the_core(
    slot_count: int, data: st.DataObject, history: list[Step], freed: bool, filled: int
) -> None:
    capacity = data.draw(st.integers(1, slot_count))
    offset = data.draw(st.integers(0, slot_count - capacity))
    fast, core = (_replay(slot_count, capacity, offset, history, freed) for _ in range(2))
    assert _outcome(fast, lambda: batch_states.begin(fast)) == _outcome(core, core.begin_receive)
    assert _outcome(fast, lambda: batch_states.commit(fast, filled)) == _outcome(
        core, lambda: core.commit_receive(filled)
    )
    assert WAIT > 0


def test_a_subclass_of_batch_takes_the_core_path() -> None:
    class Recording(Batch):
        calls = 0

        def begin_receive(self) -> tuple[int, int]:
            Recording.calls += 1
            return super().begin_receive()

    pool = BufferPool(4, 32)
    batch = Recording(pool, 0, 4)
    assert batch_states.begin(batch) == (0, 4)
    assert Recording.calls == 1
