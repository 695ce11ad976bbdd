# cython: embedsignature.format=clinic
"""The Windows driver: overlapped Winsock on one I/O completion port.

Rules this module obeys:

* One completion port per process (the *hub*): every socket of this driver is associated with
  it at creation, with ``SetFileCompletionNotificationModes(SKIP_COMPLETION_PORT_ON_SUCCESS |
  SKIP_SET_EVENT_ON_HANDLE)``, so an operation that finishes at once is handled inline and only
  operations that really waited come back through the port. Whoever harvests the port (a
  Runtime's ``poll_once``, or any socket call, with a zero wait) dispatches every completion to
  the socket that owns it; readiness is then computed from socket state, so no completion is
  lost whichever thread or runtime dequeued it.
* Completions are harvested in batches with ``GetQueuedCompletionStatusEx``, with the GIL
  released around the wait.
* A UDP socket keeps overlapped ``WSARecvFrom`` receives in flight into the slots of its own
  :class:`~horizon_core.buffers.BufferPool` (the *receive ring*): a posted receive is a POSTED
  slot (the kernel owns it), a completed one a FILLED slot queued for the reader. ``recv_batch``
  copies queued datagrams into the caller's batch (``begin_receive``/``commit_receive``) and
  re-posts their ring slots. Ring slots are 64 KiB by default, so the true length of every
  datagram is known and truncation into a smaller caller slot is flagged with it.
* ERROR_MORE_DATA (a datagram longer than a *ring* slot, possible only with a smaller
  ``ring_slot_size``) keeps the prefix and sets the truncated flag; Windows does not say how
  long the datagram was, so ``original_length`` is reported as ``ring_slot_size + 1`` (the
  least length consistent with truncation) and ``unknown_lengths`` counts such datagrams.
* Sends: UDP uses ``WSASendTo`` directly (nonblocking; would-block is ``BlockingIOError``). A
  TCP stream copies what it accepts into its send buffer and keeps one overlapped ``WSASend``
  in flight; ``send`` takes what fits (``BlockingIOError`` when the buffer is full). TCP
  receives are one overlapped ``WSARecv`` into the stream's receive buffer; connects use
  ``ConnectEx``, listeners keep ``AcceptEx`` operations posted.
* Closing cancels every operation in flight and waits (bounded) for their completions: each
  cancelled receive returns its ring slot to FREE, no slot stays POSTED, no memory the kernel
  may still write is freed. A stream closed with unread received bytes closes abortively
  (SO_LINGER 0, a reset), as a kernel does when its own receive queue is not empty.
* Unconnected UDP sockets turn SIO_UDP_CONNRESET off (ICMP errors from one peer must not fail
  a server's receives, as on Linux); ``connect`` turns it on, so refusals surface as
  ``ConnectionRefusedError`` on the next receive.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.ref cimport PyObject
from libc.stdint cimport uint16_t, uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memmove, memset

from horizon_drivers.native.windows.winbase cimport (
    DWORD, ULONG, BOOL, HANDLE, ULONG_PTR, OVERLAPPED, OVERLAPPED_ENTRY,
    INVALID_HANDLE_VALUE, INFINITE, WAIT_TIMEOUT,
    ERROR_OPERATION_ABORTED, ERROR_MORE_DATA, ERROR_NETNAME_DELETED, ERROR_CONNECTION_REFUSED,
    ERROR_CONNECTION_ABORTED, ERROR_PORT_UNREACHABLE, ERROR_HOST_UNREACHABLE,
    ERROR_NETWORK_UNREACHABLE, ERROR_SEM_TIMEOUT,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, FILE_SKIP_SET_EVENT_ON_HANDLE,
    CreateIoCompletionPort, GetQueuedCompletionStatusEx, PostQueuedCompletionStatus,
    SetFileCompletionNotificationModes, GetOverlappedResult, GetLastError,
)
from horizon_drivers.native.windows.winsock2 cimport (
    SOCKET, INVALID_SOCKET, SOCKET_ERROR, sockaddr, WSABUF, linger,
    AF_INET, AF_INET6, SOCK_STREAM, SOL_SOCKET, SO_LINGER, SD_SEND, IPPROTO_TCP,
    WSA_FLAG_OVERLAPPED, WSA_FLAG_NO_HANDLE_INHERIT, SIO_UDP_CONNRESET,
    WSAEWOULDBLOCK, WSA_IO_PENDING, WSAEMSGSIZE, WSAECONNRESET, WSAECONNREFUSED,
    WSAECONNABORTED, WSAENOTCONN, WSAETIMEDOUT, WSAENETRESET,
    WSAGetLastError, WSASocketW, closesocket, shutdown, connect, getsockname, getpeername,
    setsockopt, WSAIoctl, WSARecvFrom, WSASendTo, WSARecv, WSASend,
)
from horizon_drivers.native.windows.mswsock cimport (
    SO_UPDATE_ACCEPT_CONTEXT, SO_UPDATE_CONNECT_CONTEXT,
    horizon_load_extensions, horizon_acceptex, horizon_connectex,
)

import math as _math
import socket as _socket
import time as _time
import weakref as _weakref

from horizon_core.addresses import SocketAddress, as_socket_address
from horizon_core.buffers import Batch, BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Readiness
from horizon_core.slab import Slab
from horizon_core.stats import Stats

__all__ = [
    "DEFAULT_RING_SLOTS",
    "DEFAULT_RING_SLOT_SIZE",
    "Runtime",
    "STREAM_BUFFER",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "harvest",
]

#: Receives a UDP socket keeps in flight by default (its receive ring's slot count).
DEFAULT_RING_SLOTS = 32
#: Bytes per ring slot: every UDP datagram fits (65,507 bytes over IPv4), so its length is known.
DEFAULT_RING_SLOT_SIZE = 65536
#: Bytes a TCP stream buffers in each direction (its receive buffer and its send buffer).
STREAM_BUFFER = 256 * 1024

cdef enum:
    PACKED = 32               # horizon_core.addresses.PACKED_ADDRESS_SIZE
    NAME_BYTES = 128          # room for any sockaddr (SOCKADDR_STORAGE)
    HARVEST_MAX = 256         # completions dequeued per GetQueuedCompletionStatusEx call
    ACCEPT_DEPTH = 8          # AcceptEx operations a listener keeps posted
    ACCEPT_ADDRLEN = 28 + 16  # sizeof(sockaddr_in6) + 16, as AcceptEx asks
    OP_RECV_FROM = 1
    OP_RECV = 2
    OP_SEND = 3
    OP_CONNECT = 4
    OP_ACCEPT = 5
    READABLE = 1
    WRITABLE = 2
    ERROR = 4
    HANGUP = 8

cdef ULONG_PTR KEY_IO = 1     # completion key of every socket's operations
cdef ULONG_PTR KEY_WAKE = 2   # PostQueuedCompletionStatus wake-ups; lpOverlapped = runtime id

#: Seconds close() waits for the completions of its cancelled operations before giving up
#: (and keeping their memory alive forever rather than freeing what the kernel may write).
CLOSE_DRAIN_SECONDS = 5.0

cdef struct _Name:
    unsigned long long words[16]      # NAME_BYTES, 8-byte aligned

cdef struct _Core

cdef struct IoOp:
    OVERLAPPED ov                     # first: the OVERLAPPED pointer is the IoOp pointer
    int kind
    int index                         # ring slot (UDP) or AcceptEx slot (listener)
    int pending                       # 1 while the kernel owns the operation
    _Core *core
    WSABUF buf
    DWORD flags
    int namelen
    _Name name
    SOCKET accepted                   # AcceptEx: the socket the connection lands in
    unsigned char accept_out[2 * ACCEPT_ADDRLEN]

cdef struct _Core:
    SOCKET sock
    int pending                       # operations in flight
    int orphaned                      # its owner gave up waiting: free it at pending == 0
    PyObject *owner                   # borrowed; NULL once the Python object is gone
    int nops
    IoOp *ops


cdef class _Endpoint
cdef class Runtime

cdef HANDLE _port = NULL
_graveyard = []                       # memory kept for operations that never completed
_runtimes = _weakref.WeakValueDictionary()   # runtime id -> Runtime, for wake-ups
_blocked = set()                      # ids of runtimes waiting in GetQueuedCompletionStatusEx
cdef uint64_t _next_runtime_id = 1


# -- errors ---------------------------------------------------------------------------------

def _error(code, what):
    """The Python exception for Win32/Winsock error ``code`` during ``what``."""
    code = int(code)
    message = f"{what}: Windows error {code}"
    if code == WSAEWOULDBLOCK:
        return BlockingIOError(11, f"{what} would block")
    if code in (ERROR_CONNECTION_REFUSED, WSAECONNREFUSED, ERROR_PORT_UNREACHABLE):
        return ConnectionRefusedError(111, message)
    if code in (ERROR_NETNAME_DELETED, WSAECONNRESET, WSAENETRESET):
        return ConnectionResetError(104, message)
    if code in (ERROR_CONNECTION_ABORTED, WSAECONNABORTED):
        return ConnectionAbortedError(103, message)
    if code in (ERROR_SEM_TIMEOUT, WSAETIMEDOUT):
        return TimeoutError(110, message)
    return OSError(0, message, None, code)


cdef inline DWORD _status_of(IoOp *op) noexcept nogil:
    """The Win32 error of a finished operation (0 on success) from its NTSTATUS."""
    cdef DWORD ignored = 0
    if op.ov.Internal == 0:
        return 0
    if GetOverlappedResult(<HANDLE>op.core.sock, &op.ov, &ignored, 0):
        return 0
    return GetLastError()


# -- addresses ------------------------------------------------------------------------------

cdef void _pack_sockaddr(const unsigned char *name, int namelen, unsigned char *out) noexcept nogil:
    """sockaddr -> the core's 32-byte packed address (tag 0 when unknown)."""
    cdef uint16_t family
    memset(out, 0, PACKED)
    if namelen < 2:
        return
    memcpy(&family, name, 2)
    if family == AF_INET and namelen >= 16:
        out[0] = 4
        memcpy(out + 2, name + 2, 2)
        memcpy(out + 8, name + 4, 4)
    elif family == AF_INET6 and namelen >= 28:
        out[0] = 6
        memcpy(out + 2, name + 2, 2)
        memcpy(out + 4, name + 4, 4)      # flowinfo, network order in both
        memcpy(out + 8, name + 8, 16)
        memcpy(out + 24, name + 24, 4)    # scope id, host order (little-endian) in both


