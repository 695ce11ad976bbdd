# _Endpoint: what every socket of the IOCP driver shares (its SOCKET handle, association with
# the hub, bounded close, address and options). Included by iocp.pyx.


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
        self.config = resolve_config(config)
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
