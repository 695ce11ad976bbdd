# Runtime: the readiness loop over the IOCP driver's sockets (poll_once harvests the hub; run
# and stop are the shared RunLoop's). Included by iocp.pyx.


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
    cdef object _loop
    cdef public bint _woken
    cdef readonly uint64_t _id
    cdef object _default_timeout
    cdef readonly object config
    cdef object __weakref__

    def __init__(self, config=None):
        global _next_runtime_id
        cfg = resolve_config(config)
        self._loop = RunLoop()
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
        return int(check_interest(interest))

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
        timeout = check_timeout(timeout)
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
        self._loop.run(self, handler, timeout)

    def stop(self):
        """Make ``run`` return after the current step. Safe from any thread."""
        self._loop.stop(self)

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