cdef int _unpack_sockaddr(const unsigned char *packed, int family, unsigned char *name,
                          int *namelen) noexcept nogil:
    """Packed address -> sockaddr for a socket of ``family``: 0 ok, 1 no address, -1 unusable.

    An IPv6 socket sends to IPv4 peers as ``::ffff:a.b.c.d``; an IPv4 socket accepts a
    v4-mapped IPv6 address as its IPv4 address.
    """
    cdef uint16_t fam
    cdef int i
    memset(name, 0, 28)
    if packed[0] == 0:
        namelen[0] = 0
        return 1
    if family == AF_INET6:
        fam = AF_INET6
        memcpy(name, &fam, 2)
        memcpy(name + 2, packed + 2, 2)
        if packed[0] == 6:
            memcpy(name + 4, packed + 4, 4)
            memcpy(name + 8, packed + 8, 16)
            memcpy(name + 24, packed + 24, 4)
        elif packed[0] == 4:
            name[18] = 0xff
            name[19] = 0xff
            memcpy(name + 20, packed + 8, 4)
        else:
            return -1
        namelen[0] = 28
        return 0
    fam = AF_INET
    memcpy(name, &fam, 2)
    memcpy(name + 2, packed + 2, 2)
    if packed[0] == 4:
        memcpy(name + 4, packed + 8, 4)
    elif packed[0] == 6:
        for i in range(10):
            if packed[8 + i] != 0:
                return -1
        if packed[18] != 0xff or packed[19] != 0xff:
            return -1
        memcpy(name + 4, packed + 20, 4)
    else:
        return -1
    namelen[0] = 16
    return 0


cdef int _sockaddr_of(object address, int family, unsigned char *name, int *namelen) except -1:
    """Any AddressLike -> sockaddr for a socket of ``family`` (ValueError naming it otherwise)."""
    cdef bytearray packed = bytearray(PACKED)
    cdef unsigned char *raw = packed
    sa = as_socket_address(address)
    sa.pack_into(packed, 0)
    if _unpack_sockaddr(raw, family, name, namelen) != 0:
        raise OSError(97, f"{sa} cannot be reached from an "
                          f"{'IPv6' if family == AF_INET6 else 'IPv4'} socket")
    return 0


cdef object _address_from(const unsigned char *name, int namelen):
    cdef unsigned char packed[PACKED]
    _pack_sockaddr(name, namelen, packed)
    return SocketAddress.unpack_from(bytes(packed[:PACKED]), 0)


# -- the hub --------------------------------------------------------------------------------

cdef int _associate(SOCKET sock) except -1:
    if CreateIoCompletionPort(<HANDLE>sock, _port, KEY_IO, 0) == NULL:
        raise _error(GetLastError(), "CreateIoCompletionPort")
    if not SetFileCompletionNotificationModes(
            <HANDLE>sock, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE):
        raise _error(GetLastError(), "SetFileCompletionNotificationModes")
    return 0


cdef _Core *_new_core(SOCKET sock, int nops, object owner) except NULL:
    cdef _Core *core = <_Core *>calloc(1, sizeof(_Core))
    cdef int i
    if core == NULL:
        raise MemoryError("cannot allocate the socket's operation records")
    core.ops = <IoOp *>calloc(nops, sizeof(IoOp))
    if core.ops == NULL:
        free(core)
        raise MemoryError("cannot allocate the socket's operation records")
    core.sock = sock
    core.nops = nops
    core.owner = <PyObject *>owner
    for i in range(nops):
        core.ops[i].core = core
        core.ops[i].index = i
        core.ops[i].accepted = INVALID_SOCKET
    return core


cdef void _free_core(_Core *core) noexcept:
    free(core.ops)
    free(core)


cdef inline void _begin(IoOp *op) noexcept:
    memset(&op.ov, 0, sizeof(OVERLAPPED))
    op.pending = 1
    op.core.pending += 1


cdef inline void _end(IoOp *op) noexcept:
    op.pending = 0
    op.core.pending -= 1


cdef int _settle(IoOp *op, DWORD nbytes) except -1:
    """A completion packet for ``op`` arrived: account it, then tell its owner."""
    cdef _Core *core = op.core
    cdef DWORD err = _status_of(op)
    if not op.pending:
        return 0   # never expected; ignoring beats completing a slot twice
    _end(op)
    if core.owner == NULL:
        # The Python object died while this was in flight; only memory is left to release.
        if op.kind == OP_ACCEPT and op.accepted != INVALID_SOCKET:
            closesocket(op.accepted)
            op.accepted = INVALID_SOCKET
        if core.orphaned and core.pending == 0:
            _free_core(core)
        return 0
    return (<_Endpoint>core.owner)._completed(op, nbytes, err)


cdef void _post_wake(uint64_t runtime_id) noexcept:
    PostQueuedCompletionStatus(_port, 0, KEY_WAKE, <OVERLAPPED *><ULONG_PTR>runtime_id)


