# Reading Batch and BufferPool attributes without a Python attribute lookup, for recv_batch's
# per-call checks. Included by uring.pyx.
#
# The slots are read as native/slot_fields.pxd says (offsets taken when this module loads, used
# for the exact classes only); recv_batch read about twenty attributes per call. A subclass, a
# member that is not an object slot, or an unset one falls back to the ordinary lookups and the
# core's own methods, which do the same moves or raise their precise errors.

cdef extern from *:
    # Cython's own declaration of array.array's instance struct (cpython/array.pxd), whose
    # buffer-export count it leaves out: an order array someone holds a buffer of is not resized.
    ctypedef struct _ArrayExports "struct arrayobject":
        int ob_exports


cdef Py_ssize_t _B_ACTIVE = slot_offset(Batch, "_active")
cdef Py_ssize_t _B_POOL = slot_offset(Batch, "pool")
cdef Py_ssize_t _B_START = slot_offset(Batch, "start")
cdef Py_ssize_t _B_CAPACITY = slot_offset(Batch, "capacity")
cdef Py_ssize_t _B_ORDER = slot_offset(Batch, "order")
cdef Py_ssize_t _P_STATES = slot_offset(BufferPool, "states")
cdef bint _SLOTS_KNOWN = min(_B_ACTIVE, _B_START, _B_CAPACITY, _B_ORDER, _P_STATES) > 0


cdef object _TRUE = True            # (a bare ``True`` in a C expression is the integer 1)


cdef unsigned char *_free_run(object batch, object pool, Py_ssize_t *start,
                              Py_ssize_t *capacity) noexcept:
    """The batch's state bytes when a receive may fill it on the fast path: an exact, live
    Batch of an exact BufferPool, an empty ``array('I')`` order and every slot FREE. NULL
    otherwise (the caller takes the core's path, which moves the slots or raises)."""
    cdef PyObject *start_o
    cdef PyObject *capacity_o
    cdef PyObject *order_o
    cdef PyObject *states_o
    cdef Py_ssize_t first, count, i
    cdef unsigned char *run
    if not _SLOTS_KNOWN or type(batch) is not Batch or type(pool) is not BufferPool:
        return NULL
    if slot_ptr(batch, _B_ACTIVE) != <PyObject *>_TRUE:
        return NULL
    start_o = slot_ptr(batch, _B_START)
    capacity_o = slot_ptr(batch, _B_CAPACITY)
    order_o = slot_ptr(batch, _B_ORDER)
    states_o = slot_ptr(pool, _P_STATES)
    if start_o == NULL or capacity_o == NULL or order_o == NULL or states_o == NULL:
        return NULL
    if (type(<object>start_o) is not int or type(<object>capacity_o) is not int
            or type(<object>states_o) is not bytearray
            or type(<object>order_o) is not array.array):
        return NULL
    if ((<array.array>order_o).ob_descr.typecode != c'I' or Py_SIZE(<object>order_o) != 0
            or (<_ArrayExports *>order_o).ob_exports != 0):
        return NULL
    first = PyLong_AsSsize_t(<object>start_o)
    count = PyLong_AsSsize_t(<object>capacity_o)
    if first < 0 or count < 0 or first + count > PyByteArray_GET_SIZE(<object>states_o):
        PyErr_Clear()
        return NULL
    run = <unsigned char *>PyByteArray_AS_STRING(<object>states_o) + first
    for i in range(count):
        if run[i] != _FREE:
            return NULL
    start[0] = first
    capacity[0] = count
    return run


cdef inline void _fill_run(object batch, unsigned char *run, Py_ssize_t first,
                           Py_ssize_t capacity, Py_ssize_t filled) noexcept:
    """What begin_receive then commit_receive(filled) leave: the first ``filled`` slots FILLED
    and listed in ``order``, the rest FREE. ``order`` has room (``_order_room``)."""
    cdef array.array order = <array.array>slot_ptr(batch, _B_ORDER)
    cdef Py_ssize_t i
    for i in range(filled):
        order.data.as_uints[i] = <unsigned int>(first + i)
    Py_SET_SIZE(order, filled)
    memset(run, _FILLED, filled)
    memset(run + filled, _FREE, capacity - filled)


cdef inline int _order_room(object batch, Py_ssize_t capacity) except -1:
    """Room for ``capacity`` entries in the batch's empty order, made before any datagram is
    taken (a MemoryError then loses nothing); its length stays 0 until ``_fill_run``."""
    cdef array.array order = <array.array>slot_ptr(batch, _B_ORDER)
    if capacity > 0:
        array.resize(order, capacity)
        Py_SET_SIZE(order, 0)
    return 0

