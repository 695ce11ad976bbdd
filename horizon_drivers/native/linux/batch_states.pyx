# cython: language_level=3, boundscheck=True, wraparound=False
"""The core's bulk receive transitions, in C, for the Linux driver's ``recv_batch``.

``Batch.begin_receive()`` (every slot FREE -> POSTED) and ``Batch.commit_receive(n)`` (the first
``n`` POSTED -> FILLED, the rest POSTED -> FREE) are Python; together they cost about a microsecond
per ``recv_batch``, which is most of what separates one native receive from a plain
``recvfrom_into`` when one datagram is waiting (the case a spinning, low-latency server lives in).
These functions make the same moves on the same arrays in C.

The core stays the specification: the state byte values are read from
``horizon_core.buffers.TRANSITIONS`` when this module loads, and whenever a precondition of the
fast path does not hold exactly (a subclass of Batch, a freed batch, a slot in another state,
a non-empty ``order``) the functions call the core's own method instead, which does the move or
raises its precise error. tests/drivers/native/test_native_batch_states.py checks, over
generated pools and batches, that both paths leave identical states and orders and raise the
same errors.

The ``begin``/``commit`` functions here are for tests and tools; the driver cimports the C ones.

Example:
    >>> from horizon_core import BufferPool
    >>> from horizon_drivers.native.linux import batch_states
    >>> pool = BufferPool(4, 64)
    >>> batch = pool.batch(4)
    >>> batch_states.begin(batch)
    (0, 4)
    >>> batch_states.commit(batch, 1)
    >>> batch.order.tolist(), pool.state(1).name
    ([0], 'FREE')
"""

from cpython cimport array
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.string cimport memset

from horizon_drivers.native.slot_fields cimport slot_get, slot_offset

from horizon_core.buffers import TRANSITIONS, Batch, BufferPool, SlotOp, SlotState

__all__ = ["begin", "commit"]


cdef unsigned char _rule(object op, object source) except 255:
    target = TRANSITIONS.get((source, op))
    if target is None:
        raise ImportError(f"the core no longer moves a {source.name} slot by {op}: rebuild batch_states")
    return <unsigned char>int(target)


# The bulk moves these functions make, checked against the core's table when the module loads.
cdef unsigned char _FREE = <unsigned char>int(SlotState.FREE)
cdef unsigned char _POSTED = _rule(SlotOp.POST, SlotState.FREE)
cdef unsigned char _FILLED = _rule(SlotOp.COMPLETE, SlotState(_POSTED))
cdef unsigned char _CANCELLED = _rule(SlotOp.CANCEL, SlotState(_POSTED))


# Where Batch and BufferPool keep the fields read on every call (slot_fields.pxd says why).
cdef Py_ssize_t _ACTIVE = slot_offset(Batch, "_active")
cdef Py_ssize_t _POOL = slot_offset(Batch, "pool")
cdef Py_ssize_t _START = slot_offset(Batch, "start")
cdef Py_ssize_t _CAPACITY = slot_offset(Batch, "capacity")
cdef Py_ssize_t _ORDER = slot_offset(Batch, "order")
cdef Py_ssize_t _STATES = slot_offset(BufferPool, "states")


cdef inline unsigned char *_run(object batch, Py_ssize_t start, Py_ssize_t end) except? NULL:
    """The batch's run of state bytes, or NULL when the fast path does not apply."""
    if (type(batch) is not Batch or slot_get(batch, Batch, _ACTIVE, "_active") is not True
            or start < 0 or end < start):
        return NULL
    states = slot_get(slot_get(batch, Batch, _POOL, "pool"), BufferPool, _STATES, "states")
    if type(states) is not bytearray or PyByteArray_GET_SIZE(states) < end:
        return NULL
    return <unsigned char *>PyByteArray_AS_STRING(states) + start


cdef inline bint _all(const unsigned char *run, Py_ssize_t n, unsigned char value) noexcept:
    cdef Py_ssize_t i
    for i in range(n):
        if run[i] != value:
            return False
    return True


cdef int begin_receive(object batch, Py_ssize_t *first, Py_ssize_t *count) except -1:
    """FREE -> POSTED over the whole run; ``first``/``count`` receive the run for recvmmsg."""
    cdef Py_ssize_t start = slot_get(batch, Batch, _START, "start")
    cdef Py_ssize_t capacity = slot_get(batch, Batch, _CAPACITY, "capacity")
    cdef unsigned char *run = _run(batch, start, start + capacity)
    if (run == NULL or len(slot_get(batch, Batch, _ORDER, "order")) != 0
            or not _all(run, capacity, _FREE)):
        first_obj, count_obj = batch.begin_receive()  # the core's move, or its error
        first[0] = first_obj
        count[0] = count_obj
        return 0
    memset(run, _POSTED, capacity)
    first[0] = start
    count[0] = capacity
    return 0


cdef int commit_receive(object batch, Py_ssize_t filled) except -1:
    """The first ``filled`` POSTED -> FILLED, the rest POSTED -> FREE; ``order`` lists them."""
    cdef Py_ssize_t start = slot_get(batch, Batch, _START, "start")
    cdef Py_ssize_t capacity = slot_get(batch, Batch, _CAPACITY, "capacity")
    cdef Py_ssize_t i
    cdef unsigned char *run = _run(batch, start, start + capacity)
    cdef array.array order
    order_obj = slot_get(batch, Batch, _ORDER, "order")
    if (run == NULL or not 0 <= filled <= capacity or not _all(run, capacity, _POSTED)
            or type(order_obj) is not array.array):
        batch.commit_receive(filled)
        return 0
    order = order_obj
    if order.ob_descr.typecode != c'I' or len(order) != 0:
        batch.commit_receive(filled)
        return 0
    array.resize(order, filled)
    for i in range(filled):
        order.data.as_uints[i] = <unsigned int>(start + i)
    memset(run, _FILLED, filled)
    memset(run + filled, _CANCELLED, capacity - filled)
    return 0


def begin(batch):
    """:meth:`Batch.begin_receive`, done in C where it can be; returns ``(first, count)``."""
    cdef Py_ssize_t first = 0, count = 0
    begin_receive(batch, &first, &count)
    return (first, count)


def commit(batch, filled):
    """:meth:`Batch.commit_receive`, done in C where it can be."""
    if type(filled) is not int or not 0 <= filled <= batch.capacity:
        batch.commit_receive(filled)  # the core's ValueError, naming what is allowed
        return
    commit_receive(batch, filled)
