# The socket descriptor the Linux driver classes own, and the EINTR-safe one-buffer calls they
# share (cimported, not imported).

from libc.stdint cimport uint32_t

from horizon_drivers.native.linux.sys_socket cimport sockaddr, socklen_t


# The zero-copy completion ledger (zerocopy_ledger.pxi): one per socket with zero-copy sends on.
cdef class PoolLoan:
    cdef object pool
    cdef list slots
    cdef void give_back(self) except *


cdef class ZerocopyLedger:
    cdef uint32_t next_id
    cdef dict holds
    cdef readonly unsigned long long sends, completions, copied, fallbacks, abandoned
    cdef Py_ssize_t threshold
    cdef int inject_enobufs   # test hook: the next n zero-copy sends meet ENOBUFS
    cdef bint foreign         # the last drain read a notification that was not a completion
    cdef bint off_pool        # the send being built is not from a BufferPool: no zero-copy

    cdef void record(self, object hold) except *
    cdef void record_loan(self, object pool, list slots) except *
    cdef int complete(self, uint32_t low, uint32_t high, bint copied) except -1
    cdef Py_ssize_t drain(self, int fd) except -1
    cdef void abandon(self) except *
    cdef dict counters(self)


cdef class OwnedDescriptor:
    cdef int _fd
    cdef int _family
    cdef int _busy
    cdef bint _closed
    cdef str _kind
    cdef object _options
    cdef readonly object config
    cdef object __weakref__
    cdef ZerocopyLedger _zc   # None unless zero-copy sends are on (NetConfig.zerocopy_threshold)
    cdef Py_ssize_t _last_read  # bytes the last successful receive moved: recv_buffer's hint

    cdef int _adopt(self, object sock, int socktype, object options, object config) except -1
    cdef int _enter(self, str operation) except -1
    cdef void _leave(self) noexcept
    cdef dict _zerocopy_counters(self)


cdef ssize_t send_buffer(int fd, object data, int flags, const sockaddr *name,
                         socklen_t namelen, int *err) except -2
cdef ssize_t recv_buffer(int fd, object buffer, int flags, sockaddr *name, socklen_t *namelen,
                         Py_ssize_t *capacity, int *err, Py_ssize_t expect=*) except -2
