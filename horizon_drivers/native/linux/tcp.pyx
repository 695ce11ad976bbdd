# cython: embedsignature.format=clinic
"""Nonblocking TCP on Linux: a listener that accepts configured streams, and the streams.

Rules this module obeys:

* ``TcpListener`` and ``TcpStream`` own their descriptors and close them in ``close()`` or
  ``__dealloc__``; a close racing a call in another thread is deferred until that call returns
  (``descriptor.OwnedDescriptor``).
* Every syscall that can wait or moves 16 KiB or more runs with the GIL released (a smaller
  nonblocking recv/send keeps it: ``descriptor.pyx`` says why); each is retried on EINTR;
  would-block is the builtin ``BlockingIOError``; sends use MSG_NOSIGNAL, so a reset peer is an
  error, never SIGPIPE.
* Accepted streams come from ``accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`` and get the listener's
  config (nodelay, quickack, buffers, tos) through ``opening.configure_accepted``: the reference
  returned blocking, unconfigured streams.
* TCP_QUICKACK is not sticky on Linux (the kernel leaves quick-ack mode when it sees interactive
  traffic), so a stream whose config asks for it re-arms it after a read that returned data, at
  most once per millisecond (see ``_QUICKACK_REARM_NS``).
* With ``NetConfig.zerocopy_threshold`` set (and SO_ZEROCOPY in effect), ``send`` and
  ``send_vectored`` of at least that many bytes use MSG_ZEROCOPY: the buffers are held until the
  kernel's completion, which ``reap_zerocopy`` (and the runtime, on EPOLLERR) reads; see
  ``zerocopy_ledger.pxi``. Counters are C integers; ``stats`` builds a ``StatsSnapshot``.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR, ENOTCONN, EAGAIN, ENOBUFS
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC_COARSE
from posix.uio cimport iovec
from posix.unistd cimport close

from horizon_drivers.native.linux.sys_socket cimport (
    sockaddr, socklen_t, msghdr, accept4, shutdown, sendmsg, getsockopt, setsockopt,
    getpeername, SOL_SOCKET, SO_ERROR, SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_NOSIGNAL, MSG_DONTWAIT,
    SHUT_RD, SHUT_WR, SHUT_RDWR,
)
from horizon_drivers.native.linux.netinet_in cimport IPPROTO_TCP
from horizon_drivers.native.linux.address cimport (
    address_from_sockaddr, peer_address_of, raise_errno,
)
from horizon_drivers.native.linux.descriptor cimport (
    OwnedDescriptor, ZerocopyLedger, send_buffer, recv_buffer,
)
from horizon_drivers.native.linux.sys_errqueue cimport MSG_ZEROCOPY

import socket as _socket

from horizon_core.config import resolve_config
from horizon_core.stats import StatsSnapshot

__all__ = ["MAX_IOV", "TcpListener", "TcpStream"]

#: The most buffers one ``send_vectored`` call passes to sendmsg (the kernel's IOV_MAX).
MAX_IOV = 1024

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_QUICKACK

# How often a reading stream may re-arm TCP_QUICKACK. The setsockopt is not just a syscall: when
# an ACK is pending it sends that ACK as a packet of its own, right away. Done after every read it
# cost a pure ACK per read (profiled: a fifth of an echo server's time in ping-pong, a tenth in
# bulk), and it kept a reply from carrying that ACK. Quick-ack mode only needs re-arming when
# reads are far apart: the kernel's delayed-ACK timer is tens of milliseconds (TCP_DELACK_MIN is
# 40 ms), and it ACKs every second full segment anyway. CLOCK_MONOTONIC_COARSE is read from the
# vDSO for a few nanoseconds; its tick (1-4 ms) only makes the interval longer, never shorter.
cdef long long _QUICKACK_REARM_NS = 1000000

# Cap on the buffers acquired from the caller's sequence by one send_vectored on the stack; more
# (up to MAX_IOV) go to the heap.
cdef enum:
    _STACK_IOV = 16


cdef inline long long _coarse_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class TcpStream(OwnedDescriptor):
    """A nonblocking TCP connection.

    Example:
        >>> from horizon_drivers.native import TcpListener, TcpStream
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     client = TcpStream.connect(listener.local_address)
        ...     client.finish_connect() in (True, False)
        ...     client.close()
        True
    """

    cdef bint _connecting
    cdef bint _quickack
    cdef long long _quickack_at   # coarse clock of the last re-arm
    cdef object _connect_error
    cdef uint64_t _bytes_sent, _bytes_received, _send_calls, _recv_calls, _would_block, _errors

    def __cinit__(self, *args, **kwargs):
        self._kind = "TCP stream"

    def __init__(self, sock: _socket.socket, options, config=None, *, connecting=False):
        cdef int value = 0
        cdef socklen_t length = sizeof(value)
        self._adopt(sock, _socket.SOCK_STREAM, options, config)
        self._connecting = bool(connecting)
        if self.config.tcp_quickack:
            if getsockopt(self._fd, IPPROTO_TCP, TCP_QUICKACK, &value, &length) == 0 and value:
                self._quickack = True
                self._quickack_at = _coarse_ns()  # it was just set: the first re-arm can wait

    @classmethod
    def connect(cls, address, config=None):
        """Start a nonblocking connect to ``address``; see :meth:`finish_connect`.

        Example:
            >>> from horizon_drivers.native import TcpListener, TcpStream
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     with TcpStream.connect(listener.local_address) as stream:
            ...         stream.closed
            False
        """
        from horizon_drivers.opening import NATIVE_FEATURES, open_tcp_stream

        cfg = resolve_config(config)
        sock, report = open_tcp_stream(address, cfg, NATIVE_FEATURES)
        return cls(sock, report, cfg, connecting=True)

    @property
    def peer_address(self):
        """The other end's address (OSError ENOTCONN while connecting)."""
        cdef int fd = self._enter("read the peer of")
        try:
            return peer_address_of(fd)
        finally:
            self._leave()

    def finish_connect(self):
        """True once connected, False while the connect is in progress; raises its error.

        A failed connect raises the same error on every later call.
        """
        cdef int err = 0, rc = 0
        cdef socklen_t length = sizeof(err)
        cdef unsigned char name[128]
        cdef socklen_t namelen = sizeof(name)
        cdef int fd = self._enter("finish connecting")
        try:
            if self._connect_error is not None:
                raise self._connect_error
            if not self._connecting:
                return True
            with nogil:
                rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &length)
                if rc != 0:
                    err = errno
            if err != 0:
                try:
                    raise_errno(err, "connect")
                except OSError as exc:
                    self._connect_error = exc
                    raise
            with nogil:
                rc = getpeername(fd, <sockaddr *>name, &namelen)
                if rc != 0:
                    err = errno
            if rc == 0:
                self._connecting = False
                return True
            if err == ENOTCONN:
                return False
            raise_errno(err, "getpeername")
        finally:
            self._leave()

    def recv_into(self, buffer):
        """Read into ``buffer``; 0 means the peer closed its write side.

        Raises ``BlockingIOError`` when nothing is waiting, ``ConnectionResetError`` on a reset.
        """
        cdef Py_ssize_t capacity = 0
        cdef ssize_t n
        cdef int err = 0, one = 1
        cdef long long now
        cdef int fd = self._enter("receive on")
        try:
            n = recv_buffer(fd, buffer, MSG_DONTWAIT, NULL, NULL, &capacity, &err, self._last_read)
            self._recv_calls += 1
            if n < 0:
                self._count_failure(err)
                raise_errno(err, "recv")
            self._last_read = n
            self._bytes_received += <uint64_t>n
            if n > 0 and self._quickack:
                now = _coarse_ns()
                if now - self._quickack_at >= _QUICKACK_REARM_NS:
                    self._quickack_at = now
                    with nogil:
                        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one))
            return n
        finally:
            self._leave()

    def send(self, data):
        """Write what the kernel takes now; return how many bytes (may be fewer than given).

        With ``NetConfig.zerocopy_threshold`` set, a buffer at least that large is sent with
        MSG_ZEROCOPY and held until its completion: do not modify it before
        ``zerocopy_in_flight`` drops (see :meth:`reap_zerocopy`).
        """
        cdef ssize_t n
        cdef int err = 0
        cdef int fd = self._enter("send on")
        try:
            if self._zc is not None:
                return self._send_zerocopy(fd, data)
            n = send_buffer(fd, data, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0, &err)
            return self._account_send(n, err, "send")
        finally:
            self._leave()

    cdef Py_ssize_t _send_zerocopy(self, int fd, object data) except -1:
        cdef ssize_t n
        cdef int err = 0
        cdef ZerocopyLedger zc = self._zc
        view = memoryview(data)
        if view.nbytes < zc.threshold:
            n = send_buffer(fd, view, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0, &err)
            return self._account_send(n, err, "send")
        if zc.inject_enobufs > 0:
            zc.inject_enobufs -= 1
            n, err = -1, ENOBUFS
        else:
            n = send_buffer(fd, view, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_ZEROCOPY, NULL, 0, &err)
        if n > 0:
            zc.record(view)
        elif n < 0 and err == ENOBUFS:
            # Option memory is spent on notifications in flight: read them (that frees it) and
            # send this one by copying.
            zc.fallbacks += 1
            zc.drain(fd)
            n = send_buffer(fd, view, MSG_NOSIGNAL | MSG_DONTWAIT, NULL, 0, &err)
        return self._account_send(n, err, "send")

    cdef inline Py_ssize_t _account_send(self, ssize_t n, int err, str context) except -1:
        self._send_calls += 1
        if n < 0:
            self._count_failure(err)
            raise_errno(err, context)
        self._bytes_sent += <uint64_t>n
        return n

    cdef inline void _count_failure(self, int err) noexcept:
        if err == EAGAIN:
            self._would_block += 1
        else:
            self._errors += 1

    @property
    def stats(self):
        """Calls, bytes and zero-copy counters since the stream opened (a StatsSnapshot)."""
        extra = self._zerocopy_counters()
        return StatsSnapshot(
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            send_calls=self._send_calls,
            recv_calls=self._recv_calls,
            would_block=self._would_block,
            errors=self._errors,
            **extra,
        )

    def send_vectored(self, buffers):
        """Write several buffers with one sendmsg (at most MAX_IOV); return the bytes taken.

        Zero-copy (MSG_ZEROCOPY) when they total at least ``NetConfig.zerocopy_threshold``
        bytes; every buffer is then held until the completion, as in :meth:`send`.
        """
        cdef msghdr msg
        cdef Py_buffer stack_views[_STACK_IOV]
        cdef iovec stack_iov[_STACK_IOV]
        cdef Py_buffer *views = stack_views
        cdef iovec *iov = stack_iov
        cdef Py_ssize_t count, i, acquired = 0
        cdef ssize_t n = 0
        cdef size_t total = 0
        cdef int err = 0
        cdef int flags = MSG_NOSIGNAL | MSG_DONTWAIT
        cdef ZerocopyLedger zc = self._zc
        cdef int fd = self._enter("send on")
        try:
            items = buffers if isinstance(buffers, (list, tuple)) else list(buffers)
            count = len(items)
            if count > MAX_IOV:
                count = MAX_IOV
            if count == 0:
                return 0
            if count > _STACK_IOV:
                views = <Py_buffer *>calloc(count, sizeof(Py_buffer))
                iov = <iovec *>calloc(count, sizeof(iovec))
                if views == NULL or iov == NULL:
                    raise MemoryError("cannot allocate iovecs")
            try:
                for i in range(count):
                    PyObject_GetBuffer(items[i], &views[i], PyBUF_SIMPLE)
                    acquired += 1
                    iov[i].iov_base = views[i].buf
                    iov[i].iov_len = views[i].len
                    total += views[i].len
                hold = None
                if zc is not None and total >= <size_t>zc.threshold:
                    if zc.inject_enobufs > 0:
                        zc.inject_enobufs -= 1
                        zc.fallbacks += 1
                    else:
                        # What the kernel reads until the completion: views keep a bytearray
                        # from being resized (and its memory moved) meanwhile.
                        hold = tuple([memoryview(items[i]) for i in range(count)])
                        flags |= MSG_ZEROCOPY
                msg.msg_name = NULL
                msg.msg_namelen = 0
                msg.msg_iov = iov
                msg.msg_iovlen = count
                msg.msg_control = NULL
                msg.msg_controllen = 0
                msg.msg_flags = 0
                while True:
                    with nogil:
                        n = sendmsg(fd, &msg, flags)
                        if n < 0:
                            err = errno
                    if n < 0 and err == ENOBUFS and hold is not None:
                        # Option memory is spent on notifications in flight: read them (that
                        # frees it) and send this one by copying.
                        zc.fallbacks += 1
                        zc.drain(fd)
                        flags &= ~MSG_ZEROCOPY
                        hold = None
                        continue
                    if n >= 0 or err != EINTR:
                        break
                    PyErr_CheckSignals()
                if n > 0 and hold is not None:
                    zc.record(hold)
            finally:
                for i in range(acquired):
                    PyBuffer_Release(&views[i])
            return self._account_send(n, err, "sendmsg")
        finally:
            if views != stack_views:
                free(views)
            if iov != stack_iov:
                free(iov)
            self._leave()

    def shutdown(self, how=_socket.SHUT_RDWR):
        """Shut down one or both directions (``socket.SHUT_RD``, ``SHUT_WR``, ``SHUT_RDWR``)."""
        cdef int rc = 0, err = 0
        cdef int direction = how
        cdef int fd
        if direction not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise ValueError(f"how must be SHUT_RD, SHUT_WR or SHUT_RDWR, got {how!r}")
        fd = self._enter("shut down")
        try:
            with nogil:
                rc = shutdown(fd, direction)
                if rc != 0:
                    err = errno
            if rc != 0:
                raise_errno(err, "shutdown")
        finally:
            self._leave()

    def shutdown_write(self):
        """Half close: the peer reads end-of-stream, this end can still read."""
        self.shutdown(SHUT_WR)

    def __repr__(self):
        if self._closed:
            return "<TcpStream closed>"
        return f"<TcpStream fd={self._fd}{' connecting' if self._connecting else ''}>"


