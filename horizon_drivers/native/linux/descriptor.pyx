# cython: embedsignature.format=clinic
"""What the Linux driver's socket classes share: one owned descriptor and its lifetime.

Rules this module obeys:

* An ``OwnedDescriptor`` adopts a configured ``socket.socket`` (it detaches it: the descriptor is
  now ours alone) and closes it exactly once, in ``close()`` or ``__dealloc__``. A close that races
  a call running in another thread is deferred until that call returns (``_enter``/``_leave``
  count the calls in flight), so a descriptor number is never reused under a syscall.
* Every operation on a closed descriptor raises ``SocketClosedError`` naming what it was
  (``_kind``, set by the subclass) and the operation.
* ``send_buffer``/``recv_buffer`` run one sendto/recvfrom, retried on EINTR after running signal
  handlers (PEP 475); they return -1 with the errno instead of raising, so each caller counts and
  names its own failures. The GIL is released around the call unless it cannot wait (MSG_DONTWAIT)
  and moves fewer than ``GIL_KEPT_BELOW`` bytes: such a call is over in about the time that
  handing the GIL to another thread and taking it back costs, and that handover sat on every
  round trip of a request/response stream. A send knows its size; a receive is judged by the
  smaller of its buffer and ``expect``, what the socket's previous receive moved (a stream that
  answered small messages goes on doing so; a bulk stream's next read is large again), so
  threads that copy bulk data still copy it in parallel.
* Zero-copy sends (``NetConfig.zerocopy_threshold``): a socket whose SO_ZEROCOPY reads back as on
  gets a ``ZerocopyLedger`` (``zerocopy_ledger.pxi``) that holds what each MSG_ZEROCOPY send
  reads until its completion; ``reap_zerocopy`` reads completions, ``close`` reads the queued
  ones and counts the rest as abandoned.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy, memset
from posix.uio cimport iovec
from posix.unistd cimport close

from horizon_drivers.native.linux.sys_socket cimport (
    sockaddr, socklen_t, sendto, recvfrom, recvmsg, getsockopt, msghdr, cmsghdr,
    CMSG_FIRSTHDR, CMSG_NXTHDR, CMSG_DATA, CMSG_LEN, SOL_SOCKET, MSG_DONTWAIT,
)
from horizon_drivers.native.linux.netinet_in cimport IPPROTO_IP, IPPROTO_IPV6
from horizon_drivers.native.linux.sys_errqueue cimport (
    SO_ZEROCOPY, MSG_ERRQUEUE, SO_EE_ORIGIN_ZEROCOPY, SO_EE_CODE_ZEROCOPY_COPIED, IP_RECVERR,
    IPV6_RECVERR, sock_extended_err,
)
from horizon_drivers.native.linux.address cimport local_address_of

import socket as _socket

from horizon_core.config import resolve_config
from horizon_core.errors import SocketClosedError

__all__: list[str] = []  # C-level API (see the .pxd); the classes are exported by their modules

include "zerocopy_ledger.pxi"

cdef dict _NO_ZEROCOPY = {}


cdef class OwnedDescriptor:
    """The base of the Linux socket classes: an adopted, nonblocking descriptor.

    Not used on its own: ``UdpSocket``, ``TcpStream`` and ``TcpListener`` extend it.
    """

    def __cinit__(self, *args, **kwargs):
        self._fd = -1
        self._closed = True

    def __dealloc__(self):
        if self._fd >= 0:
            close(self._fd)
            self._fd = -1

    cdef int _adopt(self, object sock, int socktype, object options, object config) except -1:
        """Take over ``sock``'s descriptor (an AF_INET/AF_INET6 socket of ``socktype``)."""
        if not isinstance(sock, _socket.socket):
            raise TypeError(f"expected a socket.socket, got {type(sock).__name__}")
        if self._fd >= 0:
            raise RuntimeError(f"{type(self).__name__} is already initialised")
        if sock.type != socktype or sock.family not in (_socket.AF_INET, _socket.AF_INET6):
            kind = _socket.SocketKind(socktype).name
            raise ValueError(f"expected an AF_INET/AF_INET6 {kind} socket, got {sock!r}")
        if sock.fileno() < 0:
            raise SocketClosedError(self._kind, "adopt")
        sock.setblocking(False)
        self.config = resolve_config(config)
        self._options = options
        self._family = sock.family
        self._fd = sock.detach()
        self._closed = False
        threshold = self.config.zerocopy_threshold
        if threshold is not None and zerocopy_enabled(self._fd):
            self._zc = ZerocopyLedger(threshold)
        return 0

    cdef int _enter(self, str operation) except -1:
        if self._closed:
            raise SocketClosedError(self._kind, operation)
        self._busy += 1
        return self._fd

    cdef void _leave(self) noexcept:
        self._busy -= 1
        if self._closed and self._busy == 0 and self._fd >= 0:
            close(self._fd)
            self._fd = -1

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    @property
    def options(self):
        """What the config asked for and what the kernel did with it (an OptionReport)."""
        return self._options

    @property
    def local_address(self):
        """The bound address, with the port the kernel chose for port 0."""
        cdef int fd = self._enter("read the address of")
        try:
            return local_address_of(fd)
        finally:
            self._leave()

    def fileno(self):
        """The descriptor, or -1 once closed (as ``socket.socket.fileno``)."""
        return -1 if self._closed else self._fd

    cdef dict _zerocopy_counters(self):
        return _NO_ZEROCOPY if self._zc is None else self._zc.counters()

    @property
    def zerocopy_in_flight(self):
        """Zero-copy sends whose completion has not been read yet (0 when zero-copy is off).

        Their buffers are held (pool slots stay out of use) until :meth:`reap_zerocopy`, or the
        runtime, reads the completion; do not modify a buffer you sent before that.
        """
        return 0 if self._zc is None else len(self._zc.holds)

    def reap_zerocopy(self):
        """Read the zero-copy completions the kernel has queued; return how many sends they
        completed (0 when zero-copy is off). Never blocks; releases what those sends held.

        The runtime does this when the socket reports EPOLLERR (queued completions raise it);
        call it yourself when sending without a runtime.

        Example:
            >>> from horizon_core.config import NetConfig
            >>> from horizon_drivers.native import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0", NetConfig(zerocopy_threshold=8192)) as sock:
            ...     sock.reap_zerocopy(), sock.zerocopy_in_flight
            (0, 0)
        """
        cdef unsigned long long before
        cdef int fd = self._enter("reap zero-copy completions on")
        try:
            if self._zc is None:
                return 0
            before = self._zc.completions
            self._zc.drain(fd)
            return self._zc.completions - before
        finally:
            self._leave()

    def _reap_on_error(self):
        """The runtime's EPOLLERR hook: read completions; True when they alone raised it."""
        if self._zc is None or self._closed:
            return False
        return self.reap_zerocopy() > 0 and not self._zc.foreign

    def _inject_zerocopy_enobufs(self, count=1):
        """Test hook: the next ``count`` zero-copy sends meet ENOBUFS, as when option memory is
        spent, and take the copying fallback."""
        if self._zc is None:
            raise RuntimeError(f"zero-copy sends are off on this {self._kind}")
        self._zc.inject_enobufs = count

    def close(self):
        """Close the descriptor. Idempotent; a call running in another thread finishes first.

        With zero-copy sends on, completions already queued are read first; sends still in
        flight are counted in ``stats.zerocopy_abandoned`` and what they held is let go (the
        kernel keeps its own references to the pages, so nothing dangles).
        """
        if self._closed:
            return
        if self._zc is not None:
            if self._busy == 0 and self._fd >= 0:
                self._zc.drain(self._fd)
            self._zc.abandon()
        self._closed = True
        if self._busy == 0 and self._fd >= 0:
            close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()