cdef int _harvest(DWORD timeout_ms, Runtime harvester) except -1:
    """Dequeue up to HARVEST_MAX completions (waiting ``timeout_ms`` for the first), dispatch.

    Returns the number of I/O completions. A wake-up for ``harvester`` sets its ``_woken``;
    one for another runtime is forwarded to it. Other runtimes blocked in a wait are nudged
    when this harvest took I/O completions that may be theirs.
    """
    cdef OVERLAPPED_ENTRY entries[HARVEST_MAX]
    cdef ULONG n = 0, i
    cdef BOOL ok
    cdef DWORD err = 0
    cdef int ios = 0
    cdef uint64_t target
    with nogil:
        ok = GetQueuedCompletionStatusEx(_port, entries, HARVEST_MAX, &n, timeout_ms, 0)
        if not ok:
            err = GetLastError()
    if not ok:
        if err == WAIT_TIMEOUT:
            return 0
        raise _error(err, "GetQueuedCompletionStatusEx")
    failure = None
    for i in range(n):
        if entries[i].lpCompletionKey == KEY_WAKE:
            target = <uint64_t><ULONG_PTR>entries[i].lpOverlapped
            if harvester is not None and harvester._id == target:
                harvester._woken = True
            else:
                other = _runtimes.get(target)
                if other is not None:
                    (<Runtime>other)._woken = True
                    if target in _blocked:
                        _post_wake(target)
            continue
        ios += 1
        try:
            _settle(<IoOp *>entries[i].lpOverlapped, entries[i].dwNumberOfBytesTransferred)
        except BaseException as exc:  # settle every entry, then report the first failure
            if failure is None:
                failure = exc
    if ios and _blocked:
        for target in list(_blocked):
            if harvester is None or target != harvester._id:
                _post_wake(target)
    if failure is not None:
        raise failure
    return ios


def harvest(timeout=0.0):
    """Dispatch queued completions, waiting up to ``timeout`` seconds for the first one.

    Socket calls and ``Runtime.poll_once`` do this themselves; it is public for tests and for
    programs that drive sockets without a Runtime. Returns the number of I/O completions.
    """
    return _harvest(_milliseconds(timeout), None)


cdef DWORD _milliseconds(object timeout) except? 0xFFFFFFFE:
    if timeout is None:
        return INFINITE
    seconds = float(timeout)
    if not seconds >= 0.0:
        raise ValueError(f"timeout must be None or seconds >= 0, got {timeout!r}")
    if seconds * 1000.0 >= 0xFFFFFFF0:
        return 0xFFFFFFF0
    return <DWORD>_math.ceil(seconds * 1000.0)


# -- pool access ----------------------------------------------------------------------------

cdef class _PoolView:
    """Raw pointers into one BufferPool's memory and metadata arrays (identity re-checked)."""

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
        self.slot_count = pool.slot_count
        self.slot_size = pool.slot_size
        if (self.slot_count <= 0 or self.slot_size <= 0
                or self.memory_mv.shape[0] < self.slot_count * self.slot_size
                or self.lengths_mv.shape[0] < self.slot_count
                or self.original_mv.shape[0] < self.slot_count
                or self.truncated_mv.shape[0] < self.slot_count
                or self.segments_mv.shape[0] < self.slot_count
                or self.addresses_mv.shape[0] < self.slot_count * PACKED):
            raise ValueError("BufferPool arrays are smaller than slot_count/slot_size say")
        self.memory = &self.memory_mv[0]
        self.lengths = &self.lengths_mv[0]
        self.original_lengths = &self.original_mv[0]
        self.truncated = &self.truncated_mv[0]
        self.segment_sizes = &self.segments_mv[0]
        self.addresses = &self.addresses_mv[0]

    cdef inline bint matches(self, object pool):
        return (
            pool is self.pool
            and pool.memory is self.memory_src
            and pool.lengths is self.lengths_src
            and pool.original_lengths is self.original_src
            and pool.truncated is self.truncated_src
            and pool.segment_sizes is self.segments_src
            and pool.addresses is self.addresses_src
        )


# -- the common base ------------------------------------------------------------------------

cdef class _Endpoint:
    """A socket handle owned by this driver, associated with the hub."""

    cdef _Core *_core
    cdef SOCKET _sock
    cdef int _family
    cdef int _busy
    cdef bint _closed
    cdef object _options
    cdef readonly object config
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._sock = INVALID_SOCKET
        self._closed = True

    cdef int _adopt(self, object sock, object options, object config, int nops) except -1:
        """Take over a configured socket.socket's handle and associate it with the hub."""
        if not isinstance(sock, _socket.socket):
            raise TypeError(f"expected a socket.socket, got {type(sock).__name__}")
        if sock.fileno() < 0:
            raise SocketClosedError("socket", "adopt")
        sock.setblocking(False)
        self.config = config if config is not None else NetConfig()
        self._options = options
        self._family = sock.family
        handle = sock.detach()
        self._sock = <SOCKET>handle
        try:
            _associate(self._sock)
            self._core = _new_core(self._sock, nops, self)
        except BaseException:
            closesocket(self._sock)
            self._sock = INVALID_SOCKET
            raise
        self._closed = False
        return 0

    cdef int _completed(self, IoOp *op, DWORD nbytes, DWORD err) except -1:
        return 0

    cdef int _readiness(self) except -1:
        return 0

    cdef int _check(self, str what, str operation) except -1:
        if self._closed:
            raise SocketClosedError(what, operation)
        return 0

    cdef int _shut(self) except -1:
        """Close the handle, then settle every cancelled operation (bounded wait)."""
        cdef _Core *core = self._core
        if self._sock != INVALID_SOCKET and self._busy == 0:
            closesocket(self._sock)
            self._sock = INVALID_SOCKET
        if core == NULL:
            return 0
        deadline = _time.monotonic() + CLOSE_DRAIN_SECONDS
        while core.pending > 0 and _time.monotonic() < deadline:
            _harvest(20, None)
        return 0

    cdef void _release_core(self, object keep_alive) noexcept:
        """Free the operation records, or keep them (and ``keep_alive``) if still in flight."""
        cdef _Core *core = self._core
        if core == NULL:
            return
        self._core = NULL
        core.owner = NULL
        if core.pending == 0:
            _free_core(core)
        else:
            core.orphaned = 1
            _graveyard.append(keep_alive)   # the kernel may still write into it

    def fileno(self):
        """The SOCKET handle as an int, -1 once closed."""
        return -1 if self._closed else <unsigned long long>self._sock

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    @property
    def family(self):
        """``socket.AF_INET`` or ``socket.AF_INET6``."""
        return _socket.AddressFamily(self._family)

    @property
    def options(self):
        """What the config asked for and what Windows did with it (an OptionReport)."""
        return self._options

    @property
    def local_address(self):
        """The bound address, with the port Windows chose for port 0."""
        cdef _Name name
        cdef int namelen = NAME_BYTES
        self._check("socket", "read the address of")
        if getsockname(self._sock, <sockaddr *>&name, &namelen) != 0:
            raise _error(WSAGetLastError(), "getsockname")
        return _address_from(<unsigned char *>&name, namelen)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def close(self):
        raise NotImplementedError


# -- UDP ------------------------------------------------------------------------------------