cdef class TcpListener(OwnedDescriptor):
    """A nonblocking listening TCP socket whose accepted streams carry its config.

    Example:
        >>> from horizon_drivers.native import TcpListener
        >>> with TcpListener.bind("127.0.0.2:0") as listener:
        ...     str(listener.local_address.host)
        '127.0.0.2'
    """

    def __cinit__(self, *args, **kwargs):
        self._kind = "TCP listener"

    def __init__(self, sock: _socket.socket, options, config=None):
        self._adopt(sock, _socket.SOCK_STREAM, options, config)

    @classmethod
    def bind(cls, address, config=None):
        """Open, configure, bind and listen (backlog ``config.tcp_backlog``).

        Example:
            >>> from horizon_drivers.native import TcpListener
            >>> with TcpListener.bind("[::1]:0") as listener:
            ...     listener.local_address.family
            6
        """
        from horizon_drivers.opening import NATIVE_FEATURES, open_tcp_listener

        cfg = resolve_config(config)
        sock, report = open_tcp_listener(address, cfg, NATIVE_FEATURES)
        return cls(sock, report, cfg)

    def accept_nonblocking(self):
        """Accept one connection as a nonblocking, configured stream; BlockingIOError if none."""
        cdef unsigned char name[128]
        cdef socklen_t namelen = sizeof(name)
        cdef int newfd, err = 0
        cdef int fd = self._enter("accept on")
        try:
            newfd = _accept(fd, name, &namelen, &err)
            if newfd < 0:
                raise_errno(err, "accept4")
            return self._wrap(newfd, name, namelen)
        finally:
            self._leave()

    def accept_many(self, max_count=64):
        """Accept up to ``max_count`` waiting connections: a list of ``(stream, peer)`` pairs.

        Each stream is nonblocking and configured, as from :meth:`accept_nonblocking`; the
        accept4 calls run in one loop in C. Raises ``BlockingIOError`` when none is waiting. An
        accept4 error after the first stream (a handshake the peer aborted, out of descriptors)
        ends the batch without raising, so no accepted stream is lost; a lasting error is raised
        by the next call. A stream whose configuration fails (a required option refused) raises,
        and the streams accepted before it in the batch are closed. Level-triggered, one call per
        readiness event serves a burst of connects; edge-triggered, call it until
        ``BlockingIOError``.

        Example:
            >>> from horizon_drivers.native import TcpListener, TcpStream
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     listener.accept_many()
            Traceback (most recent call last):
            ...
            BlockingIOError: [Errno 11] accept4: Resource temporarily unavailable
        """
        cdef unsigned char name[128]
        cdef socklen_t namelen
        cdef int newfd, err = 0
        cdef Py_ssize_t limit = max_count
        cdef int fd
        if limit < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count!r}")
        fd = self._enter("accept on")
        try:
            accepted = []
            while len(accepted) < limit:
                namelen = sizeof(name)
                newfd = _accept(fd, name, &namelen, &err)
                if newfd < 0:
                    if accepted:
                        break  # would-block or a failure: the next call meets it again
                    raise_errno(err, "accept4")
                try:
                    accepted.append(self._wrap(newfd, name, namelen))
                except BaseException:
                    for stream, _ in accepted:
                        stream.close()
                    raise
            return accepted
        finally:
            self._leave()

    cdef object _wrap(self, int newfd, unsigned char *name, socklen_t namelen):
        """``(TcpStream, peer)`` for a freshly accepted descriptor (closed if that fails)."""
        from horizon_drivers.opening import NATIVE_FEATURES, configure_accepted

        try:
            peer = address_from_sockaddr(<sockaddr *>name, namelen if namelen <= 128 else 0)
            sock = _socket.socket(self._family, _socket.SOCK_STREAM, 0, fileno=newfd)
        except BaseException:
            close(newfd)
            raise
        report = configure_accepted(sock, self.config, NATIVE_FEATURES)  # closes sock on error
        return TcpStream(sock, report, self.config), peer

    def __repr__(self):
        return "<TcpListener closed>" if self._closed else f"<TcpListener fd={self._fd}>"



cdef int _accept(int fd, unsigned char *name, socklen_t *namelen, int *err) except? -2:
    """accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) with the GIL released, retried on EINTR after the
    signal handlers ran; the new descriptor, or -1 with ``*err``."""
    cdef int newfd = -1, e = 0
    cdef socklen_t room = namelen[0]
    while True:
        namelen[0] = room
        with nogil:
            newfd = accept4(fd, <sockaddr *>name, namelen, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if newfd < 0:
                e = errno
        if newfd >= 0 or e != EINTR:
            break
        PyErr_CheckSignals()
    err[0] = e
    return newfd