cdef ssize_t send_buffer(int fd, object data, int flags, const sockaddr *name,
                         socklen_t namelen, int *err) except -2:
    """sendto(2) of one buffer (``name`` NULL: the connected peer); -1 and ``*err`` on failure."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return _transfer(fd, False, &view, flags, <sockaddr *>name, NULL, namelen, err, view.len)
    finally:
        PyBuffer_Release(&view)


cdef ssize_t recv_buffer(int fd, object buffer, int flags, sockaddr *name, socklen_t *namelen,
                         Py_ssize_t *capacity, int *err, Py_ssize_t expect=-1) except -2:
    """recvfrom(2) into one writable buffer; ``*capacity`` is its size; -1 and ``*err`` on failure.

    ``name``/``namelen`` (NULL: not wanted) receive the sender; ``*namelen`` is the room in
    ``name`` on entry and the sender's length on return. ``expect`` (-1: unknown) is how much the
    caller expects to arrive, which decides whether the GIL is kept (module docstring).
    """
    cdef Py_buffer view
    cdef socklen_t room = namelen[0] if namelen != NULL else 0
    PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
    capacity[0] = view.len
    try:
        return _transfer(fd, True, &view, flags, name, namelen, room, err,
                         view.len if expect < 0 or expect > view.len else expect)
    finally:
        PyBuffer_Release(&view)


#: Nonblocking transfers smaller than this keep the GIL (see the module docstring).
GIL_KEPT_BELOW = 16384


cdef inline ssize_t _one_call(int fd, bint receive, Py_buffer *view, int flags, sockaddr *name,
                              socklen_t *namelen, socklen_t room, int *err) noexcept nogil:
    """One recvfrom or sendto; ``*err`` is its errno when it returns -1."""
    cdef ssize_t n
    if receive:
        n = recvfrom(fd, view.buf, view.len, flags, name, namelen)
    else:
        n = sendto(fd, view.buf, view.len, flags, name, room)
    if n < 0:
        err[0] = errno
    return n


cdef ssize_t _transfer(int fd, bint receive, Py_buffer *view, int flags, sockaddr *name,
                       socklen_t *namelen, socklen_t room, int *err, Py_ssize_t size) except -2:
    """recvfrom or sendto, retried on EINTR after the signal handlers ran; ``size`` is what it
    is expected to move.

    ``room`` is the room in ``name`` (receive: ``*namelen`` is reset to it before each try) or the
    length of the destination (send).
    """
    cdef ssize_t n = 0
    cdef int e = 0
    cdef bint keep_gil = (flags & MSG_DONTWAIT) != 0 and size < GIL_KEPT_BELOW
    while True:
        if namelen != NULL:
            namelen[0] = room
        if keep_gil:
            n = _one_call(fd, receive, view, flags, name, namelen, room, &e)
        else:
            with nogil:
                n = _one_call(fd, receive, view, flags, name, namelen, room, &e)
        if n >= 0 or e != EINTR:
            break
        PyErr_CheckSignals()
    err[0] = e
    return n
