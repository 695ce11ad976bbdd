# The Runtime: readiness over the ring. Included by uring.pyx.
#
# How readiness is made from completions:
#
# * A uring UdpSocket (TcpListener) registered READABLE is ready while its queue holds a datagram
#   (an accepted connection) or an error waits: its multishot request fills the queue as
#   completions are reaped, so no poll request is needed for it. A connected uring TcpStream is
#   ready while its own multishot poll has reported readiness that no read has proved gone
#   (tcp_stream.pxi): it needs none of the runtime's polls either.
# * Everything else (a stream's WRITABLE, a UdpSocket's WRITABLE, any object with fileno()) gets a
#   one-shot IORING_OP_POLL_ADD. Its completion is the event; the next poll_once arms it again,
#   and a source still ready completes again at once. That is level-triggered, as epoll's default.
# * ``wake()`` writes the runtime's eventfd, which a multishot poll on the ring watches: no thread
#   but the polling one touches the ring for it (a single-threaded ring allows no other).
# * A deregistered source's poll is cancelled and its key forgotten before deregister returns,
#   so a completion still on its way is dropped as stale: no event for a removed token.
# * With several runtimes in the process each wait is capped at
#   CROSS_RUNTIME_WAIT_NS: one runtime may reap another's completion, which then marks that
#   runtime ready but cannot end a wait already in the kernel.

cdef long long CROSS_RUNTIME_WAIT_NS = 10000000
cdef double _MAX_POLL_TIMEOUT = MAX_POLL_TIMEOUT
cdef int _live_runtimes = 0

_READINESS = tuple(Readiness(bits) for bits in range(16))
_tuple_new = tuple.__new__


cdef extern from "Python.h":
    ctypedef PyObject *(*_allocfunc)(_TypeAlloc *, Py_ssize_t)
    ctypedef struct _TypeAlloc "PyTypeObject":
        _allocfunc tp_alloc


# Event is a NamedTuple: a tuple subclass without instance fields. ``tuple.__new__(Event, pair)``
# allocates through Event's tp_alloc and copies the pair in; _event does that directly, without
# the Python call and the argument tuple (checked once here; anything else keeps the call).
cdef bint _EVENT_DIRECT = (
    Event.__bases__ == (tuple,) and Event.__basicsize__ == tuple.__basicsize__
    and Event.__itemsize__ == tuple.__itemsize__
)


cdef object _event(object token, int bits):
    """``Event(token, _READINESS[bits])``, as ``tuple.__new__(Event, ...)`` makes it."""
    cdef object readiness = (<tuple>_READINESS)[bits & 15]
    cdef PyObject *made
    if not _EVENT_DIRECT:
        return _tuple_new(Event, (token, readiness))
    made = (<_TypeAlloc *><PyObject *>Event).tp_alloc(<_TypeAlloc *><PyObject *>Event, 2)
    if made == NULL:
        raise MemoryError()
    event = <object>made
    Py_DECREF(event)            # the reference tp_alloc returned is now ``event``'s
    Py_INCREF(token)
    PyTuple_SET_ITEM(event, 0, token)
    Py_INCREF(readiness)
    PyTuple_SET_ITEM(event, 1, readiness)
    return event


cdef class _Waker(_Completer):
    """An eventfd watched by a multishot poll: a write from any thread ends the runtime's wait
    without touching the ring (a single-threaded ring refuses other threads)."""

    cdef _Ring ring
    cdef int fd
    cdef uint64_t key
    cdef bint woken

    def __cinit__(self):
        self.fd = -1

    def __dealloc__(self):
        if self.fd >= 0:
            close(self.fd)

    cdef int open(self, _Ring ring) except -1:
        self.ring = ring
        self.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self.fd < 0:
            raise_errno(errno, "eventfd")
        return self.arm()

    cdef int arm(self) except -1:
        cdef hz_uring_sqe *sqe
        if self.key or self.fd < 0:
            return 0
        sqe = self.ring.get_sqe()
        sqe.opcode = HZ_OP_POLL_ADD
        sqe.fd = self.fd
        sqe.op_flags = POLLIN_
        sqe.len = HZ_POLL_ADD_MULTI
        self.key = self.ring.new_key(self)
        sqe.user_data = self.key
        return 0

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        cdef eventfd_t drained
        if not flags & HZ_CQE_F_MORE:
            self.ring.drop_key(key)
            if key == self.key:
                self.key = 0
        if res > 0:
            if self.fd >= 0:
                eventfd_read(self.fd, &drained)
            self.woken = True
        return 0

    cdef void wake(self) noexcept:
        cdef int fd = self.fd
        if fd >= 0:
            with nogil:
                # EAGAIN: the counter is saturated, so a wake is already pending.
                eventfd_write(fd, 1)

    cdef void shut(self) noexcept:
        if self.key:
            try:
                self.ring.cancel(self.key)
            except BaseException:
                pass
            self.ring.drop_key(self.key)
            self.key = 0
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1


