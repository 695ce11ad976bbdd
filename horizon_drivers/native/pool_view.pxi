# _PoolView: raw pointers into one BufferPool's arrays, for the batch paths of both compiled
# drivers (included by native/linux/udp.pyx and native/windows/iocp.pyx). The including module
# cimports PACKED_SIZE from native/sockaddr_codec.pxd.

from horizon_drivers.native.slot_fields cimport slot_get, slot_offset, slot_ptr

from horizon_core.buffers import BufferPool as _BufferPool

# Where a BufferPool keeps the arrays ``matches`` checks on every batch call (slot_fields.pxd).
cdef Py_ssize_t _POOL_MEMORY = slot_offset(_BufferPool, "memory")
cdef Py_ssize_t _POOL_LENGTHS = slot_offset(_BufferPool, "lengths")
cdef Py_ssize_t _POOL_ORIGINAL = slot_offset(_BufferPool, "original_lengths")
cdef Py_ssize_t _POOL_TRUNCATED = slot_offset(_BufferPool, "truncated")
cdef Py_ssize_t _POOL_SEGMENTS = slot_offset(_BufferPool, "segment_sizes")
cdef Py_ssize_t _POOL_ADDRESSES = slot_offset(_BufferPool, "addresses")

cdef class _PoolView:
    """Raw pointers into one BufferPool's memory and metadata arrays.

    Cached per socket and direction; ``matches`` re-checks the identity of every array so a pool
    whose arrays were replaced is never written through stale pointers.
    """

    cdef object pool, memory_src, lengths_src, original_src, truncated_src, segments_src
    cdef object addresses_src
    cdef unsigned char[::1] memory_mv, truncated_mv, addresses_mv
    cdef unsigned int[::1] lengths_mv, original_mv, segments_mv
    cdef unsigned char *memory
    cdef unsigned char *truncated
    cdef unsigned char *addresses
    cdef unsigned int *lengths
    cdef unsigned int *original_lengths
    cdef unsigned int *segment_sizes
    cdef Py_ssize_t slot_count, slot_size

    def __cinit__(self, pool):
        cdef Py_ssize_t slot_count = pool.slot_count
        cdef Py_ssize_t slot_size = pool.slot_size
        if slot_count <= 0 or slot_size <= 0:
            raise ValueError(f"pool has {slot_count} slots of {slot_size} bytes")
        self.pool = pool
        self.memory_src = pool.memory
        self.lengths_src = pool.lengths
        self.original_src = pool.original_lengths
        self.truncated_src = pool.truncated
        self.segments_src = pool.segment_sizes
        self.addresses_src = pool.addresses
        self.memory_mv = self.memory_src
        self.lengths_mv = self.lengths_src
        self.original_mv = self.original_src
        self.truncated_mv = self.truncated_src
        self.segments_mv = self.segments_src
        self.addresses_mv = self.addresses_src
        if (self.memory_mv.shape[0] < slot_count * slot_size
                or self.lengths_mv.shape[0] < slot_count
                or self.original_mv.shape[0] < slot_count
                or self.truncated_mv.shape[0] < slot_count
                or self.segments_mv.shape[0] < slot_count
                or self.addresses_mv.shape[0] < slot_count * PACKED_SIZE):
            raise ValueError("BufferPool arrays are smaller than slot_count/slot_size say")
        self.slot_count = slot_count
        self.slot_size = slot_size
        self.memory = &self.memory_mv[0]
        self.lengths = &self.lengths_mv[0]
        self.original_lengths = &self.original_mv[0]
        self.truncated = &self.truncated_mv[0]
        self.segment_sizes = &self.segments_mv[0]
        self.addresses = &self.addresses_mv[0]

    cdef inline bint matches(self, object pool):
        return (
            pool is self.pool
            and slot_get(pool, _BufferPool, _POOL_MEMORY, "memory") is self.memory_src
            and slot_get(pool, _BufferPool, _POOL_LENGTHS, "lengths") is self.lengths_src
            and slot_get(pool, _BufferPool, _POOL_ORIGINAL, "original_lengths") is self.original_src
            and slot_get(pool, _BufferPool, _POOL_TRUNCATED, "truncated") is self.truncated_src
            and slot_get(pool, _BufferPool, _POOL_SEGMENTS, "segment_sizes") is self.segments_src
            and slot_get(pool, _BufferPool, _POOL_ADDRESSES, "addresses") is self.addresses_src
        )
