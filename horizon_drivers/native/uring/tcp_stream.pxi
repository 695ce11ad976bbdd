# TCP streams: readiness from a multishot poll on the ring, bytes read straight into the
# caller's buffer by the epoll driver's recv; sends, connect and shutdown are the epoll driver's
# calls on the same socket. Included by uring.pyx.
#
# Why not a multishot recv into provided buffers, as UDP sockets do (this driver's first design):
# a stream's bytes have no boundaries worth keeping, so landing them in a ring slot only to copy
# them into the caller's buffer is one copy more than the epoll driver makes, and the kernel then
# receives in slot-sized pieces (64 KiB), each read sending its own window update, plus ring
# refills and ENOBUFS re-arms. Profiled with 8 bulk streams (perf record of the echo server, its
# reads 256 KiB): 9.7% of the server's time went to that memcpy, and 6.1% to ACKs transmitted
# from inside the ring's recv (native reads 256 KiB per recv(2), 4x fewer receives); the ring
# saved one recv syscall per event, which pays only for small reads, where native is level with
# it. So a connected stream keeps one multishot POLL_ADD (POLLIN | POLLRDHUP) in flight and
# ``recv_into`` is the epoll driver's nonblocking recv(2) into the caller's buffer: native's data
# path, with no copy of ours. A multishot poll beat a one-shot poll armed at each drain: with
# 256 pipelined 64-byte messages its readiness work was about 2.0% of the server's samples
# against 3.0% for the one-shot poll (2.9% for native's epoll).
#
# Readiness stays level-triggered though a multishot poll posts a completion per wakeup (an
# edge): a completion sets the stream's ready bits, and only a read that proves the socket empty
# clears them: EAGAIN, or a read shorter than the buffer (tcp_recvmsg returns short only when its
# queue and backlog are empty, and any byte arriving later wakes the poll again, whose completion
# is reaped after the clear). A completion reaped while the read ran (by a poll in another
# thread: a large read releases the GIL) may be for bytes that came after it, so that read clears
# nothing. A hangup or an error is never cleared: end of stream stays readable.
# A poll the kernel ends (no IORING_CQE_F_MORE) is armed again, and arming reports at once what
# is already waiting, so nothing is missed.
#
# The poll is armed only once the stream is connected: until then the runtime polls the socket
# like any descriptor, and finish_connect reads the pending error (SO_ERROR). Unread bytes stay
# in the kernel's receive queue, so closing with bytes unread is the kernel's own reset, exactly
# as with the epoll driver. Close cancels the poll and waits (bounded) for its last completion.

cdef enum:
    STREAM_READABLE = 1
    STREAM_ERROR = 4
    STREAM_HANGUP = 8
    STREAM_FINAL = STREAM_ERROR | STREAM_HANGUP


cdef class _StreamRx(_Receiver):
    """A connected stream's multishot poll and the readiness it reported."""

    cdef _Ring ring
    cdef int fd                        # a duplicate of the stream's descriptor, owned here
    cdef uint64_t key
    cdef int bits                      # readiness seen and not yet proved gone (STREAM_*)
    cdef bint armed_once, finished
    cdef readonly uint64_t arms, wakeups, drains

    def __cinit__(self):
        self.fd = -1

    def __init__(self, _Ring ring, int fd):
        self.ring = ring
        self.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if self.fd < 0:
            raise_errno(errno, "fcntl(F_DUPFD_CLOEXEC)")

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)

    cdef int arm(self) except -1:
        cdef hz_uring_sqe *sqe
        if self.key or self.closing or self.fd < 0 or self.bits & STREAM_FINAL:
            return 0
        sqe = self.ring.get_sqe()
        sqe.opcode = HZ_OP_POLL_ADD
        sqe.fd = self.fd
        sqe.op_flags = POLLIN_ | POLLRDHUP_
        sqe.len = HZ_POLL_ADD_MULTI
        self.key = self.ring.new_key(self)
        sqe.user_data = self.key
        self.armed_once = True
        self.arms += 1
        return 0

    cdef bint settled(self):
        return self.key == 0

    cdef bint readable(self):
        return self.bits != 0

    cdef int ready_bits(self):
        return self.bits

    cdef bint polled(self):
        return not self.armed_once

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        cdef int bits = 0
        if not flags & HZ_CQE_F_MORE:
            self.ring.drop_key(key)
            if key == self.key:
                self.key = 0
        if self.closing:
            if self.key == 0 and not self.finished:
                self._finish()
            return 0
        if res > 0:
            if res & POLLIN_:
                bits |= STREAM_READABLE
            if res & POLLERR_:
                bits |= STREAM_READABLE | STREAM_ERROR
            if res & (POLLHUP_ | POLLRDHUP_):
                bits |= STREAM_READABLE | STREAM_HANGUP
            self.bits |= bits
            self.wakeups += 1
        elif res < 0 and res != -ECANCELED:
            # The poll failed (not the socket): let a read find out what the socket says; the
            # poll is armed again when a read shows the socket drained.
            self.bits |= STREAM_READABLE
            return 0
        if self.key == 0:
            self.arm()
        return 0

    cdef inline void drained(self, uint64_t seen) noexcept:
        """A read that began when ``wakeups`` was ``seen`` showed the socket empty: readable again
        only once the poll says so. A completion reaped meanwhile (by a poll in another thread:
        a large read releases the GIL) may be for bytes that came after the read, so it stays."""
        if self.bits & STREAM_FINAL or self.wakeups != seen:
            return
        self.bits = 0
        self.drains += 1
        if self.key == 0 and not self.closing:
            try:
                self.arm()
            except BaseException:
                self.bits = STREAM_READABLE  # no poll in flight: stay readable, retry next read

    cdef int close(self) except -1:
        if self.closing:
            return 0
        self.closing = True
        self.bits = 0
        _graveyard.append(self)
        if self.key:
            self.ring.cancel(self.key)
            if not self.ring.settle(self, CLOSE_SETTLE_SECONDS):
                return 0
        if not self.finished:
            self._finish()
        return 0

    cdef void _finish(self) noexcept:
        self.finished = True
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        try:
            _graveyard.remove(self)
        except BaseException:
            pass