cdef class _Watch(_Completer):
    """One registration: its token, what it watches, and its poll request in flight."""

    cdef Runtime runtime
    cdef object token
    cdef object source
    cdef int fd
    cdef _Receiver rx                  # a uring socket's: readable from its queue
    cdef int interest
    cdef uint64_t key
    cdef int fired
    cdef bint listed, live

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        cdef int bits = 0
        self.runtime._ring.drop_key(key)
        if key != self.key:
            return 0
        self.key = 0
        if not self.live:
            return 0
        if res > 0:
            if res & POLLIN_:
                bits |= 1
            if res & POLLOUT_:
                bits |= 2
            if res & POLLERR_:
                bits |= 4
            if res & (POLLHUP_ | POLLRDHUP_):
                bits |= 8
            self.fired |= bits
            self.runtime._mark(self)
        self.runtime._to_arm.append(self)
        return 0

    cdef int arm(self, _Ring ring) except -1:
        cdef hz_uring_sqe *sqe
        cdef uint32_t mask = 0
        if self.key or not self.live:
            return 0
        if self.interest & 1 and (self.rx is None or self.rx.polled()):
            mask |= POLLIN_ | POLLRDHUP_
        if self.interest & 2:
            mask |= POLLOUT_
        if mask == 0:
            return 0
        sqe = ring.get_sqe()
        sqe.opcode = HZ_OP_POLL_ADD
        sqe.fd = self.fd
        sqe.op_flags = mask
        self.key = ring.new_key(self)
        sqe.user_data = self.key
        return 0

    cdef int disarm(self, _Ring ring) except -1:
        if self.key:
            ring.cancel(self.key)
            ring.drop_key(self.key)
            self.key = 0
        return 0


