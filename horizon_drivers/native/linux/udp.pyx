# cython: embedsignature.format=clinic
"""Batch UDP on Linux: recvmmsg/sendmmsg straight into and out of a BufferPool.

Rules this module obeys:

* A ``UdpSocket`` owns its file descriptor: ``close()`` or ``__dealloc__`` closes it. A close that
  races a call running in another thread is deferred until that call returns, so a descriptor
  number is never reused under a syscall in flight (``descriptor.OwnedDescriptor``).
* Every syscall runs with the GIL released, except a single-datagram recv/send under 16 KiB
  (``descriptor.pyx`` says why), and is retried on EINTR (after running signal handlers, as
  PEP 475 asks). Would-block surfaces as the builtin ``BlockingIOError``.
* The batch paths allocate no Python object per datagram: one ``recvmmsg`` writes payloads into
  the pool's slot memory, and lengths, true lengths (MSG_TRUNC), truncation flags, GRO strides and
  packed peer addresses go straight into the pool's arrays through typed memoryviews. Counts from
  the caller and from the kernel are checked before they index anything.
* Counters are C integers; ``stats`` builds the core's ``StatsSnapshot`` on demand.
* With ``NetConfig.udp_gso_batch`` (the default) a batch send coalesces each run of datagrams to
  one peer whose lengths are equal (the last may be shorter) into one UDP GSO message: the
  kernel walks its send path once per run and cuts the run into the same datagrams on the way
  out. Counts, partial sends and statistics stay per datagram. A kernel or device without GSO
  turns coalescing off for the socket, a segment larger than the path MTU (EMSGSIZE) stops
  coalescing datagrams that large; either way the batch is sent again as plain messages and
  nothing is lost.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_FORMAT
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR, EAGAIN, EINVAL, EMSGSIZE
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcmp, memcpy
from posix.uio cimport iovec

from horizon_drivers.native.linux.sys_socket cimport (
    sockaddr, socklen_t, msghdr, mmsghdr, cmsghdr,
    CMSG_FIRSTHDR, CMSG_NXTHDR, CMSG_DATA, CMSG_LEN,
    recvmmsg, sendmmsg, connect, getsockopt,
    SOL_SOCKET, SO_RXQ_OVFL, SO_MEMINFO, MSG_TRUNC, MSG_DONTWAIT,
    HORIZON_MAX_MMSG, HORIZON_SK_MEMINFO_DROPS,
)
from horizon_drivers.native.linux.netinet_in cimport sockaddr_in6, SOL_UDP, UDP_GRO
from horizon_drivers.native.linux.udp_gso cimport (
    GSO_MAX_SEGMENTS, GSO_MAX_BYTES, GSO_CONTROL, attach_segment_size, gso_refused,
)
from horizon_drivers.native.sockaddr_codec cimport (
    pack_sockaddr, unpack_sockaddr, PACKED_SIZE, SOCKADDR_NONE, SOCKADDR_WRONG_FAMILY,
)
from horizon_drivers.native.linux.address cimport (
    address_from_sockaddr, sockaddr_from_address, raise_errno,
)
from horizon_drivers.native.linux.batch_states cimport begin_receive, commit_receive
from horizon_drivers.native.linux.descriptor cimport OwnedDescriptor, send_buffer, recv_buffer

import socket as _socket

from horizon_core.addresses import wrong_family_error
from horizon_core.buffers import Batch, check_batch, check_start
from horizon_core.config import resolve_config
from horizon_core.stats import HISTOGRAM_BUCKETS, StatsSnapshot

__all__ = ["MAX_BATCH", "UdpSocket"]

#: The most datagrams one recv_batch/send_batch moves (the kernel's UIO_MAXIOV); more take more calls.
MAX_BATCH = HORIZON_MAX_MMSG

cdef enum:
    BUCKETS = 12

# Starts above this cannot be a datagram index (no batch is that long); they go to check_start.
cdef Py_ssize_t HORIZON_MAX_START = 1 << 62

assert HISTOGRAM_BUCKETS == BUCKETS, "horizon_core.stats.HISTOGRAM_BUCKETS changed"


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef inline int _bucket(uint64_t n) noexcept nogil:
    """Histogram bucket of a batch of n >= 1 datagrams: floor(log2 n), capped."""
    cdef int b = 63 - __builtin_clzll(n)
    return b if b < BUCKETS - 1 else BUCKETS - 1


cdef inline size_t _carve(size_t *end, size_t count, size_t size) noexcept nogil:
    """Plan an array of ``count * size`` bytes at ``*end`` (16-aligned) in an arena; its offset."""
    cdef size_t start = (end[0] + 15) & ~(<size_t>15)
    end[0] = start + count * size
    return start


include "../pool_view.pxi"

# Where a Batch keeps the fields the batch paths read on every call (slot_fields.pxd says why).
cdef Py_ssize_t _BATCH_POOL = slot_offset(Batch, "pool")
cdef Py_ssize_t _BATCH_ORDER = slot_offset(Batch, "order")
cdef Py_ssize_t _BATCH_ACTIVE = slot_offset(Batch, "_active")
include "udp_gso_plan.pxi"
include "udp_recv_control.pxi"


cdef class UdpSocket(OwnedDescriptor):
    """A nonblocking UDP socket with batch receive (recvmmsg) and batch send (sendmmsg).

    Open one with :meth:`bind` or :meth:`bind_dual_stack`; the constructor adopts a configured
    ``socket.socket`` (it takes over the descriptor: the socket object is detached).

    Example:
        >>> from horizon_core.buffers import BufferPool
        >>> from horizon_drivers.native import UdpSocket
        >>> with UdpSocket.bind("127.0.0.1:0") as a, UdpSocket.bind("127.0.0.1:0") as b:
        ...     sent = a.send_to(b"hi", b.local_address)
        ...     b.recv_from(bytearray(16))[0]   # a real program waits with a Runtime first
        2
    """

    cdef bint _recv_busy
    cdef bint _send_busy
    cdef bint _want_drops
    cdef bint _want_gro
    cdef _PoolView _recv_view
    cdef _PoolView _send_view
    # recvmmsg and sendmmsg vectors: each direction's arrays are carved from one allocation,
    # and mean something only while that direction's capacity is non-zero.
    cdef unsigned char *_rarena
    cdef unsigned char *_sarena
    cdef unsigned int _recv_cap
    cdef mmsghdr *_rmsgs
    cdef iovec *_riov
    cdef sockaddr_in6 *_rnames
    cdef unsigned char *_rcontrol
    # What the recvmmsg vectors point at: entries [0, _rprepared) aim at the slots from
    # _rprep_first of the pool memory at _rprep_memory. The kernel writes back only the headers
    # of messages it filled, so a call re-arms just the first _rdirty entries: a 1,024-slot
    # batch that receives one datagram costs O(1) here, not O(1,024).
    cdef unsigned int _rprepared
    cdef unsigned int _rdirty
    cdef unsigned char *_rprep_memory
    cdef Py_ssize_t _rprep_first
    cdef Py_ssize_t _rprep_slot_size
    cdef bint _rprep_control
    cdef unsigned int _send_cap
    cdef mmsghdr *_smsgs
    cdef iovec *_siov
    cdef sockaddr_in6 *_snames
    cdef unsigned char *_scontrol
    cdef Py_buffer *_sbufs
    # GSO messages built over the plain ones: _gmsgs[k] sends _gcounts[k] datagrams whose
    # iovecs are consecutive in _siov. _gso_limit is the largest datagram coalesced (0: none).
    cdef mmsghdr *_gmsgs
    cdef unsigned int *_gcounts
    cdef unsigned char *_gcontrol
    cdef unsigned int _gso_limit
    # counters
    cdef uint64_t _datagrams_received, _bytes_received, _datagrams_sent, _bytes_sent
    cdef uint64_t _truncated, _recv_calls, _send_calls, _would_block, _partial_sends, _errors
    cdef uint64_t _recv_hist[BUCKETS]
    cdef uint64_t _send_hist[BUCKETS]
    cdef bint _drops_known
    cdef uint32_t _kernel_drops

    def __cinit__(self, *args, **kwargs):
        self._kind = "UDP socket"

    def __init__(self, sock: _socket.socket, options, config=None):
        cdef int value = 0
        cdef socklen_t length = sizeof(value)
        self._adopt(sock, _socket.SOCK_DGRAM, options, config)
        self._gso_limit = GSO_MAX_BYTES // 2 if self.config.udp_gso_batch else 0
        # Ask the kernel what it enabled rather than trusting the config: an option the kernel
        # refused (recorded in the report) must not make us parse control messages it never sends.
        if getsockopt(self._fd, SOL_SOCKET, SO_RXQ_OVFL, &value, &length) == 0 and value:
            self._want_drops = True
            self._drops_known = True  # the kernel attaches the counter only once it is non-zero
        value = 0
        length = sizeof(value)
        if getsockopt(self._fd, SOL_UDP, UDP_GRO, &value, &length) == 0 and value:
            self._want_gro = True

    def __dealloc__(self):
        # OwnedDescriptor.__dealloc__ closes the descriptor after this.
        self._free_recv()
        self._free_send()

    cdef void _free_recv(self) noexcept:
        free(self._rarena)
        self._rarena = NULL
        self._recv_cap = 0
        self._rprepared = 0
        self._rdirty = 0

    cdef void _free_send(self) noexcept:
        free(self._sarena)
        self._sarena = NULL
        self._send_cap = 0

    cdef int _reserve_recv(self, unsigned int count) except -1:
        cdef unsigned int i
        cdef size_t end = 0
        if count <= self._recv_cap:
            return 0
        cdef size_t msgs = _carve(&end, count, sizeof(mmsghdr))
        cdef size_t iov = _carve(&end, count, sizeof(iovec))
        cdef size_t names = _carve(&end, count, sizeof(sockaddr_in6))
        cdef size_t control = _carve(&end, count, RECV_CONTROL)
        cdef unsigned char *arena = <unsigned char *>calloc(1, end)
        if arena == NULL:
            raise MemoryError("cannot allocate recvmmsg vectors")
        self._free_recv()
        self._rarena = arena
        self._rmsgs = <mmsghdr *>(arena + msgs)
        self._riov = <iovec *>(arena + iov)
        self._rnames = <sockaddr_in6 *>(arena + names)
        self._rcontrol = arena + control
        for i in range(count):
            self._rmsgs[i].msg_hdr.msg_iov = &self._riov[i]
            self._rmsgs[i].msg_hdr.msg_iovlen = 1
            self._rmsgs[i].msg_hdr.msg_name = &self._rnames[i]
        self._recv_cap = count
        return 0

    cdef int _reserve_send(self, unsigned int count) except -1:
        cdef unsigned int i
        cdef size_t end = 0
        if count <= self._send_cap:
            return 0
        cdef size_t msgs = _carve(&end, count, sizeof(mmsghdr))
        cdef size_t iov = _carve(&end, count, sizeof(iovec))
        cdef size_t names = _carve(&end, count, sizeof(sockaddr_in6))
        cdef size_t control = _carve(&end, count, GSO_CONTROL)
        cdef size_t bufs = _carve(&end, count, sizeof(Py_buffer))
        cdef size_t gmsgs = _carve(&end, count, sizeof(mmsghdr))
        cdef size_t gcounts = _carve(&end, count, sizeof(unsigned int))
        cdef size_t gcontrol = _carve(&end, count, GSO_CONTROL)
        cdef unsigned char *arena = <unsigned char *>calloc(1, end)
        if arena == NULL:
            raise MemoryError("cannot allocate sendmmsg vectors")
        self._free_send()
        self._sarena = arena
        self._smsgs = <mmsghdr *>(arena + msgs)
        self._siov = <iovec *>(arena + iov)
        self._snames = <sockaddr_in6 *>(arena + names)
        self._scontrol = arena + control
        self._sbufs = <Py_buffer *>(arena + bufs)
        self._gmsgs = <mmsghdr *>(arena + gmsgs)
        self._gcounts = <unsigned int *>(arena + gcounts)
        self._gcontrol = arena + gcontrol
        for i in range(count):
            self._smsgs[i].msg_hdr.msg_iov = &self._siov[i]
            self._smsgs[i].msg_hdr.msg_iovlen = 1
        self._send_cap = count
        return 0

    # -- lifecycle (closed, fileno, close, context manager: OwnedDescriptor) -------------------

    @classmethod
    def bind(cls, address, config=None):
        """Open a UDP socket with ``config``'s options and bind it to ``address``.

        Options that must precede bind (SO_REUSEPORT, buffers, IPV6_V6ONLY) are applied first;
        an explicitly requested option the kernel refuses raises ``OptionError`` naming it.

        Example:
            >>> from horizon_drivers.native import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0") as sock:
            ...     sock.local_address.port > 0
            True
        """
        from horizon_drivers.opening import NATIVE_FEATURES, open_udp

        cfg = resolve_config(config)
        sock, report = open_udp(address, cfg, NATIVE_FEATURES)
        return cls(sock, report, cfg)

    @classmethod
    def bind_dual_stack(cls, port, config=None):
        """Bind ``[::]:port`` with IPV6_V6ONLY off: one socket for IPv4 and IPv6 peers.

        IPv4 peers appear as ``::ffff:a.b.c.d``; sending to a plain IPv4 address maps it.

        Example:
            >>> from horizon_drivers.native import UdpSocket
            >>> with UdpSocket.bind_dual_stack(0) as sock:
            ...     sock.local_address.family
            6
        """
        from horizon_drivers.opening import NATIVE_FEATURES, open_udp_dual_stack

        cfg = resolve_config(config)
        sock, report = open_udp_dual_stack(port, cfg, NATIVE_FEATURES)
        return cls(sock, report, cfg)

    @property
    def gso_max_segment(self):
        """The longest datagram batch sends coalesce into UDP GSO messages; 0: they do not.

        ``NetConfig.udp_gso_batch`` turns coalescing on. It falls to 0 once the kernel refuses
        GSO on this socket's path, and below a size the path refused.

        Example:
            >>> from horizon_core.config import NetConfig
            >>> from horizon_drivers.native import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0", NetConfig(udp_gso_batch=False)) as sock:
            ...     sock.gso_max_segment
            0
        """
        return self._gso_limit

    @property
    def family(self):
        """``socket.AF_INET`` or ``socket.AF_INET6``."""
        return _socket.AddressFamily(self._family)

    def __repr__(self):
        if self._closed:
            return "<UdpSocket closed>"
        try:
            where = str(self.local_address)
        except OSError:
            where = "?"
        return f"<UdpSocket fd={self._fd} {where}>"

    # -- statistics --------------------------------------------------------------------------

    @property
    def stats(self):
        """Counters and batch-size histograms since the socket opened (a StatsSnapshot)."""
        return StatsSnapshot(
            datagrams_received=self._datagrams_received,
            bytes_received=self._bytes_received,
            datagrams_sent=self._datagrams_sent,
            bytes_sent=self._bytes_sent,
            truncated=self._truncated,
            recv_calls=self._recv_calls,
            send_calls=self._send_calls,
            would_block=self._would_block,
            partial_sends=self._partial_sends,
            errors=self._errors,
            kernel_drops=self._current_drops() if self._drops_known else None,
            recv_batch_sizes=tuple([self._recv_hist[i] for i in range(BUCKETS)]),
            send_batch_sizes=tuple([self._send_hist[i] for i in range(BUCKETS)]),
            **self._zerocopy_counters(),
        )

    cdef uint32_t _current_drops(self) except? 0xFFFFFFFF:
        """The drop count as of now: SO_RXQ_OVFL arrives only with the next datagram, so drops
        after the last one would go unseen; SO_MEMINFO reads the socket's counter whenever
        asked. Falls back to the last SO_RXQ_OVFL value (closed socket, kernel before 3.9)."""
        cdef uint32_t meminfo[16]
        cdef socklen_t length = sizeof(meminfo)
        cdef int rc, fd
        if self._closed:
            return self._kernel_drops
        fd = self._enter("read the drop count of")  # holds a racing close() off the descriptor
        try:
            with nogil:
                rc = getsockopt(fd, SOL_SOCKET, SO_MEMINFO, meminfo, &length)
        finally:
            self._leave()
        if rc == 0 and length >= (HORIZON_SK_MEMINFO_DROPS + 1) * sizeof(uint32_t):
            self._kernel_drops = meminfo[HORIZON_SK_MEMINFO_DROPS]
        return self._kernel_drops

    cdef inline int _failed(self, int err, str context) except -1:
        if err == EAGAIN:
            self._would_block += 1
        else:
            self._errors += 1
        return raise_errno(err, context)

    # -- batch receive -----------------------------------------------------------------------

    def recv_batch(self, batch):
        """Receive up to ``batch.capacity`` datagrams (at most MAX_BATCH) in one recvmmsg.

        The batch must be empty. Returns how many datagrams it now holds; raises
        ``BlockingIOError`` when none is waiting. Per slot it records the stored length, the
        datagram's true length and truncated flag (MSG_TRUNC), the GRO stride and the sender.
        """
        if type(batch) is not Batch:
            check_batch(batch)  # TypeError for None or a BufferPool, not an AttributeError
        cdef int fd = self._enter("receive on")
        try:
            if self._recv_busy:
                raise RuntimeError("recv_batch is already running on this socket in another thread")
            self._recv_busy = True
            try:
                return self._recv_batch(fd, batch)
            finally:
                self._recv_busy = False
        finally:
            self._leave()

    cdef void _arm_recv(self, unsigned char *memory, Py_ssize_t first, Py_ssize_t slot_size,
                        unsigned int vlen, bint want_control) noexcept:
        """Point recvmmsg entries [0, vlen) at slots first.. and reset what the kernel wrote."""
        cdef unsigned int i, reset
        cdef msghdr *hdr
        if (memory != self._rprep_memory or first != self._rprep_first
                or slot_size != self._rprep_slot_size or want_control != self._rprep_control):
            self._rprepared = 0
            self._rdirty = 0
            self._rprep_memory = memory
            self._rprep_first = first
            self._rprep_slot_size = slot_size
            self._rprep_control = want_control
        reset = self._rdirty if self._rdirty < self._rprepared else self._rprepared
        for i in range(reset):
            hdr = &self._rmsgs[i].msg_hdr
            hdr.msg_namelen = sizeof(sockaddr_in6)
            hdr.msg_flags = 0
            hdr.msg_controllen = RECV_CONTROL if want_control else 0
        self._rdirty = 0
        for i in range(self._rprepared, vlen):
            self._riov[i].iov_base = memory + (first + i) * slot_size
            self._riov[i].iov_len = slot_size
            hdr = &self._rmsgs[i].msg_hdr
            hdr.msg_namelen = sizeof(sockaddr_in6)
            hdr.msg_flags = 0
            if want_control:
                hdr.msg_control = self._rcontrol + i * RECV_CONTROL
                hdr.msg_controllen = RECV_CONTROL
            else:
                hdr.msg_control = NULL
                hdr.msg_controllen = 0
        if vlen > self._rprepared:
            self._rprepared = vlen

    cdef Py_ssize_t _recv_batch(self, int fd, object batch) except -1:
        cdef _PoolView view
        cdef Py_ssize_t first, posted, slot, slot_size
        cdef unsigned int vlen, i, mlen, seg, total
        cdef int n = 0, err = 0, flags = MSG_TRUNC | MSG_DONTWAIT
        cdef uint64_t nbytes = 0, ntrunc = 0, ndatagrams = 0
        cdef msghdr *hdr
        cdef bint want_control = self._want_drops or self._want_gro
        cdef int64_t drops = -1  # the SO_RXQ_OVFL counter on the last datagram, if any

        pool = slot_get(batch, Batch, _BATCH_POOL, "pool")
        view = self._recv_view
        if view is None or not view.matches(pool):
            view = _PoolView(pool)
            self._recv_view = view
        begin_receive(batch, &first, &posted)
        committed = False
        try:
            if first < 0 or posted < 0 or first + posted > view.slot_count:
                raise RuntimeError(
                    f"begin_receive returned slots {first}..{first + posted} outside the pool"
                )
            vlen = <unsigned int>(posted if posted < HORIZON_MAX_MMSG else HORIZON_MAX_MMSG)
            if vlen == 0:
                commit_receive(batch, 0)
                committed = True
                return 0
            self._reserve_recv(vlen)
            slot_size = view.slot_size
            self._arm_recv(view.memory, first, slot_size, vlen, want_control)
            while True:
                with nogil:
                    # MSG_TRUNC: msg_len is the datagram's true length even when it was cut.
                    n = recvmmsg(fd, self._rmsgs, vlen, flags, NULL)
                    if n < 0:
                        err = errno
                if n >= 0 or err != EINTR:
                    break
                PyErr_CheckSignals()
            self._recv_calls += 1
            # The kernel wrote back the headers of the n messages it filled; count one more in
            # case the failing one was touched too (with n < 0 that is the first).
            if n < 0:
                self._rdirty = 1
            else:
                self._rdirty = vlen if <unsigned int>n >= vlen else <unsigned int>n + 1
            if n < 0:
                commit_receive(batch, 0)
                committed = True
                self._failed(err, "recvmmsg")
            if <unsigned int>n > vlen:
                n = vlen  # never trust a count beyond what we posted
            for i in range(<unsigned int>n):
                slot = first + i
                hdr = &self._rmsgs[i].msg_hdr
                mlen = self._rmsgs[i].msg_len
                view.lengths[slot] = mlen if mlen < <unsigned int>slot_size else <unsigned int>slot_size
                view.original_lengths[slot] = mlen
                if hdr.msg_flags & MSG_TRUNC:
                    view.truncated[slot] = 1
                    ntrunc += 1
                else:
                    view.truncated[slot] = 0
                view.segment_sizes[slot] = 0
                pack_sockaddr(<sockaddr *>&self._rnames[i],
                              hdr.msg_namelen if hdr.msg_namelen <= sizeof(sockaddr_in6) else 0,
                              view.addresses + slot * PACKED_SIZE)
                nbytes += view.lengths[slot]
                ndatagrams += 1
                if want_control and hdr.msg_controllen > 0:
                    ndatagrams += read_recv_control(hdr, mlen, view.lengths[slot],
                                                    &view.segment_sizes[slot],
                                                    &drops if i == <unsigned int>n - 1 else NULL)
            committed = True
            commit_receive(batch, n)
        except BaseException:
            if not committed:
                commit_receive(batch, 0)
            raise
        self._datagrams_received += ndatagrams
        self._bytes_received += nbytes
        self._truncated += ntrunc
        if n > 0:
            self._recv_hist[_bucket(n)] += 1
        if drops >= 0:
            self._kernel_drops = <uint32_t>drops
            self._drops_known = True
        return n

    # -- batch send --------------------------------------------------------------------------

    def send_batch(self, datagrams, start=0):
        """Send datagrams ``start..`` (at most MAX_BATCH) in one sendmmsg; return how many went.

        ``datagrams`` is a Batch of FILLED slots (sent in fill order, addresses taken from the
        packed form: echoing a received batch decodes nothing) or ``(payload, address)`` pairs.
        Fewer than asked is a partial send, counted in ``stats.partial_sends``: call again with
        ``start`` advanced. Raises ``BlockingIOError`` when the first datagram would block.
        """
        if type(start) is not int or not 0 <= start <= HORIZON_MAX_START:
            # A bool, a float or an int past Py_ssize_t: the core's check names the bounds.
            check_start(start, len(datagrams) if hasattr(datagrams, "__len__") else 0)
        is_batch = type(datagrams) is Batch or isinstance(datagrams, Batch)
        if is_batch and slot_get(datagrams, Batch, _BATCH_ACTIVE, "_active") is not True:
            datagrams._check_active()  # a freed batch is an error, as in recv_batch
        cdef int fd = self._enter("send on")
        try:
            if self._send_busy:
                raise RuntimeError("send_batch is already running on this socket in another thread")
            self._send_busy = True
            try:
                if is_batch:
                    return self._send_from_batch(fd, datagrams, start)
                return _send_pairs(self, fd, datagrams, start)
            finally:
                self._send_busy = False
        finally:
            self._leave()

    cdef Py_ssize_t _send_from_batch(self, int fd, object batch, Py_ssize_t start) except -1:
        cdef _PoolView view
        cdef Py_buffer order_buf
        cdef const unsigned int *order
        cdef Py_ssize_t total, requested, slot
        cdef unsigned int vlen, i, length, seg
        cdef int rc
        cdef msghdr *hdr

        pool = slot_get(batch, Batch, _BATCH_POOL, "pool")
        view = self._send_view
        if view is None or not view.matches(pool):
            view = _PoolView(pool)
            self._send_view = view
        # A raw buffer, not a typed memoryview: acquiring one of those costs more than the
        # sendmmsg of a small batch. len(batch) is len(batch.order) by definition.
        PyObject_GetBuffer(slot_get(batch, Batch, _BATCH_ORDER, "order"), &order_buf, PyBUF_FORMAT)
        try:
            if order_buf.itemsize != sizeof(unsigned int) or order_buf.format == NULL \
                    or order_buf.format[0] != b'I' or order_buf.format[1] != 0:
                raise TypeError("batch.order must be an array('I')")
            order = <const unsigned int *>order_buf.buf
            total = order_buf.len // sizeof(unsigned int)
            vlen = self._reserve_span(start, total)
            if vlen == 0:
                return 0
            requested = total - start
            for i in range(vlen):
                slot = order[start + i]
                if slot >= view.slot_count:
                    raise RuntimeError(f"batch.order names slot {slot} outside the pool")
                length = view.lengths[slot]
                if length > <unsigned int>view.slot_size:
                    raise RuntimeError(f"slot {slot} has length {length} > slot size")
                self._siov[i].iov_base = view.memory + slot * view.slot_size
                self._siov[i].iov_len = length
                hdr = &self._smsgs[i].msg_hdr
                hdr.msg_flags = 0
                rc = unpack_sockaddr(view.addresses + slot * PACKED_SIZE, self._family,
                                     &self._snames[i])
                if rc < 0:
                    if i > 0:
                        vlen = i  # send what precedes it; the next call reports the bad slot
                        break
                    if rc == SOCKADDR_WRONG_FAMILY:
                        raise wrong_family_error(batch.address(start), 4)
                    raise ValueError(f"slot {slot} holds an invalid packed address")
                hdr.msg_name = &self._snames[i] if rc != SOCKADDR_NONE else NULL
                hdr.msg_namelen = <socklen_t>rc
                seg = view.segment_sizes[slot]
                if seg > 0 and seg < length:
                    # Re-segment a GRO buffer on the way out (UDP GSO, per message).
                    attach_segment_size(hdr, self._scontrol + i * GSO_CONTROL, seg)
                else:
                    hdr.msg_control = NULL
                    hdr.msg_controllen = 0
        finally:
            # The order array may be resized (by another thread's release) once this returns:
            # nothing below reads it.
            PyBuffer_Release(&order_buf)
        return self._send_built(fd, vlen, requested)

    cdef unsigned int _reserve_span(self, Py_ssize_t start, Py_ssize_t total) except? 0:
        """Check ``start`` against ``total`` datagrams; return how many one sendmmsg takes from
        there (0: none), with the vectors reserved for them."""
        cdef Py_ssize_t requested
        cdef unsigned int vlen
        if start < 0 or start > total:
            raise IndexError(f"start must be 0..{total}, got {start}")
        requested = total - start
        vlen = <unsigned int>(requested if requested < HORIZON_MAX_MMSG else HORIZON_MAX_MMSG)
        if vlen:
            self._reserve_send(vlen)
        return vlen

    cdef Py_ssize_t _send_built(self, int fd, unsigned int vlen, Py_ssize_t requested) except -1:
        """Send the vlen plain messages built in _smsgs: as GSO runs where they coalesce."""
        cdef unsigned int groups
        cdef Py_ssize_t sent
        if self._gso_limit and vlen > 1:
            groups = plan_send_runs(self, vlen)  # udp_zerocopy.pxi
            if groups < vlen:
                sent = self._send_groups(fd, groups, requested)
                if sent >= 0:
                    return sent
        return self._sendmmsg(fd, vlen, requested)

    cdef Py_ssize_t _send_groups(self, int fd, unsigned int groups, Py_ssize_t requested) except -2:
        """Send the GSO messages; return datagrams sent, or -1 when the kernel refused GSO."""
        cdef int err = 0
        cdef unsigned int i
        cdef Py_ssize_t datagrams = 0
        cdef uint64_t nbytes = 0
        cdef int n = (self._call_sendmmsg(fd, self._gmsgs, groups, &err) if self._zc is None
                      else send_groups_zerocopy(self, fd, groups, &err))
        if n < 0:
            if self._gcounts[0] > 1 and gso_refused(err):
                # Too large a segment lowers the limit below it; any other refusal ends GSO on
                # this socket. The plain resend fragments as usual, and a datagram bad for
                # another reason fails that resend too, and raises there.
                if err == EMSGSIZE or err == EINVAL:
                    self._gso_limit = <unsigned int>self._gmsgs[0].msg_hdr.msg_iov[0].iov_len - 1
                else:
                    self._gso_limit = 0
                return -1
            self._failed(err, "sendmmsg")
        for i in range(<unsigned int>n):
            datagrams += self._gcounts[i]
            nbytes += self._gmsgs[i].msg_len
        return self._account_sent(datagrams, nbytes, requested)

    cdef Py_ssize_t _sendmmsg(self, int fd, unsigned int vlen, Py_ssize_t requested) except -1:
        cdef int err = 0
        cdef unsigned int i
        cdef uint64_t nbytes = 0
        cdef int n = self._call_sendmmsg(fd, self._smsgs, vlen, &err)
        if n < 0:
            self._failed(err, "sendmmsg")
        for i in range(<unsigned int>n):
            nbytes += self._smsgs[i].msg_len
        return self._account_sent(n, nbytes, requested)

    cdef int _call_sendmmsg(self, int fd, mmsghdr *msgs, unsigned int vlen, int *err) except -2:
        """sendmmsg, EINTR retried after signal handlers ran; -1 leaves the errno in err."""
        cdef int n = 0
        while True:
            with nogil:
                n = sendmmsg(fd, msgs, vlen, MSG_DONTWAIT)
                if n < 0:
                    err[0] = errno
            if n >= 0 or err[0] != EINTR:
                break
            PyErr_CheckSignals()
        self._send_calls += 1
        if n > 0 and <unsigned int>n > vlen:
            n = vlen  # never trust a count beyond what we passed
        return n

    cdef Py_ssize_t _account_sent(self, Py_ssize_t n, uint64_t nbytes, Py_ssize_t requested):
        self._datagrams_sent += n
        self._bytes_sent += nbytes
        if n < requested:
            self._partial_sends += 1
        if n > 0:
            self._send_hist[_bucket(n)] += 1
        return n

    # -- single datagrams --------------------------------------------------------------------

    def send_to(self, data, address):
        """Send one datagram to ``address``; return its length."""
        cdef sockaddr_in6 name
        cdef socklen_t namelen = 0
        cdef ssize_t n
        cdef int err = 0
        cdef int fd = self._enter("send on")
        try:
            sockaddr_from_address(address, self._family, &name, &namelen)
            n = send_buffer(fd, data, MSG_DONTWAIT, <sockaddr *>&name, namelen, &err)
            return self._account_single_send(n, err, "sendto")
        finally:
            self._leave()

    def send(self, data):
        """Send one datagram to the connected peer; return its length."""
        cdef ssize_t n
        cdef int err = 0
        cdef int fd = self._enter("send on")
        try:
            n = send_buffer(fd, data, MSG_DONTWAIT, NULL, 0, &err)
            return self._account_single_send(n, err, "send")
        finally:
            self._leave()

    cdef Py_ssize_t _account_single_send(self, ssize_t n, int err, str context) except -1:
        self._send_calls += 1
        if n < 0:
            self._failed(err, context)
        self._datagrams_sent += 1
        self._bytes_sent += <uint64_t>n
        self._send_hist[0] += 1
        return n

    def recv_from(self, buffer):
        """Receive one datagram into ``buffer``; return (bytes stored, sender).

        A datagram longer than ``buffer`` is cut to fit and counted in ``stats.truncated``.
        """
        cdef unsigned char name[128]
        cdef socklen_t namelen = sizeof(name)
        cdef Py_ssize_t capacity = 0, stored
        cdef ssize_t n
        cdef int err = 0
        cdef int fd = self._enter("receive on")
        try:
            # MSG_TRUNC: n is the datagram's true length even when it was cut.
            n = recv_buffer(fd, buffer, MSG_TRUNC | MSG_DONTWAIT, <sockaddr *>name, &namelen,
                            &capacity, &err, self._last_read)
            if n >= 0:
                self._last_read = n
            stored = self._account_single_receive(n, err, capacity, "recvfrom")
            return stored, address_from_sockaddr(<sockaddr *>name,
                                                 namelen if namelen <= sizeof(name) else 0)
        finally:
            self._leave()

    def recv_into(self, buffer):
        """Receive one datagram from the connected peer into ``buffer``; return bytes stored."""
        cdef Py_ssize_t capacity = 0
        cdef ssize_t n
        cdef int err = 0
        cdef int fd = self._enter("receive on")
        try:
            n = recv_buffer(fd, buffer, MSG_TRUNC | MSG_DONTWAIT, NULL, NULL, &capacity, &err,
                            self._last_read)
            if n >= 0:
                self._last_read = n
            return self._account_single_receive(n, err, capacity, "recv")
        finally:
            self._leave()

    cdef Py_ssize_t _account_single_receive(self, ssize_t n, int err, Py_ssize_t capacity,
                                            str context) except -1:
        cdef Py_ssize_t stored
        self._recv_calls += 1
        if n < 0:
            self._failed(err, context)
        stored = n if n < capacity else capacity
        if n > capacity:
            self._truncated += 1
        self._datagrams_received += 1
        self._bytes_received += <uint64_t>stored
        self._recv_hist[0] += 1
        return stored

    def connect(self, address):
        """Fix the peer: ``send``/``recv_into`` use it and ICMP errors (ECONNREFUSED) surface."""
        cdef sockaddr_in6 name
        cdef socklen_t namelen = 0
        cdef int rc = 0, err = 0
        cdef int fd = self._enter("connect")
        try:
            sockaddr_from_address(address, self._family, &name, &namelen)
            while True:
                with nogil:
                    rc = connect(fd, <sockaddr *>&name, namelen)
                    if rc < 0:
                        err = errno
                if rc == 0 or err != EINTR:
                    break
                PyErr_CheckSignals()
            if rc < 0:
                raise_errno(err, "connect")
        finally:
            self._leave()


include "udp_send_pairs.pxi"
include "udp_zerocopy.pxi"
