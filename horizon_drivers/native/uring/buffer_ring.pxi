# The provided-buffer ring: the kernel picks a receive buffer from it when a datagram arrives,
# and every buffer in it is a slot of the socket's receive BufferPool. Included by uring.pyx.
#
# Some facts about provided-buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19):
#
# * The ring is page-aligned memory we own: an array of {addr, len, bid} entries whose first
#   entry's last 16 bits are the tail. We add buffers at the tail (release store); the kernel
#   takes them from its head, which it keeps to itself. A buffer in the ring is kernel-owned:
#   its slot is POSTED.
# * A completion names the buffer it filled by its id (``cqe.flags >> 16``); the id is the slot
#   index, so the completion moves exactly that slot POSTED -> FILLED.
# * When the ring is empty a multishot receive ends with ENOBUFS. The datagrams stay in the
#   socket's receive queue (the kernel counts what overflows that queue as drops, as for any
#   socket); returning buffers and re-arming picks them up.
# * The ring stays registered until the receive request using it has posted its final
#   completion: only then may its memory, or the slots, be reused.
#
# The slot moves are the core's transitions (horizon_core/buffers.py) made in C on the pool's
# state bytes, the byte values read from the core's table at import as batch_states does.
# Each slot is its own one-slot Batch, so ``BufferPool.check_invariants`` holds throughout.


cdef unsigned char _FREE = <unsigned char>int(SlotState.FREE)
cdef unsigned char _POSTED = <unsigned char>int(TRANSITIONS[(SlotState.FREE, SlotOp.POST)])
cdef unsigned char _FILLED = <unsigned char>int(TRANSITIONS[(SlotState.POSTED, SlotOp.COMPLETE)])
assert int(TRANSITIONS[(SlotState.FILLED, SlotOp.RELEASE)]) == _FREE
assert int(TRANSITIONS[(SlotState.POSTED, SlotOp.CANCEL)]) == _FREE

# Buffer group ids in use by this process's sockets (one group per socket).
_groups_in_use = set()


cdef int _take_group() except -1:
    cdef int gid
    for gid in range(1, 65536):
        if gid not in _groups_in_use:
            _groups_in_use.add(gid)
            return gid
    raise OSError(ENOBUFS, "every io_uring buffer group id (65,535) is in use")


cdef class _SlotRing:
    """A receive BufferPool whose FREE slots are handed to the kernel through a buffer ring."""

    cdef readonly object pool
    cdef _PoolView view
    cdef object states_src
    cdef unsigned char *states
    cdef list batches                 # one Batch(1) per slot: its order array lists it when FILLED
    cdef list orders
    cdef PyObject **order_ptrs        # the orders' arrays, borrowed (``orders`` keeps them alive)
    cdef hz_uring_buf *bufs
    cdef uint32_t entries, mask
    cdef uint16_t tail
    cdef int gid
    cdef int ring_fd                  # the ring it is registered with (-1: not registered)
    cdef readonly unsigned int slots
    cdef readonly unsigned int posted

    def __cinit__(self):
        self.gid = -1
        self.ring_fd = -1

    def __init__(self, unsigned int slots, Py_ssize_t slot_size):
        cdef unsigned int entries = 1
        cdef void *mem = NULL
        self.pool = BufferPool(slots, slot_size)
        self.view = _PoolView(self.pool)
        self.states_src = self.pool.states
        self.states = <unsigned char *>PyByteArray_AS_STRING(self.states_src)
        self.batches = [self.pool.batch(1) for _ in range(slots)]
        self.orders = [b.order for b in self.batches]
        self.slots = slots
        self.order_ptrs = <PyObject **>calloc(slots, sizeof(PyObject *))
        if self.order_ptrs == NULL:
            raise MemoryError("cannot allocate the slot ring's order table")
        for slot in range(slots):
            # Room for the one entry a FILLED slot lists, allocated once: filling and releasing
            # then only set the array's length (no allocation per datagram).
            order = self.orders[slot]
            array.resize(order, 1)
            Py_SET_SIZE(order, 0)
            self.order_ptrs[slot] = <PyObject *>order
        while entries < slots:
            entries <<= 1
        if posix_memalign(&mem, 4096, entries * sizeof(hz_uring_buf)) != 0:
            raise MemoryError("cannot allocate the provided-buffer ring")
        memset(mem, 0, entries * sizeof(hz_uring_buf))
        self.bufs = <hz_uring_buf *>mem
        self.entries = entries
        self.mask = entries - 1

    def __dealloc__(self):
        # Only reached once unregistered (the receiver keeps us alive while the kernel may write).
        free(self.bufs)
        self.bufs = NULL
        free(self.order_ptrs)
        self.order_ptrs = NULL
        if self.gid >= 0:
            _groups_in_use.discard(self.gid)

    cdef int register(self, _Ring ring) except -1:
        cdef hz_uring_buf_reg reg
        cdef int rc
        self.gid = _take_group()
        memset(&reg, 0, sizeof(reg))
        reg.ring_addr = <uint64_t><uintptr_t>self.bufs
        reg.ring_entries = self.entries
        reg.bgid = <uint16_t>self.gid
        rc = hz_uring_register(ring.fd, HZ_REGISTER_PBUF_RING, &reg, 1)
        if rc < 0:
            rc = errno
            _groups_in_use.discard(self.gid)
            self.gid = -1
            raise_errno(rc, "io_uring_register(PBUF_RING)")
        self.ring_fd = ring.fd
        return 0

    cdef void unregister(self) noexcept:
        cdef hz_uring_buf_reg reg
        if self.ring_fd < 0:
            return
        memset(&reg, 0, sizeof(reg))
        reg.bgid = <uint16_t>self.gid
        hz_uring_register(self.ring_fd, HZ_UNREGISTER_PBUF_RING, &reg, 1)
        self.ring_fd = -1

    cdef inline unsigned char *slot_memory(self, unsigned int slot) noexcept:
        return self.view.memory + <Py_ssize_t>slot * self.view.slot_size

    cdef void post(self, unsigned int slot) noexcept:
        """FREE -> POSTED: the slot's buffer goes into the ring (published by ``publish``)."""
        cdef hz_uring_buf *b = &self.bufs[self.tail & self.mask]
        b.addr = <uint64_t><uintptr_t>self.slot_memory(slot)
        b.len = <uint32_t>self.view.slot_size
        b.bid = <uint16_t>slot
        self.tail += 1
        self.states[slot] = _POSTED
        self.posted += 1

    cdef inline void publish(self) noexcept:
        hz_store_release16(&self.bufs[0].resv, self.tail)

    cdef inline void fill(self, unsigned int slot) noexcept:
        """POSTED -> FILLED: the kernel wrote the slot; its one-slot batch now lists it."""
        cdef array.array order = <array.array>self.order_ptrs[slot]
        order.data.as_uints[0] = slot
        Py_SET_SIZE(order, 1)
        self.states[slot] = _FILLED
        self.posted -= 1

    cdef inline void release(self, unsigned int slot) noexcept:
        """FILLED -> FREE: the datagram was copied out."""
        Py_SET_SIZE(<object>self.order_ptrs[slot], 0)
        self.states[slot] = _FREE

    cdef int cancel_all(self) except -1:
        """Every POSTED and FILLED slot back to FREE (the kernel no longer owns any)."""
        cdef unsigned int slot
        for slot in range(self.slots):
            if self.states[slot] == _FILLED:
                self.release(slot)
            elif self.states[slot] == _POSTED:
                self.states[slot] = _FREE
        self.posted = 0
        return 0
