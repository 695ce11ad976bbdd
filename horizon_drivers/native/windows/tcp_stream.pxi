# TcpStream: a TCP connection with one overlapped WSARecv and at most one WSASend in flight,
# connected with ConnectEx. Included by iocp.pyx.


#: Bytes a TCP stream buffers in each direction (its receive buffer and its send buffer).
STREAM_BUFFER = 256 * 1024


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

        cfg = resolve_config(config)
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