cdef class TcpStream:
    """A TCP connection whose readiness is a multishot poll on io_uring.

    Reads go straight into the caller's buffer; reads, sends, connect and shutdown are the epoll
    driver's calls on the same socket.

    Example:
        >>> from horizon_drivers.uring import TcpListener, TcpStream
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     with TcpStream.connect(listener.local_address) as stream:
        ...         stream.closed
        False
    """

    cdef object _tx
    cdef object _tx_recv_into          # the epoll stream's bound recv_into, kept at init
    cdef _StreamRx _rx
    cdef bint _closed
    cdef bint _connected
    cdef object __weakref__

    def __init__(self, tx, *, connected=True):
        if self._tx is not None:
            raise RuntimeError("TcpStream is already initialised")
        self._rx = _StreamRx(_hub(), tx.fileno())
        self._tx = tx
        self._tx_recv_into = tx.recv_into
        self._connected = bool(connected)
        if self._connected:
            self._rx.arm()

    def __dealloc__(self):
        if self._rx is not None and not self._closed:
            self._rx.closing = True
            if self._rx.key:
                try:
                    self._rx.ring.cancel(self._rx.key)
                    self._rx.ring.submit()
                except BaseException:
                    pass
            elif not self._rx.finished:
                self._rx._finish()

    @classmethod
    def connect(cls, address, config=None):
        """Start a nonblocking connect to ``address``; see :meth:`finish_connect`.

        Example:
            >>> from horizon_drivers.uring import TcpListener, TcpStream
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     with TcpStream.connect(listener.local_address) as stream:
            ...         stream.options["tcp_nodelay"].effective
            1
        """
        cfg = resolve_config(config)
        tx = _TxTcpStream(*_opening.open_tcp_stream(address, cfg), cfg, connecting=True)
        try:
            return cls(tx, connected=False)
        except BaseException:
            tx.close()
            raise

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def fileno(self):
        """The stream's descriptor, -1 once closed."""
        return -1 if self._closed else self._tx.fileno()

    @property
    def config(self):
        """The NetConfig the stream was opened (or accepted) with."""
        return self._tx.config

    @property
    def options(self):
        """What the config asked for and what the kernel did with it."""
        return self._tx.options

    @property
    def local_address(self):
        """This end's address."""
        return self._tx.local_address

    @property
    def poll_counters(self):
        """The stream's readiness poll: ``arms`` (requests made), ``wakeups`` (completions that
        reported readiness), ``drains`` (reads that found it empty) and ``armed``."""
        return {"arms": self._rx.arms, "wakeups": self._rx.wakeups, "drains": self._rx.drains,
                "armed": self._rx.key != 0}

    @property
    def peer_address(self):
        """The other end's address."""
        return self._tx.peer_address

    def finish_connect(self):
        """True once connected (the readiness poll starts then), False while connecting; raises
        its error."""
        if self._closed:
            raise SocketClosedError("TCP stream", "finish connecting")
        done = self._tx.finish_connect()
        if done and not self._connected:
            self._connected = True
            self._rx.arm()
        return done

    def recv_into(self, buffer):
        """Read into ``buffer``; 0 means the peer closed its write side. Raises BlockingIOError,
        ConnectionResetError on a reset."""
        cdef Py_ssize_t n
        cdef Py_buffer view
        cdef uint64_t seen
        if self._closed:
            raise SocketClosedError("TCP stream", "receive on")
        if not self._connected:
            return self._tx_recv_into(buffer)  # not connected yet: the kernel says what to say
        seen = self._rx.wakeups
        try:
            n = self._tx_recv_into(buffer)
        except BlockingIOError:
            self._rx.drained(seen)
            raise
        if n > 0:
            # A read shorter than the buffer emptied the socket (see the top of this file).
            PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE)
            if n < view.len:
                self._rx.drained(seen)
            PyBuffer_Release(&view)
        return n

    def send(self, data):
        """Write what the kernel takes now; return how many bytes."""
        return self._tx.send(data)

    def send_vectored(self, buffers):
        """Write several buffers in one sendmsg; return the bytes taken."""
        return self._tx.send_vectored(buffers)

    def shutdown(self, how=_socket.SHUT_RDWR):
        """shutdown(2) the stream."""
        self._tx.shutdown(how)

    def shutdown_write(self):
        """Half close: the peer reads end-of-stream, this end can still read."""
        self._tx.shutdown_write()

    def close(self):
        """Cancel the readiness poll and close; unread bytes make it a reset (the kernel's).
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._rx.close()
        finally:
            self._tx.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __repr__(self):
        return "<uring TcpStream closed>" if self._closed else f"<uring TcpStream fd={self._tx.fileno()}>"