cdef class UdpSocket(_Endpoint):
    """A UDP socket with overlapped receives in flight into its receive ring.

    Open one with :meth:`bind` or :meth:`bind_dual_stack`.

    Example:
        >>> from horizon_drivers.iocp import UdpSocket, harvest
        >>> with UdpSocket.bind("127.0.0.1:0") as a, UdpSocket.bind("127.0.0.1:0") as b:
        ...     a.send_to(b"hi", b.local_address)
        2
    """

    cdef object _ring
    cdef list _ring_batches
    cdef _PoolView _ring_view
    cdef _PoolView _user_view
    cdef int _ring_slots
    cdef int *_fifo
    cdef int _fifo_head, _fifo_len
    cdef bint _connected
    cdef object _pending_error
    cdef object _stats
    cdef readonly unsigned long long unknown_lengths
    #: Receives that came back cancelled (close, CancelIoEx) and the Win32 status of the last
    #: one: 995 (ERROR_OPERATION_ABORTED) on Windows; Wine reports 676 for a closed socket.
    cdef readonly unsigned long long cancelled
    cdef readonly unsigned long cancel_status

    def __init__(self, sock, options, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
                 ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        cdef int slot
        cdef BOOL off = 0
        cdef DWORD returned = 0
        if self._core != NULL:
            raise RuntimeError("UdpSocket is already initialised")
        if type(ring_slots) is not int or not 1 <= ring_slots <= 4096:
            raise ValueError(f"ring_slots must be an int from 1 to 4096, got {ring_slots!r}")
        if type(ring_slot_size) is not int or not 1 <= ring_slot_size <= 262144:
            raise ValueError(f"ring_slot_size must be an int from 1 to 262144, got {ring_slot_size!r}")
        if sock.type != _socket.SOCK_DGRAM:
            raise ValueError(f"expected a SOCK_DGRAM socket, got {sock!r}")
        self._ring = BufferPool(ring_slots, ring_slot_size)
        self._ring_batches = [self._ring.batch(1) for _ in range(ring_slots)]
        self._ring_view = _PoolView(self._ring)
        self._ring_slots = ring_slots
        self._fifo = <int *>calloc(ring_slots, sizeof(int))
        if self._fifo == NULL:
            raise MemoryError("cannot allocate the receive ring's queue")
        self._stats = Stats()
        self._adopt(sock, options, config, ring_slots)
        for slot in range(ring_slots):
            self._core.ops[slot].kind = OP_RECV_FROM
        # An unconnected socket ignores ICMP errors (as on Linux): one unreachable peer must
        # not fail a server's receives. Best effort: Wine accepts and ignores it.
        WSAIoctl(self._sock, SIO_UDP_CONNRESET, &off, sizeof(off), NULL, 0, &returned, NULL, NULL)
        for slot in range(ring_slots):
            self._post(slot)

    def __dealloc__(self):
        if self._core != NULL:
            self._core.owner = NULL
            self._closed = True
            if self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
            deadline = _time.monotonic() + CLOSE_DRAIN_SECONDS
            while self._core.pending > 0 and _time.monotonic() < deadline:
                _harvest(20, None)
            self._release_core(self._ring)
        free(self._fifo)
        self._fifo = NULL

    @classmethod
    def bind(cls, address, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
             ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        """Open a UDP socket with ``config``'s options (Windows meanings) and bind it.

        Example:
            >>> from horizon_drivers.iocp import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0") as sock:
            ...     sock.local_address.port > 0
            True
        """
        from horizon_drivers.opening import open_udp

        cfg = config if config is not None else NetConfig()
        sock, report = open_udp(address, cfg)
        try:
            return cls(sock, report, cfg, ring_slots=ring_slots, ring_slot_size=ring_slot_size)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def bind_dual_stack(cls, port, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
                        ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        """Bind ``[::]:port`` with IPV6_V6ONLY off: one socket for IPv4 and IPv6 peers."""
        from horizon_drivers.opening import open_udp_dual_stack

        cfg = config if config is not None else NetConfig()
        sock, report = open_udp_dual_stack(port, cfg)
        try:
            return cls(sock, report, cfg, ring_slots=ring_slots, ring_slot_size=ring_slot_size)
        except BaseException:
            sock.close()
            raise

    # -- the receive ring --------------------------------------------------------------------

    @property
    def receive_pool(self):
        """The receive ring: a BufferPool whose POSTED slots are receives in flight."""
        return self._ring

    @property
    def pending_receives(self):
        """Overlapped receives the kernel owns right now."""
        return 0 if self._core == NULL else self._core.pending

    @property
    def queued(self):
        """Datagrams received and waiting to be read."""
        return self._fifo_len

    @property
    def stats(self):
        """Counters and batch-size histograms since the socket opened (a StatsSnapshot)."""
        snapshot = self._stats.snapshot()
        return snapshot

    cdef int _post(self, int slot) except -1:
        """Post one overlapped WSARecvFrom into ring slot ``slot`` (FREE -> POSTED)."""
        cdef IoOp *op = &self._core.ops[slot]
        cdef DWORD nbytes = 0
        cdef int rc, err
        self._ring_batches[slot].post(slot)
        _begin(op)
        op.flags = 0
        op.namelen = NAME_BYTES
        op.buf.buf = <char *>(self._ring_view.memory + slot * self._ring_view.slot_size)
        op.buf.len = <ULONG>self._ring_view.slot_size
        rc = WSARecvFrom(self._sock, &op.buf, 1, &nbytes, &op.flags, <sockaddr *>&op.name,
                         &op.namelen, &op.ov, NULL)
        if rc == 0:
            # Finished at once; with SKIP_COMPLETION_PORT_ON_SUCCESS no packet will follow.
            _end(op)
            return self._completed(op, nbytes, 0)
        err = WSAGetLastError()
        if err == WSA_IO_PENDING or err == WSAEMSGSIZE:
            # A truncated datagram is a warning status (STATUS_BUFFER_OVERFLOW), not an error:
            # its completion packet is queued even when the call returns at once.
            return 0
        _end(op)
        self._ring_batches[slot].cancel(slot)
        self._note_error(err)
        return 0

    cdef void _note_error(self, DWORD err) noexcept:
        if err == ERROR_OPERATION_ABORTED:
            return
        try:
            self._pending_error = _error(err, "WSARecvFrom")
            self._stats.errors += 1
        except BaseException:
            pass

    cdef int _completed(self, IoOp *op, DWORD nbytes, DWORD err) except -1:
        cdef int slot = op.index
        cdef _PoolView ring = self._ring_view
        batch = self._ring_batches[slot]
        if self._closed:
            batch.cancel(slot)
            self.cancelled += 1
            self.cancel_status = err
            return 0
        if err == 0 or err == ERROR_MORE_DATA:
            if nbytes > <DWORD>ring.slot_size:
                nbytes = <DWORD>ring.slot_size
            if err == ERROR_MORE_DATA:
                self.unknown_lengths += 1
                batch.complete(slot, nbytes, original_length=ring.slot_size + 1)
            else:
                batch.complete(slot, nbytes)
            _pack_sockaddr(<unsigned char *>&op.name, op.namelen, ring.addresses + slot * PACKED)
            self._fifo[(self._fifo_head + self._fifo_len) % self._ring_slots] = slot
            self._fifo_len += 1
            return 0
        batch.cancel(slot)
        self._note_error(err)
        return self._post(slot)

    cdef int _refill(self) except -1:
        """Re-post every ring slot that is neither in flight nor queued."""
        cdef int slot
        states = self._ring.states
        for slot in range(self._ring_slots):
            if states[slot] == 0:
                self._post(slot)
        return 0

    cdef inline int _pop(self) noexcept:
        cdef int slot = self._fifo[self._fifo_head]
        self._fifo_head = (self._fifo_head + 1) % self._ring_slots
        self._fifo_len -= 1
        return slot

    cdef int _nothing_queued(self) except -1:
        """Raise the pending receive error, or BlockingIOError."""
        self._refill()
        if self._pending_error is not None:
            exc, self._pending_error = self._pending_error, None
            raise exc
        self._stats.would_block += 1
        raise BlockingIOError(11, "no datagram is waiting")

    cdef int _readiness(self) except -1:
        cdef int bits = 0
        if self._closed:
            return 0
        if self._fifo_len > 0:
            bits |= READABLE
        if self._pending_error is not None:
            bits |= READABLE | ERROR
        return bits | WRITABLE

    # -- receiving ---------------------------------------------------------------------------

    def recv_batch(self, batch):
        """Move up to ``batch.capacity`` received datagrams into ``batch``; return how many.

        The batch must be empty (``release()`` it first). Raises ``BlockingIOError`` when
        nothing is waiting. A datagram longer than the batch's slots is cut, flagged truncated,
        with its true length in ``original_length``.
        """
        cdef _PoolView view
        cdef _PoolView ring = self._ring_view
        cdef Py_ssize_t first, count, take, i, slot, dst
        cdef unsigned int length, stored, original
        cdef unsigned long long nbytes = 0
        cdef Py_ssize_t ntrunc = 0
        self._check("UDP socket", "receive on")
        if not isinstance(batch, Batch):
            raise TypeError(f"recv_batch needs a Batch, got {type(batch).__name__}")
        _harvest(0, None)
        first, count = batch.begin_receive()
        take = count if count < self._fifo_len else self._fifo_len
        if take == 0:
            batch.commit_receive(0)
            self._stats.recv_calls += 1
            return self._nothing_queued()
        committed = False
        try:
            view = self._user_view
            if view is None or not view.matches(batch.pool):
                view = _PoolView(batch.pool)
                self._user_view = view
            for i in range(take):
                slot = self._pop()
                dst = first + i
                length = ring.lengths[slot]
                original = ring.original_lengths[slot]
                stored = length if length <= <unsigned int>view.slot_size else <unsigned int>view.slot_size
                memcpy(view.memory + dst * view.slot_size, ring.memory + slot * ring.slot_size, stored)
                view.lengths[dst] = stored
                view.original_lengths[dst] = original
                view.truncated[dst] = 1 if original > stored else 0
                view.segment_sizes[dst] = 0
                memcpy(view.addresses + dst * PACKED, ring.addresses + slot * PACKED, PACKED)
                if original > stored:
                    ntrunc += 1
                nbytes += stored
                self._ring_batches[slot].release()
            batch.commit_receive(take)
            committed = True
        finally:
            if not committed:
                batch.commit_receive(0)
        self._stats.record_receive(take, nbytes, ntrunc)
        self._refill()
        return take

    cdef int _take_one(self, object buffer, Py_ssize_t *stored_out, unsigned char *packed) except -1:
        cdef Py_buffer view
        cdef _PoolView ring = self._ring_view
        cdef int slot
        cdef unsigned int length
        cdef Py_ssize_t stored
        _harvest(0, None)
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if self._fifo_len == 0:
                self._stats.recv_calls += 1
                return self._nothing_queued()
            slot = self._pop()
            length = ring.lengths[slot]
            stored = length if length <= view.len else view.len
            memcpy(view.buf, ring.memory + slot * ring.slot_size, stored)
            memcpy(packed, ring.addresses + slot * PACKED, PACKED)
            truncated = ring.original_lengths[slot] > <unsigned int>stored
            self._ring_batches[slot].release()
        finally:
            PyBuffer_Release(&view)
        self._stats.record_receive(1, stored, 1 if truncated else 0)
        self._refill()
        stored_out[0] = stored
        return 0

    def recv_from(self, buffer):
        """Receive one datagram into ``buffer``; return (bytes stored, sender).

        A datagram longer than ``buffer`` is cut to fit and counted in ``stats.truncated``.
        """
        cdef Py_ssize_t stored = 0
        cdef unsigned char packed[PACKED]
        self._check("UDP socket", "receive on")
        self._take_one(buffer, &stored, packed)
        return stored, SocketAddress.unpack_from(bytes(packed[:PACKED]), 0)

    def recv_into(self, buffer):
        """Receive one datagram (from the connected peer) into ``buffer``; return bytes stored."""
        cdef Py_ssize_t stored = 0
        cdef unsigned char packed[PACKED]
        self._check("UDP socket", "receive on")
        self._take_one(buffer, &stored, packed)
        return stored

    # -- sending -----------------------------------------------------------------------------

    cdef int _send_one(self, const unsigned char *data, Py_ssize_t length,
                       const unsigned char *name, int namelen) except -1:
        """One nonblocking WSASendTo; 1 sent, 0 would block; raises other errors."""
        cdef WSABUF buf
        cdef DWORD sent = 0
        cdef int rc, err = 0
        cdef SOCKET sock = self._sock
        buf.buf = <char *>data
        buf.len = <ULONG>length
        self._busy += 1
        try:
            with nogil:
                rc = WSASendTo(sock, &buf, 1, &sent, 0,
                               <const sockaddr *>name if namelen > 0 else NULL, namelen, NULL, NULL)
                if rc != 0:
                    err = WSAGetLastError()
        finally:
            self._busy -= 1
            if self._closed and self._busy == 0 and self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
        if rc == 0:
            return 1
        if err == WSAEWOULDBLOCK:
            return 0
        self._stats.errors += 1
        raise _error(err, "WSASendTo")

    def send_batch(self, datagrams, Py_ssize_t start=0):
        """Send datagrams ``start..`` with WSASendTo each; return how many went.

        ``datagrams`` is a Batch of FILLED slots (addresses in packed form) or
        ``(payload, address)`` pairs. Fewer than asked is a partial send; ``BlockingIOError``
        when the first one would block.
        """
        cdef _PoolView view
        cdef _Name name
        cdef int namelen = 0, rc
        cdef Py_ssize_t total, i, slot, sent = 0
        cdef unsigned long long nbytes = 0
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        if isinstance(datagrams, Batch):
            total = len(datagrams)
            if start < 0 or start > total:
                raise IndexError(f"start must be 0..{total}, got {start}")
            if start == total:
                return 0
            view = _PoolView(datagrams.pool)
            order = datagrams.order
            for i in range(start, total):
                slot = order[i]
                rc = _unpack_sockaddr(view.addresses + slot * PACKED, self._family,
                                      <unsigned char *>&name, &namelen)
                if rc < 0:
                    if sent == 0:
                        raise ValueError(f"slot {slot} holds an address this socket cannot reach")
                    break
                if not self._send_one(view.memory + slot * view.slot_size, view.lengths[slot],
                                      <unsigned char *>&name, namelen if rc == 0 else 0):
                    break
                sent += 1
                nbytes += view.lengths[slot]
        else:
            items = datagrams if isinstance(datagrams, (list, tuple)) else list(datagrams)
            total = len(items)
            if start < 0 or start > total:
                raise IndexError(f"start must be 0..{total}, got {start}")
            if start == total:
                return 0
            for i in range(start, total):
                payload, address = items[i]
                if address is None:
                    namelen = 0
                else:
                    _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
                PyObject_GetBuffer(payload, &buf, PyBUF_SIMPLE)
                try:
                    ok = self._send_one(<unsigned char *>buf.buf, buf.len,
                                        <unsigned char *>&name, namelen)
                    length = buf.len
                finally:
                    PyBuffer_Release(&buf)
                if not ok:
                    break
                sent += 1
                nbytes += length
        if sent == 0:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(total - start, sent, nbytes)
        return sent

    def send_to(self, data, address):
        """Send one datagram to ``address``; return its length."""
        cdef _Name name
        cdef int namelen = 0
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            ok = self._send_one(<unsigned char *>buf.buf, buf.len, <unsigned char *>&name, namelen)
            length = buf.len
        finally:
            PyBuffer_Release(&buf)
        if not ok:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(1, 1, length)
        return length

    def connect(self, address):
        """Fix the peer; ICMP refusals then surface as ConnectionRefusedError on receive."""
        cdef _Name name
        cdef int namelen = 0
        cdef BOOL on = 1
        cdef DWORD returned = 0
        self._check("UDP socket", "connect")
        _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
        if connect(self._sock, <sockaddr *>&name, namelen) != 0:
            raise _error(WSAGetLastError(), "connect")
        WSAIoctl(self._sock, SIO_UDP_CONNRESET, &on, sizeof(on), NULL, 0, &returned, NULL, NULL)
        self._connected = True

    def send(self, data):
        """Send one datagram to the connected peer; return its length."""
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            ok = self._send_one(<unsigned char *>buf.buf, buf.len, NULL, 0)
            length = buf.len
        finally:
            PyBuffer_Release(&buf)
        if not ok:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(1, 1, length)
        return length

    def close(self):
        """Close: cancel the receives in flight and return every ring slot to FREE. Idempotent."""
        cdef int slot
        if self._closed:
            return
        self._closed = True
        self._shut()
        while self._fifo_len > 0:
            slot = self._pop()
            self._ring_batches[slot].release()
        self._release_core(self._ring)

    def __repr__(self):
        if self._closed:
            return "<iocp.UdpSocket closed>"
        return (f"<iocp.UdpSocket handle={<unsigned long long>self._sock} "
                f"posted={self._core.pending} queued={self._fifo_len}>")


# -- TCP ------------------------------------------------------------------------------------

cdef enum:
    STREAM_RECV = 0
    STREAM_SEND = 1
    STREAM_CONNECT = 2


cdef class TcpStream(_Endpoint):
    """A TCP connection: one overlapped WSARecv and at most one WSASend in flight.

    Example:
        >>> from horizon_drivers.iocp import TcpListener, TcpStream
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     with TcpStream.connect(listener.local_address) as stream:
        ...         stream.closed
        False
    """

    cdef unsigned char *_rbuf
    cdef Py_ssize_t _rstart, _rend
    cdef unsigned char *_sbuf
    cdef Py_ssize_t _sflight, _stotal      # [0, _sflight) in flight, [_sflight, _stotal) staged
    cdef bint _connecting, _eof, _shut_requested, _shut_done
    cdef object _recv_error, _send_error, _connect_error

    def __init__(self, sock, options, config=None, *, connecting=False, peer=None):
        cdef _Name name
        cdef int namelen = 0
        cdef IoOp *op
        cdef BOOL ok
        cdef int err
        if self._core != NULL:
            raise RuntimeError("TcpStream is already initialised")
        if sock.type != _socket.SOCK_STREAM:
            raise ValueError(f"expected a SOCK_STREAM socket, got {sock!r}")
        self._rbuf = <unsigned char *>malloc(STREAM_BUFFER)
        self._sbuf = <unsigned char *>malloc(STREAM_BUFFER)
        if self._rbuf == NULL or self._sbuf == NULL:
            raise MemoryError("cannot allocate the stream's buffers")
        if connecting:
            if peer is None:
                raise ValueError("a connecting stream needs its peer address")
            _sockaddr_of(peer, sock.family, <unsigned char *>&name, &namelen)
        self._adopt(sock, options, config, 3)
        self._core.ops[STREAM_RECV].kind = OP_RECV
        self._core.ops[STREAM_SEND].kind = OP_SEND
        self._core.ops[STREAM_CONNECT].kind = OP_CONNECT
        if not connecting:
            self._post_recv()
            return
        self._connecting = True
        err = horizon_load_extensions(self._sock)
        if err != 0:
            raise _error(err, "WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)")
        op = &self._core.ops[STREAM_CONNECT]
        _begin(op)
        ok = horizon_connectex(self._sock, <sockaddr *>&name, namelen, &op.ov)
        if ok:
            _end(op)
            self._completed(op, 0, 0)
            return
        err = WSAGetLastError()
        if err != WSA_IO_PENDING:
            _end(op)
            self._completed(op, 0, err)

    def __dealloc__(self):
        if self._core != NULL:
            self._core.owner = NULL
            self._closed = True
            if self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
            deadline = _time.monotonic() + CLOSE_DRAIN_SECONDS
            while self._core.pending > 0 and _time.monotonic() < deadline:
                _harvest(20, None)
            if self._core.pending > 0:
                self._rbuf = self._sbuf = NULL   # the kernel may still write: leak, never free
            self._release_core(None)
        free(self._rbuf)
        free(self._sbuf)

    @classmethod
    def connect(cls, address, config=None):
        """Start a ConnectEx to ``address``; see :meth:`finish_connect`.

        Example:
            >>> from horizon_drivers.iocp import TcpListener, TcpStream
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     with TcpStream.connect(listener.local_address) as stream:
            ...         stream.options["tcp_nodelay"].effective
            1
        """
        from horizon_drivers.iocp.connecting import open_stream_for_connect

        cfg = config if config is not None else NetConfig()
        target = as_socket_address(address)
        sock, report = open_stream_for_connect(target, cfg)
        try:
            return cls(sock, report, cfg, connecting=True, peer=target)
        except BaseException:
            sock.close()
            raise

    # -- completions ---------------------------------------------------------------------------

    cdef int _post_recv(self) except -1:
        cdef IoOp *op = &self._core.ops[STREAM_RECV]
        cdef DWORD nbytes = 0
        cdef int rc, err
        self._rstart = self._rend = 0
        _begin(op)
        op.flags = 0
        op.buf.buf = <char *>self._rbuf
        op.buf.len = STREAM_BUFFER
        rc = WSARecv(self._sock, &op.buf, 1, &nbytes, &op.flags, &op.ov, NULL)
        if rc == 0:
            _end(op)
            return self._completed(op, nbytes, 0)
        err = WSAGetLastError()
        if err == WSA_IO_PENDING:
            return 0
        _end(op)
        return self._completed(op, 0, err)

    cdef int _post_send(self) except -1:
        cdef IoOp *op = &self._core.ops[STREAM_SEND]
        cdef DWORD nbytes = 0
        cdef int rc, err
        self._sflight = self._stotal
        _begin(op)
        op.buf.buf = <char *>self._sbuf
        op.buf.len = <ULONG>self._sflight
        rc = WSASend(self._sock, &op.buf, 1, &nbytes, 0, &op.ov, NULL)
        if rc == 0:
            _end(op)
            return self._completed(op, nbytes, 0)
        err = WSAGetLastError()
        if err == WSA_IO_PENDING:
            return 0
        _end(op)
        return self._completed(op, 0, err)

    cdef int _completed(self, IoOp *op, DWORD nbytes, DWORD err) except -1:
        cdef int rc
        if self._closed:
            return 0
        if op.kind == OP_RECV:
            if err != 0:
                if err != ERROR_OPERATION_ABORTED:
                    self._recv_error = _error(err, "WSARecv")
            elif nbytes == 0:
                self._eof = True
            else:
                self._rstart = 0
                self._rend = nbytes
            return 0
        if op.kind == OP_SEND:
            if err != 0:
                self._sflight = self._stotal = 0
                if err != ERROR_OPERATION_ABORTED:
                    self._send_error = _error(err, "WSASend")
                return 0
            # Keep the bytes not yet sent (a short completion) and the staged ones.
            if nbytes > <DWORD>self._sflight:
                nbytes = <DWORD>self._sflight
            memmove(self._sbuf, self._sbuf + nbytes, self._stotal - nbytes)
            self._stotal -= nbytes
            self._sflight = 0
            if self._stotal > 0:
                return self._post_send()
            if self._shut_requested and not self._shut_done:
                self._shut_done = True
                shutdown(self._sock, SD_SEND)
            return 0
        # OP_CONNECT
        self._connecting = False
        if err != 0:
            self._connect_error = _error(err, "ConnectEx")
            return 0
        setsockopt(self._sock, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0)
        return self._post_recv()

    cdef int _readiness(self) except -1:
        cdef int bits = 0
        if self._closed:
            return 0
        if self._connect_error is not None:
            return READABLE | WRITABLE | ERROR | HANGUP
        if self._connecting:
            return 0
        if self._rstart < self._rend or self._eof:
            bits |= READABLE
        if self._recv_error is not None:
            bits |= READABLE | ERROR | HANGUP
        if self._send_error is not None:
            bits |= WRITABLE | ERROR
        elif self._stotal < STREAM_BUFFER or self._shut_requested:
            bits |= WRITABLE
        return bits

    # -- the stream API ------------------------------------------------------------------------

    @property
    def peer_address(self):
        """The other end's address (OSError while connecting)."""
        cdef _Name name
        cdef int namelen = NAME_BYTES
        self._check("TCP stream", "read the peer of")
        if getpeername(self._sock, <sockaddr *>&name, &namelen) != 0:
            raise _error(WSAGetLastError(), "getpeername")
        return _address_from(<unsigned char *>&name, namelen)

    def finish_connect(self):
        """True once connected, False while ConnectEx is in flight; raises its error (sticky)."""
        self._check("TCP stream", "finish connecting")
        if self._connecting:
            _harvest(0, None)
        if self._connect_error is not None:
            raise self._connect_error
        return not self._connecting

    def recv_into(self, buffer):
        """Copy received bytes into ``buffer``; 0 means the peer closed its write side.

        Raises ``BlockingIOError`` when nothing is waiting, ``ConnectionResetError`` on a reset.
        """
        cdef Py_buffer view
        cdef Py_ssize_t n
        self._check("TCP stream", "receive on")
        if self._rstart >= self._rend:
            _harvest(0, None)
        if self._rstart < self._rend:
            PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
            try:
                n = self._rend - self._rstart
                if n > view.len:
                    n = view.len
                memcpy(view.buf, self._rbuf + self._rstart, n)
                self._rstart += n
            finally:
                PyBuffer_Release(&view)
            if self._rstart >= self._rend and n > 0:
                self._post_recv()
            return n
        if self._recv_error is not None:
            raise self._recv_error
        if self._connect_error is not None:
            raise self._connect_error
        if self._eof:
            return 0
        raise BlockingIOError(11, "no bytes are waiting")

    cdef Py_ssize_t _stage(self, const unsigned char *data, Py_ssize_t length) noexcept:
        cdef Py_ssize_t room = STREAM_BUFFER - self._stotal
        if length > room:
            length = room
        memcpy(self._sbuf + self._stotal, data, length)
        self._stotal += length
        return length

    cdef int _check_writable(self) except -1:
        self._check("TCP stream", "send on")
        if self._send_error is not None:
            raise self._send_error
        if self._recv_error is not None and isinstance(self._recv_error, ConnectionError):
            raise self._recv_error
        if self._connect_error is not None:
            raise self._connect_error
        if self._shut_requested:
            raise BrokenPipeError(32, "the stream's write side was shut down")
        if self._connecting:
            raise BlockingIOError(11, "the connect is still in flight")
        if self._stotal >= STREAM_BUFFER:
            _harvest(0, None)
            if self._send_error is not None:
                raise self._send_error
            if self._stotal >= STREAM_BUFFER:
                raise BlockingIOError(11, "the send buffer is full")
        return 0

    def send(self, data):
        """Take what fits in the send buffer now; return how many bytes (may be fewer)."""
        cdef Py_buffer view
        cdef Py_ssize_t n
        self._check_writable()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            n = self._stage(<unsigned char *>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        if n > 0 and self._sflight == 0:
            self._post_send()
        return n

    def send_vectored(self, buffers):
        """Take several buffers in order, as much as fits; return the bytes taken."""
        cdef Py_buffer view
        cdef Py_ssize_t n, total = 0
        self._check_writable()
        for item in buffers:
            PyObject_GetBuffer(item, &view, PyBUF_SIMPLE)
            try:
                n = self._stage(<unsigned char *>view.buf, view.len)
                length = view.len
            finally:
                PyBuffer_Release(&view)
            total += n
            if n < length:
                break
        if total > 0 and self._sflight == 0:
            self._post_send()
        return total

    def shutdown_write(self):
        """Half close: the peer reads end-of-stream once every buffered byte went out."""
        self._check("TCP stream", "shut down")
        if self._connecting:
            raise _error(WSAENOTCONN, "shutdown")
        if self._shut_requested:
            return
        self._shut_requested = True
        if self._stotal == 0:
            self._shut_done = True
            if shutdown(self._sock, SD_SEND) != 0:
                raise _error(WSAGetLastError(), "shutdown")

    def close(self):
        """Close the stream. Idempotent. Unread received bytes make it a reset (abortive close)."""
        cdef linger abortive
        if self._closed:
            return
        self._closed = True
        if self._rstart < self._rend and self._sock != INVALID_SOCKET:
            abortive.l_onoff = 1
            abortive.l_linger = 0
            setsockopt(self._sock, SOL_SOCKET, SO_LINGER, <const char *>&abortive, sizeof(abortive))
        self._shut()
        if self._core != NULL and self._core.pending > 0:
            self._rbuf = self._sbuf = NULL   # still owned by the kernel: leak, never free
        self._release_core(None)
        free(self._rbuf)
        free(self._sbuf)
        self._rbuf = self._sbuf = NULL

    def __repr__(self):
        if self._closed:
            return "<iocp.TcpStream closed>"
        state = " connecting" if self._connecting else ""
        return f"<iocp.TcpStream handle={<unsigned long long>self._sock}{state}>"


cdef class TcpListener(_Endpoint):
    """A listening TCP socket that keeps AcceptEx operations posted.

    Example:
        >>> from horizon_drivers.iocp import TcpListener
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     str(listener.local_address.host)
        '127.0.0.1'
    """

    cdef int _ready[ACCEPT_DEPTH]
    cdef int _ready_head, _ready_len
    cdef object _accept_error

    def __init__(self, sock, options, config=None):
        cdef int i, err
        if self._core != NULL:
            raise RuntimeError("TcpListener is already initialised")
        if sock.type != _socket.SOCK_STREAM:
            raise ValueError(f"expected a SOCK_STREAM socket, got {sock!r}")
        self._adopt(sock, options, config, ACCEPT_DEPTH)
        err = horizon_load_extensions(self._sock)
        if err != 0:
            raise _error(err, "WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)")
        for i in range(ACCEPT_DEPTH):
            self._core.ops[i].kind = OP_ACCEPT
        for i in range(ACCEPT_DEPTH):
            self._post_accept(i)

    def __dealloc__(self):
        cdef int i
        if self._core != NULL:
            self._core.owner = NULL
            self._closed = True
            if self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
            deadline = _time.monotonic() + CLOSE_DRAIN_SECONDS
            while self._core.pending > 0 and _time.monotonic() < deadline:
                _harvest(20, None)
            for i in range(ACCEPT_DEPTH):
                if not self._core.ops[i].pending and self._core.ops[i].accepted != INVALID_SOCKET:
                    closesocket(self._core.ops[i].accepted)
                    self._core.ops[i].accepted = INVALID_SOCKET
            self._release_core(None)

    @classmethod
    def bind(cls, address, config=None):
        """Open, configure, bind and listen (backlog ``config.tcp_backlog``)."""
        from horizon_drivers.opening import open_tcp_listener

        cfg = config if config is not None else NetConfig()
        sock, report = open_tcp_listener(address, cfg)
        try:
            return cls(sock, report, cfg)
        except BaseException:
            sock.close()
            raise

    cdef int _post_accept(self, int i) except -1:
        cdef IoOp *op = &self._core.ops[i]
        cdef DWORD received = 0
        cdef SOCKET accepted
        cdef int err
        accepted = WSASocketW(self._family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                              WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT)
        if accepted == INVALID_SOCKET:
            self._accept_error = _error(WSAGetLastError(), "WSASocketW")
            return 0
        op.accepted = accepted
        _begin(op)
        if horizon_acceptex(self._sock, accepted, op.accept_out, ACCEPT_ADDRLEN, &received, &op.ov):
            _end(op)
            return self._completed(op, 0, 0)
        err = WSAGetLastError()
        if err == WSA_IO_PENDING:
            return 0
        _end(op)
        closesocket(accepted)
        op.accepted = INVALID_SOCKET
        self._accept_error = _error(err, "AcceptEx")
        return 0

    cdef int _completed(self, IoOp *op, DWORD nbytes, DWORD err) except -1:
        cdef SOCKET listener = self._sock
        if self._closed:
            if op.accepted != INVALID_SOCKET:
                closesocket(op.accepted)
                op.accepted = INVALID_SOCKET
            return 0
        if err != 0:
            closesocket(op.accepted)
            op.accepted = INVALID_SOCKET
            if err == ERROR_OPERATION_ABORTED:
                return 0
            # A connection reset before it was accepted is the client's business: post again.
            return self._post_accept(op.index)
        setsockopt(op.accepted, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT,
                   <const char *>&listener, sizeof(listener))
        self._ready[(self._ready_head + self._ready_len) % ACCEPT_DEPTH] = op.index
        self._ready_len += 1
        return 0

    cdef int _readiness(self) except -1:
        if self._closed:
            return 0
        if self._ready_len > 0:
            return READABLE
        if self._accept_error is not None:
            return READABLE | ERROR
        return 0

    def accept_nonblocking(self):
        """Accept one connection as a configured stream; BlockingIOError if none waits."""
        cdef int i
        cdef SOCKET accepted
        self._check("TCP listener", "accept on")
        if self._ready_len == 0:
            _harvest(0, None)
        if self._ready_len == 0:
            if self._accept_error is not None:
                exc, self._accept_error = self._accept_error, None
                for i in range(ACCEPT_DEPTH):
                    if not self._core.ops[i].pending and self._core.ops[i].accepted == INVALID_SOCKET:
                        self._post_accept(i)
                raise exc
            raise BlockingIOError(11, "no connection is waiting")
        i = self._ready[self._ready_head]
        self._ready_head = (self._ready_head + 1) % ACCEPT_DEPTH
        self._ready_len -= 1
        accepted = self._core.ops[i].accepted
        self._core.ops[i].accepted = INVALID_SOCKET
        self._post_accept(i)
        from horizon_drivers.opening import configure_accepted

        sock = _socket.socket(self._family, _socket.SOCK_STREAM, 0, <unsigned long long>accepted)
        report = configure_accepted(sock, self.config)
        stream = TcpStream(sock, report, self.config)
        return stream, stream.peer_address

    def close(self):
        """Stop listening: cancel the posted AcceptEx calls and close their sockets. Idempotent."""
        cdef int i
        if self._closed:
            return
        self._closed = True
        self._shut()
        if self._core != NULL:
            for i in range(ACCEPT_DEPTH):
                if not self._core.ops[i].pending and self._core.ops[i].accepted != INVALID_SOCKET:
                    closesocket(self._core.ops[i].accepted)
                    self._core.ops[i].accepted = INVALID_SOCKET
        self._ready_len = 0
        self._release_core(None)

    def __repr__(self):
        if self._closed:
            return "<iocp.TcpListener closed>"
        return f"<iocp.TcpListener handle={<unsigned long long>self._sock} ready={self._ready_len}>"


# -- the runtime ----------------------------------------------------------------------------

cdef object _READINESS = tuple(Readiness(bits) for bits in range(16))


cdef class Runtime:
    """A readiness loop over this driver's sockets, on the completion port.

    ``poll_once`` harvests completions with GetQueuedCompletionStatusEx and reports, level-
    triggered, every registered socket whose state is ready: received datagrams or bytes
    queued, a connection accepted, a connect finished, room in a stream's send buffer (UDP
    sockets are always writable). ``wake`` posts a packet with PostQueuedCompletionStatus.

    Example:
        >>> from horizon_core.events import Interest
        >>> from horizon_drivers.iocp import Runtime, UdpSocket
        >>> with Runtime() as rt, UdpSocket.bind("127.0.0.1:0") as sock:
        ...     token = rt.register(sock, Interest.WRITABLE)
        ...     [ev.token == token and ev.writable for ev in rt.poll_once(1.0)]
        [True]
    """

    cdef object _slab
    cdef bint _closed
    cdef bint _polling
    cdef bint _stop_requested
    cdef public bint _woken
    cdef readonly uint64_t _id
    cdef object _default_timeout
    cdef readonly object config
    cdef object __weakref__

    def __init__(self, config=None):
        global _next_runtime_id
        cfg = config if config is not None else NetConfig()
        self.config = cfg
        self._default_timeout = cfg.poll_timeout
        self._slab = Slab()
        self._id = _next_runtime_id
        _next_runtime_id += 1
        _runtimes[self._id] = self

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def __len__(self):
        return len(self._slab)

    def __contains__(self, token):
        return token in self._slab

    def source(self, token):
        """The object registered under ``token`` (StaleTokenError if it is not live)."""
        return self._slab.get(token)[0]

    cdef int _check(self, str operation) except -1:
        if self._closed:
            raise SocketClosedError("runtime", operation)
        return 0

    @staticmethod
    def _mask(interest):
        if not isinstance(interest, int) or isinstance(interest, bool):
            raise TypeError(f"interest must be an Interest, got {interest!r}")
        bits = int(interest)
        if bits < 0 or bits & ~3:
            raise ValueError(f"interest must combine Interest.READABLE and Interest.WRITABLE, "
                             f"got {interest!r}")
        return bits

    def register(self, source, interest):
        """Watch one of this driver's sockets for ``interest``; return its token."""
        self._check("register with")
        bits = Runtime._mask(interest)
        if not isinstance(source, _Endpoint):
            raise TypeError(
                f"the iocp Runtime watches iocp sockets only (completion state, not descriptors); "
                f"got {type(source).__name__}"
            )
        if (<_Endpoint>source)._closed:
            raise SocketClosedError("socket", "register")
        return self._slab.insert([source, bits])

    def reregister(self, token, interest):
        """Change what the source registered under ``token`` is watched for."""
        self._check("reregister with")
        bits = Runtime._mask(interest)
        self._slab.get(token)[1] = bits

    def deregister(self, token):
        """Stop watching; no event for ``token`` is delivered after this returns."""
        self._check("deregister from")
        self._slab.remove(token)

    cdef list _collect(self):
        cdef int bits
        cdef _Endpoint source
        events = []
        for token, entry in self._slab.items():
            source = <_Endpoint>entry[0]
            bits = source._readiness() & (<int>entry[1] | ERROR | HANGUP)
            if bits:
                events.append(Event(token, _READINESS[bits]))
        return events

    def poll_once(self, timeout=None):
        """Harvest completions for up to ``timeout`` seconds; return the ready events.

        ``None`` uses ``config.poll_timeout`` (blocking when that is None too); 0 never blocks.
        """
        self._check("poll")
        if self._polling:
            raise RuntimeError("poll_once is already running on this runtime in another thread")
        if timeout is None:
            timeout = self._default_timeout
        wait_ms = _milliseconds(timeout)
        _harvest(0, self)
        events = self._collect()
        if events or wait_ms == 0 or self._woken:
            self._woken = False
            return events
        deadline = None if timeout is None else _time.monotonic() + float(timeout)
        self._polling = True
        _blocked.add(self._id)
        try:
            while True:
                if deadline is None:
                    step = INFINITE
                else:
                    remaining = deadline - _time.monotonic()
                    if remaining <= 0:
                        break
                    step = _milliseconds(remaining)
                _harvest(step, self)
                if self._closed:
                    return []
                events = self._collect()
                if events or self._woken:
                    break
        finally:
            self._polling = False
            _blocked.discard(self._id)
        self._woken = False
        return events

    def run(self, handler, *, timeout=None):
        """Call ``handler(event)`` for each event until ``stop()`` (or ``close()``)."""
        if self._closed:
            self._stop_requested = False
            raise SocketClosedError("runtime", "run")
        slab = self._slab
        try:
            while not self._stop_requested and not self._closed:
                for event in self.poll_once(timeout):
                    if event[0] in slab:
                        handler(event)
                    if self._closed:
                        break
        finally:
            self._stop_requested = False

    def stop(self):
        """Make ``run`` return after the current step. Safe from any thread."""
        self._stop_requested = True
        if not self._closed:
            self.wake()

    def wake(self):
        """Interrupt a blocked ``poll_once`` from any thread (PostQueuedCompletionStatus)."""
        cdef BOOL ok
        cdef uint64_t target = self._id
        if self._closed:
            raise SocketClosedError("runtime", "wake")
        with nogil:
            ok = PostQueuedCompletionStatus(_port, 0, KEY_WAKE, <OVERLAPPED *><ULONG_PTR>target)
        if not ok:
            raise _error(GetLastError(), "PostQueuedCompletionStatus")

    def close(self):
        """Close the runtime (registered sockets stay open). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._slab = Slab()
        if self._polling:
            _post_wake(self._id)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else "open"
        return f"<iocp.Runtime {state} registered={len(self._slab)}>"


def _init_hub():
    global _port
    _socket.socket  # the socket module has called WSAStartup
    _port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0)
    if _port == NULL:
        raise _error(GetLastError(), "CreateIoCompletionPort")


_init_hub()
