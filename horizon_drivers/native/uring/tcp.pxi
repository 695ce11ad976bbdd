# TCP listeners: a multishot accept on the ring; accepted streams are configured by
# horizon_drivers.opening as everywhere, then receive on the ring (tcp_stream.pxi).
# Included by uring.pyx.
#
# A multishot accept posts one completion per connection, its result the new descriptor
# (already SOCK_NONBLOCK | SOCK_CLOEXEC); the descriptors queue here until accept_nonblocking
# wraps them. A descriptor whose completion arrives after close is closed at once.

#: Accepted connections a listener queues before its multishot accept is left to end.
ACCEPT_QUEUE = 1024


cdef class _AcceptRx(_Receiver):
    """A listener's multishot accept and the descriptors it accepted."""

    cdef _Ring ring
    cdef int fd                        # a duplicate of the listener's descriptor, owned here
    cdef uint64_t key
    cdef object fds                    # collections.deque of accepted descriptors
    cdef readonly uint64_t arms, accepted

    def __cinit__(self):
        self.fd = -1

    def __init__(self, _Ring ring, int fd):
        self.ring = ring
        self.fds = _deque()
        self.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if self.fd < 0:
            raise_errno(errno, "fcntl(F_DUPFD_CLOEXEC)")
        self.arm()

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)

    cdef int arm(self) except -1:
        cdef hz_uring_sqe *sqe
        if self.key or self.closing or len(self.fds) >= ACCEPT_QUEUE:
            return 0
        sqe = self.ring.get_sqe()
        sqe.opcode = HZ_OP_ACCEPT
        sqe.fd = self.fd
        sqe.ioprio = HZ_ACCEPT_MULTISHOT
        sqe.op_flags = SOCK_NONBLOCK | SOCK_CLOEXEC
        self.key = self.ring.new_key(self)
        sqe.user_data = self.key
        self.arms += 1
        return 0

    cdef bint settled(self):
        return self.key == 0

    cdef bint readable(self):
        return len(self.fds) > 0 or self.error is not None

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        if not flags & HZ_CQE_F_MORE:
            self.ring.drop_key(key)
            if key == self.key:
                self.key = 0
        if res >= 0:
            if self.closing:
                close(res)
            else:
                self.fds.append(res)
                self.accepted += 1
        elif res != -ECANCELED and not self.closing:
            # A failed handshake (ECONNABORTED...) ends nothing but that connection.
            if res != -ECONNABORTED and res != -EPROTO and res != -EPERM:
                self.error = _os_error(-res, "accept")
        if self.key == 0 and not self.closing and res != -EINVAL and res != -EBADF:
            self.arm()
        elif self.key == 0 and self.closing and self.fd >= 0:
            close(self.fd)
            self.fd = -1
        return 0

    cdef int pop(self) except -2:
        """The next accepted descriptor, -1 when none waits (raises a waiting error)."""
        if self.fds:
            fd = self.fds.popleft()
            if self.key == 0:
                self.arm()
            return fd
        self.ring.submit()
        self.ring.reap()
        if self.fds:
            return self.fds.popleft()
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc
        return -1

    cdef int close(self) except -1:
        if self.closing:
            return 0
        self.closing = True
        if self.key:
            self.ring.cancel(self.key)
            self.ring.settle(self, CLOSE_SETTLE_SECONDS)
        while self.fds:
            close(self.fds.popleft())
        if self.key == 0 and self.fd >= 0:
            close(self.fd)
            self.fd = -1
        return 0


cdef class TcpListener:
    """A listening TCP socket whose connections arrive by a multishot accept on io_uring.

    Accepted streams are configured like every driver's and receive on the ring.

    Example:
        >>> from horizon_drivers.uring import TcpListener
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     listener.local_address.port > 0
        True
    """

    cdef object _tx
    cdef _AcceptRx _rx
    cdef bint _closed
    cdef int _family
    cdef object __weakref__

    def __init__(self, tx):
        if self._tx is not None:
            raise RuntimeError("TcpListener is already initialised")
        self._family = _socket.AF_INET6 if tx.local_address.family == 6 else _socket.AF_INET
        self._rx = _AcceptRx(_hub(), tx.fileno())
        self._tx = tx

    def __dealloc__(self):
        if self._rx is not None and not self._closed:
            self._rx.closing = True
            if self._rx.key:
                try:
                    self._rx.ring.cancel(self._rx.key)
                    self._rx.ring.submit()
                except BaseException:
                    pass

    @classmethod
    def bind(cls, address, config=None):
        """Open, configure, bind and listen (backlog ``config.tcp_backlog``), then accept.

        Example:
            >>> from horizon_drivers.uring import TcpListener
            >>> with TcpListener.bind("[::1]:0") as listener:
            ...     listener.local_address.family
            6
        """
        cfg = resolve_config(config)
        tx = _TxTcpListener(*_opening.open_tcp_listener(address, cfg), cfg)
        try:
            return cls(tx)
        except BaseException:
            tx.close()
            raise

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def fileno(self):
        """The listening descriptor, -1 once closed."""
        return -1 if self._closed else self._tx.fileno()

    @property
    def config(self):
        """The NetConfig the listener (and every stream it accepts) uses."""
        return self._tx.config

    @property
    def options(self):
        """What the config asked for and what the kernel did with it."""
        return self._tx.options

    @property
    def local_address(self):
        """This end's bound address."""
        return self._tx.local_address

    @property
    def queued(self):
        """Connections accepted by the kernel and waiting for ``accept_nonblocking``."""
        return len(self._rx.fds)

    cdef object _wrap(self, int fd):
        try:
            sock = _socket.socket(self._family, _socket.SOCK_STREAM, 0, fileno=fd)
        except BaseException:
            close(fd)
            raise
        report = _configure_accepted(sock, self._tx.config)  # closes sock if it raises
        tx = _TxTcpStream(sock, report, self._tx.config)
        try:
            stream = TcpStream(tx)
        except BaseException:
            tx.close()
            raise
        return stream, tx.peer_address

    def accept_nonblocking(self):
        """Accept one connection as a nonblocking, configured stream; BlockingIOError if none."""
        cdef int fd
        if self._closed:
            raise SocketClosedError("TCP listener", "accept on")
        fd = self._rx.pop()
        if fd < 0:
            raise BlockingIOError(EAGAIN, "no connection is waiting")
        return self._wrap(fd)

    def accept_many(self, max_count=64):
        """Accept up to ``max_count`` waiting connections: a list of ``(stream, peer)`` pairs.

        Raises ``BlockingIOError`` when none is waiting.

        Example:
            >>> from horizon_drivers.uring import TcpListener
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     listener.accept_many()
            Traceback (most recent call last):
            ...
            BlockingIOError: [Errno 11] no connection is waiting
        """
        cdef int fd
        if type(max_count) is not int or max_count < 1:
            raise ValueError(f"max_count must be an int of at least 1, got {max_count!r}")
        if self._closed:
            raise SocketClosedError("TCP listener", "accept on")
        accepted = []
        while len(accepted) < max_count:
            fd = self._rx.pop()
            if fd < 0:
                break
            try:
                accepted.append(self._wrap(fd))
            except BaseException:
                for stream, _ in accepted:
                    stream.close()
                raise
        if not accepted:
            raise BlockingIOError(EAGAIN, "no connection is waiting")
        return accepted

    def close(self):
        """Cancel the accept, close connections accepted but not taken, close. Idempotent."""
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
        return "<uring TcpListener closed>" if self._closed else f"<uring TcpListener fd={self._tx.fileno()}>"
