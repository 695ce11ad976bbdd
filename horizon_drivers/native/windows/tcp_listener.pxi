# TcpListener: a listening TCP socket that keeps AcceptEx operations posted. Included by
# iocp.pyx.


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

        cfg = resolve_config(config)
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