cdef class Runtime:
    """A readiness loop over registered sockets, on io_uring completions.

    Example:
        >>> from horizon_core.events import Interest
        >>> from horizon_drivers.uring import Runtime, UdpSocket
        >>> with Runtime() as rt, UdpSocket.bind("127.0.0.1:0") as sock:
        ...     token = rt.register(sock, Interest.WRITABLE)
        ...     [ev.token == token and ev.writable for ev in rt.poll_once(1.0)]
        [True]
    """

    cdef _Ring _ring
    cdef object _slab
    cdef list _queued               # watches read from a receiver's queue
    cdef list _marked
    cdef list _to_arm
    cdef _Waker _waker
    cdef bint _closed
    cdef bint _polling
    cdef int _busy
    cdef object _default_timeout
    cdef object _loop
    cdef readonly object config
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._closed = True

    def __init__(self, config=None):
        global _live_runtimes
        if self._ring is not None:
            raise RuntimeError("Runtime is already initialised")
        cfg = resolve_config(config)
        self.config = cfg
        self._ring = _hub()
        self._slab = Slab()
        self._queued = []
        self._marked = []
        self._to_arm = []
        self._loop = RunLoop()
        self._default_timeout = cfg.poll_timeout
        self._waker = _Waker()
        self._waker.open(self._ring)
        self._ring.submit()
        self._closed = False
        _live_runtimes += 1

    def __dealloc__(self):
        global _live_runtimes
        if not self._closed:
            _live_runtimes -= 1
            if self._waker is not None:
                self._waker.shut()

    cdef inline int _enter(self, str operation) except -1:
        if self._closed:
            raise SocketClosedError("runtime", operation)
        self._busy += 1
        return 0

    cdef inline void _leave(self) noexcept:
        self._busy -= 1
        if self._closed and self._busy == 0:
            self._waker.shut()

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def fileno(self):
        """The io_uring descriptor the runtime waits on, -1 once closed."""
        return -1 if self._closed else self._ring.fd

    def __len__(self):
        return len(self._slab)

    def __contains__(self, token):
        return token in self._slab

    def source(self, token):
        """The object registered under ``token`` (StaleTokenError if it is not live)."""
        return (<_Watch>self._slab.get(token)).source

    # -- registration -------------------------------------------------------------------------

    def register(self, source, interest):
        """Watch ``source`` (anything with ``fileno()``) for ``interest``; return its token."""
        cdef _Watch watch
        self._enter("register with")
        try:
            bits = int(check_interest(interest))
            fd = source.fileno()
            if fd < 0:
                raise SocketClosedError("socket", "register")
            watch = _Watch()
            watch.runtime = self
            watch.source = source
            watch.fd = fd
            watch.interest = bits
            watch.live = True
            if isinstance(source, UdpSocket):
                watch.rx = (<UdpSocket>source)._rx
            elif isinstance(source, TcpListener):
                watch.rx = (<TcpListener>source)._rx
            elif isinstance(source, TcpStream):
                watch.rx = (<TcpStream>source)._rx
            if watch.rx is not None:
                self._queued.append(watch)
            watch.token = self._slab.insert(watch)
            self._to_arm.append(watch)
            return watch.token
        finally:
            self._leave()

    def reregister(self, token, interest):
        """Change what the source registered under ``token`` is watched for."""
        cdef _Watch watch
        self._enter("reregister with")
        try:
            bits = int(check_interest(interest))
            watch = <_Watch>self._slab.get(token)
            watch.disarm(self._ring)
            watch.interest = bits
            watch.fired = 0
            self._to_arm.append(watch)
        finally:
            self._leave()

    def deregister(self, token):
        """Stop watching; no event for ``token`` is delivered after this returns."""
        cdef _Watch watch
        self._enter("deregister from")
        try:
            watch = <_Watch>self._slab.remove(token)
            watch.live = False
            watch.fired = 0
            watch.disarm(self._ring)
            if watch.rx is not None:
                self._queued.remove(watch)
        finally:
            self._leave()

    cdef void _mark(self, _Watch watch) noexcept:
        if not watch.listed:
            watch.listed = True
            self._marked.append(watch)

    # -- polling ------------------------------------------------------------------------------

    cdef list _collect(self):
        cdef _Watch watch
        cdef int bits
        for watch in self._queued:
            if watch.interest & 1 and not watch.rx.closing:
                bits = watch.rx.ready_bits()
                if bits:
                    watch.fired |= bits
                    self._mark(watch)
        events = []
        if not self._marked:
            return events
        marked, self._marked = self._marked, []
        for watch in marked:
            watch.listed = False
            bits = watch.fired
            watch.fired = 0
            if bits and watch.live:
                events.append(_event(watch.token, bits))
        return events

    cdef int _arm_all(self) except -1:
        cdef _Watch watch
        if not self._to_arm:
            return 0
        pending, self._to_arm = self._to_arm, []
        for watch in pending:
            watch.arm(self._ring)
        return 1

    def poll_once(self, timeout=None):
        """Wait up to ``timeout`` seconds for readiness and return the events.

        ``None`` uses ``config.poll_timeout`` (blocking when that is None too); 0 never blocks.
        """
        cdef long long timeout_ns, deadline = -1, left
        cdef double seconds
        cdef _Ring ring = self._ring
        self._enter("poll")
        try:
            if self._polling:
                raise RuntimeError("poll_once is already running on this runtime in another thread")
            if timeout is None:
                timeout = self._default_timeout
            if timeout is None:
                timeout_ns = -1
            else:
                if type(timeout) is float or type(timeout) is int:
                    seconds = timeout
                    if not 0.0 <= seconds <= _MAX_POLL_TIMEOUT:
                        seconds = check_timeout(timeout)
                else:
                    checked = check_timeout(timeout)
                    seconds = -1.0 if checked is None else checked
                timeout_ns = -1 if seconds < 0.0 else <long long>ceil(seconds * 1e9)
            self._polling = True
            try:
                if self._arm_all():
                    ring.submit()
                ring.reap()
                events = self._collect()
                if events or self._waker.woken or timeout_ns == 0:
                    self._waker.woken = False
                    return events
                if timeout_ns > 0:
                    deadline = _monotonic_ns() + timeout_ns
                while not self._closed:
                    left = -1 if deadline < 0 else deadline - _monotonic_ns()
                    if deadline >= 0 and left <= 0:
                        break
                    if _live_runtimes > 1 and (left < 0 or left > CROSS_RUNTIME_WAIT_NS):
                        left = CROSS_RUNTIME_WAIT_NS
                    self._arm_all()
                    self._waker.arm()
                    ring.wait(left)
                    ring.reap()
                    events = self._collect()
                    if events or self._waker.woken:
                        break
                self._waker.woken = False
                return events
            finally:
                self._polling = False
        finally:
            self._leave()

    def run(self, handler, *, timeout=None):
        """Call ``handler(event)`` for each event until ``stop()`` (or ``close()``)."""
        self._loop.run(self, handler, timeout)

    def stop(self):
        """Make ``run`` return after the current step. Safe from any thread; no-op once closed."""
        self._loop.stop(self)

    def wake(self):
        """Interrupt a blocked ``poll_once`` from any thread."""
        if self._closed:
            raise SocketClosedError("runtime", "wake")
        self._waker.wake()

    def close(self):
        """Close the runtime: cancel its polls (registered sockets stay open). Idempotent."""
        global _live_runtimes
        cdef _Watch watch
        if self._closed:
            return
        self._closed = True
        _live_runtimes -= 1
        for token, obj in list(self._slab.items()):
            watch = <_Watch>obj
            watch.live = False
            watch.disarm(self._ring)
        self._slab = Slab()
        self._queued = []
        self._marked = []
        self._to_arm = []
        if self._busy:
            # A poll is running in another thread: wake it; it closes the waker on its way out.
            self._waker.wake()
        else:
            self._waker.shut()
            self._ring.submit()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"ring fd={self._ring.fd}"
        return f"<uring Runtime {state} registered={len(self._slab)}>"
