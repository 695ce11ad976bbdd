# cython: embedsignature.format=clinic
"""The epoll readiness runtime: generational tokens, an eventfd waker and an optional spin budget.

Rules this module obeys:

* Registrations are keyed by ``horizon_core.slab.Slab`` tokens; the token itself is the epoll
  ``data.u64``. Token 0 is never issued by a Slab, so it marks the waker's eventfd.
* Level-triggered by default: a socket that still has data is reported again on the next poll, so
  a handler may read only part of what is waiting. ``edge_triggered=True`` adds EPOLLET: a source
  is reported once per change and the handler must drain it until ``BlockingIOError``.
* No event is ever delivered for a deregistered token: ``deregister`` removes the epoll entry
  before it returns, ``run`` re-checks each token before calling the handler, and events whose
  token is no longer live (a descriptor closed without deregistering but kept open by a duplicate)
  are dropped.
* The spin budget (``NetConfig.spin_budget`` microseconds) busy-polls ``epoll_wait(0)`` with the
  GIL released before blocking: lower latency for a dedicated core, at the price of that core.
* ``poll_once(None)`` waits for ``NetConfig.poll_timeout`` (block when that is None too).
* Zero-copy completions queued on a socket raise EPOLLERR until they are read, so on EPOLLERR
  the runtime lets the source read them (its ``_reap_on_error``); when they alone raised it the
  ERROR bit is dropped, and an event left with no readiness is not delivered.
* ``wake()`` and ``stop()`` are safe from any thread; ``close()`` while another thread polls wakes
  it and closes the descriptors once that poll returns.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport errno, EINTR, ENOENT, EBADF, ENOSYS, EAGAIN
from libc.stdint cimport uint32_t, uint64_t
from libc.math cimport ceil
from libc.stdlib cimport calloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close

from horizon_drivers.native.linux.sys_epoll cimport (
    epoll_event, epoll_create1, epoll_ctl, epoll_wait, epoll_pwait2,
    EPOLL_CLOEXEC, EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP, EPOLLET,
    EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL,
)
from horizon_drivers.native.linux.sys_eventfd cimport (
    eventfd, eventfd_read, eventfd_write, eventfd_t, EFD_CLOEXEC, EFD_NONBLOCK,
)
from horizon_drivers.native.linux.address cimport raise_errno

from horizon_core.config import resolve_config
from horizon_core.errors import SocketClosedError
from horizon_core.events import (
    MAX_POLL_TIMEOUT, Event, Interest, Readiness, check_interest, check_timeout,
)
from horizon_core.slab import Slab
from horizon_drivers.run_loop import RunLoop

__all__ = ["MAX_EVENTS", "Runtime"]

#: Default number of events one poll collects.
MAX_EVENTS = 1024

cdef enum:
    WAKER_DATA = 0          # Slab tokens start at generation 1: 0 is never a token
    MAX_EVENTS_LIMIT = 65536

cdef long long _NS_PER_S = 1000000000

cdef tuple _READINESS = tuple(Readiness(bits) for bits in range(16))
_tuple_new = tuple.__new__


cdef inline long long _monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline uint32_t _epoll_mask(object interest) except? 0xFFFFFFFF:
    """EPOLLIN/EPOLLOUT for ``interest``; its errors are ``check_interest``'s, as on every driver."""
    cdef long long bits
    if type(interest) is int or type(interest) is Interest:
        bits = interest
        if bits < 1 or bits > 3:
            check_interest(interest)  # raises the shared ValueError
    else:
        bits = check_interest(interest)
    cdef uint32_t mask = 0
    if bits & 1:
        mask |= EPOLLIN
    if bits & 2:
        mask |= EPOLLOUT
    return mask


cdef double _MAX_POLL_TIMEOUT = MAX_POLL_TIMEOUT


cdef bint _reaped_completions(object slab, object token) except -1:
    """Let the source read queued zero-copy completions; True when they alone raised EPOLLERR."""
    reap = getattr(slab.get(token)[0], "_reap_on_error", None)
    return reap is not None and bool(reap())


cdef class Runtime:
    """A readiness loop over registered sockets, on epoll.

    Example:
        >>> from horizon_core.events import Interest
        >>> from horizon_drivers.native import Runtime, UdpSocket
        >>> with Runtime() as rt, UdpSocket.bind("127.0.0.1:0") as sock:
        ...     token = rt.register(sock, Interest.WRITABLE)
        ...     [ev.token == token and ev.writable for ev in rt.poll_once(1.0)]
        [True]
    """

    cdef int _epfd
    cdef int _wakefd
    cdef int _busy
    cdef bint _closed
    cdef bint _polling
    cdef bint _edge
    cdef bint _have_pwait2
    cdef int _max_events
    cdef epoll_event *_events
    cdef long long _spin_ns
    cdef object _slab
    # Bumped before every deregistration and on close: a wait during which it did not move can
    # only have returned live tokens (epoll reports only what is in its interest set), so
    # poll_once skips the per-event slab lookup on that, the common, path.
    cdef unsigned long long _removals
    # Set once a source was deregistered after its descriptor was closed: epoll keeps such an
    # entry while any duplicate of the descriptor lives, and it can report the dead token at any
    # later time, so from then on every event is checked against the slab.
    cdef bint _orphans
    # The last Event poll_once returned for each token, at the token's slab index (its low 32
    # bits; the entry's own token says which generation it was for). An Event is an immutable
    # value, so the same object serves every poll that reports the same readiness: building a
    # NamedTuple costs more than the rest of a one-event poll_once, and finding it by index
    # needs neither a Python int for the token nor a hash. Entries leave with their registration.
    cdef list _event_cache
    cdef object _default_timeout
    cdef object _loop
    cdef readonly object config
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._epfd = -1
        self._wakefd = -1
        self._closed = True

    def __init__(self, config=None, *, edge_triggered=False, max_events=MAX_EVENTS):
        cdef epoll_event ev
        cdef int rc
        if self._epfd >= 0:
            raise RuntimeError("Runtime is already initialised")
        if type(max_events) is not int or not 1 <= max_events <= MAX_EVENTS_LIMIT:
            raise ValueError(f"max_events must be an int from 1 to {MAX_EVENTS_LIMIT}, "
                             f"got {max_events!r}")
        cfg = resolve_config(config)
        self.config = cfg
        self._loop = RunLoop()
        self._edge = bool(edge_triggered)
        self._max_events = max_events
        self._spin_ns = <long long>(cfg.spin_budget or 0) * 1000
        self._default_timeout = cfg.poll_timeout
        self._have_pwait2 = True
        self._slab = Slab()
        self._event_cache = []
        self._events = <epoll_event *>calloc(max_events, sizeof(epoll_event))
        if self._events == NULL:
            raise MemoryError("cannot allocate the epoll event array")
        self._epfd = epoll_create1(EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise_errno(errno, "epoll_create1")
        self._wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self._wakefd < 0:
            rc = errno
            close(self._epfd)
            self._epfd = -1
            raise_errno(rc, "eventfd")
        ev.events = EPOLLIN
        ev.data.u64 = WAKER_DATA
        if epoll_ctl(self._epfd, EPOLL_CTL_ADD, self._wakefd, &ev) != 0:
            rc = errno
            close(self._epfd)
            close(self._wakefd)
            self._epfd = self._wakefd = -1
            raise_errno(rc, "epoll_ctl(eventfd)")
        self._closed = False

    def __dealloc__(self):
        if self._epfd >= 0:
            close(self._epfd)
        if self._wakefd >= 0:
            close(self._wakefd)
        free(self._events)

    cdef inline int _enter(self, str operation) except -1:
        if self._closed:
            raise SocketClosedError("runtime", operation)
        self._busy += 1
        return self._epfd

    cdef inline void _leave(self) noexcept:
        self._busy -= 1
        if self._closed and self._busy == 0:
            self._close_descriptors()

    cdef void _close_descriptors(self) noexcept:
        if self._epfd >= 0:
            close(self._epfd)
            self._epfd = -1
        if self._wakefd >= 0:
            close(self._wakefd)
            self._wakefd = -1

    # -- properties ---------------------------------------------------------------------------

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    @property
    def edge_triggered(self):
        """True when sources are registered with EPOLLET (see the module docstring)."""
        return self._edge

    @property
    def spin_budget(self):
        """Microseconds ``poll_once`` busy-polls before blocking (0: never spins)."""
        return self._spin_ns // 1000

    def fileno(self):
        """The epoll descriptor (so a runtime can itself be watched), -1 once closed."""
        return -1 if self._closed else self._epfd

    def __len__(self):
        return len(self._slab)

    def __contains__(self, token):
        return token in self._slab

    def source(self, token):
        """The object registered under ``token`` (StaleTokenError if it is not live)."""
        return self._slab.get(token)[0]

    # -- registration -------------------------------------------------------------------------

    def register(self, source, interest):
        """Watch ``source`` (anything with ``fileno()``) for ``interest``; return its token."""
        cdef int fd
        cdef int epfd = self._enter("register with")
        try:
            fd = source.fileno()
            if fd < 0:
                raise SocketClosedError("socket", "register")
            token = self._slab.insert((source, fd))
            try:
                self._ctl(epfd, EPOLL_CTL_ADD, fd, token, interest)
            except BaseException:
                self._slab.remove(token)
                raise
            return token
        finally:
            self._leave()

    def reregister(self, token, interest):
        """Change what the source registered under ``token`` is watched for."""
        cdef int fd
        cdef int epfd = self._enter("reregister with")
        try:
            source, fd = self._slab.get(token)
            self._ctl(epfd, EPOLL_CTL_MOD, fd, token, interest)
        finally:
            self._leave()

    cdef int _ctl(self, int epfd, int op, int fd, object token, object interest) except -1:
        """epoll_ctl ADD or MOD of ``fd`` for ``interest``, the event carrying ``token``."""
        cdef epoll_event ev
        cdef int rc = 0, err = 0
        ev.events = _epoll_mask(interest) | (EPOLLET if self._edge else 0)
        ev.data.u64 = <uint64_t>token
        with nogil:
            rc = epoll_ctl(epfd, op, fd, &ev)
            if rc != 0:
                err = errno
        if rc != 0:
            raise_errno(err, "epoll_ctl(ADD)" if op == EPOLL_CTL_ADD else "epoll_ctl(MOD)")
        return 0

    def deregister(self, token):
        """Stop watching; no event for ``token`` is delivered after this returns.

        Deregistering a source that was already closed is fine: the kernel dropped its entry, and
        the descriptor number (which may now belong to another socket) is left alone.
        """
        cdef int fd, rc = 0, err = 0
        cdef int epfd = self._enter("deregister from")
        try:
            source, fd = self._slab.get(token)
            self._removals += 1
            try:
                still_open = source.fileno() == fd
            except (OSError, ValueError):
                still_open = False
            if still_open:
                with nogil:
                    rc = epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL)
                    if rc != 0:
                        err = errno
                if rc != 0 and err != ENOENT and err != EBADF:
                    raise_errno(err, "epoll_ctl(DEL)")
                if rc != 0 and err == EBADF:
                    self._orphans = True
            else:
                self._orphans = True
            self._slab.remove(token)
            index = <Py_ssize_t><uint32_t><uint64_t>token  # the slab index
            if index < len(self._event_cache):
                self._event_cache[index] = None
        finally:
            self._leave()

    # -- polling ------------------------------------------------------------------------------

    def poll_once(self, timeout=None):
        """Wait up to ``timeout`` seconds for readiness and return the events.

        ``None`` uses ``config.poll_timeout`` (blocking when that is None too); 0 never blocks.
        With a spin budget the wait first busy-polls for that many microseconds.
        """
        cdef long long timeout_ns
        cdef double seconds
        cdef int n, i
        cdef uint32_t flags
        cdef int bits
        cdef uint64_t data
        cdef eventfd_t drained
        cdef unsigned long long removals
        cdef bint check_live
        cdef Py_ssize_t index
        cdef int epfd = self._enter("poll")
        try:
            if self._polling:
                raise RuntimeError("poll_once is already running on this runtime in another thread")
            if timeout is None:
                timeout = self._default_timeout
            if timeout is None:
                timeout_ns = -1
            else:
                # Fast path for a float or int in range; anything else gets check_timeout's
                # verdict (the errors every driver raises).
                if type(timeout) is float or type(timeout) is int:
                    seconds = timeout
                    if not 0.0 <= seconds <= _MAX_POLL_TIMEOUT:  # NaN fails too
                        seconds = check_timeout(timeout)
                else:
                    checked = check_timeout(timeout)
                    seconds = -1.0 if checked is None else checked
                if seconds < 0.0:
                    timeout_ns = -1
                else:
                    timeout_ns = <long long>ceil(seconds * 1e9)
            removals = self._removals
            self._polling = True
            try:
                n = self._wait(epfd, timeout_ns)
            finally:
                self._polling = False
            events = []
            slab = self._slab
            cache = self._event_cache
            check_live = self._orphans or self._removals != removals
            for i in range(n if n <= self._max_events else self._max_events):
                data = self._events[i].data.u64
                if data == WAKER_DATA:
                    eventfd_read(self._wakefd, &drained)
                    continue
                if check_live and data not in slab:
                    continue
                flags = self._events[i].events
                bits = 0
                if flags & EPOLLIN:
                    bits |= 1
                if flags & EPOLLOUT:
                    bits |= 2
                if flags & EPOLLERR and not _reaped_completions(slab, data):
                    bits |= 4
                if flags & (EPOLLHUP | EPOLLRDHUP):
                    bits |= 8
                if bits == 0:
                    continue
                readiness = _READINESS[bits & 15]
                index = <Py_ssize_t><uint32_t>data  # the slab index
                event = (<list>cache)[index] if index < len(<list>cache) else None
                if (event is None or (<tuple>event)[1] is not readiness
                        or <uint64_t>(<tuple>event)[0] != data):
                    event = _tuple_new(Event, (data, readiness))
                    if self._removals == removals:
                        # Not while a deregistration runs in another thread: its entry could
                        # outlive it (deregister bumps _removals before it drops the entry).
                        while len(<list>cache) <= index:
                            (<list>cache).append(None)
                        (<list>cache)[index] = event
                events.append(event)
            return events
        finally:
            self._leave()

    cdef int _wait(self, int epfd, long long timeout_ns) except -1:
        cdef long long deadline = -1, now, spin_until, remaining
        cdef int n = 0, err = 0
        cdef timespec ts
        cdef epoll_event *events = self._events
        cdef int max_events = self._max_events
        if timeout_ns >= 0:
            deadline = _monotonic_ns() + timeout_ns
        if self._spin_ns > 0 and timeout_ns != 0:
            with nogil:
                spin_until = _monotonic_ns() + self._spin_ns
                if deadline >= 0 and deadline < spin_until:
                    spin_until = deadline
                while True:
                    n = epoll_wait(epfd, events, max_events, 0)
                    if n != 0:
                        if n < 0:
                            err = errno
                        break
                    if _monotonic_ns() >= spin_until:
                        break
            if n > 0:
                return n
            if n < 0:
                if err != EINTR:
                    raise_errno(err, "epoll_wait")
                PyErr_CheckSignals()
        while True:
            if deadline < 0:
                remaining = -1
            else:
                remaining = deadline - _monotonic_ns()
                if remaining < 0:
                    remaining = 0
            with nogil:
                if self._have_pwait2:
                    if remaining >= 0:
                        ts.tv_sec = remaining // 1000000000
                        ts.tv_nsec = remaining % 1000000000
                        n = epoll_pwait2(epfd, events, max_events, &ts, NULL)
                    else:
                        n = epoll_pwait2(epfd, events, max_events, NULL, NULL)
                else:
                    # epoll_wait counts milliseconds: round up so a short timeout still waits.
                    n = epoll_wait(epfd, events, max_events,
                                   -1 if remaining < 0 else
                                   <int>min((remaining + 999999) // 1000000, 0x7FFFFFFF))
                if n < 0:
                    err = errno
            if n >= 0:
                return n
            if err == ENOSYS and self._have_pwait2:
                self._have_pwait2 = False  # kernel older than 5.11
                continue
            if err != EINTR:
                raise_errno(err, "epoll_wait")
            PyErr_CheckSignals()

    def run(self, handler, *, timeout=None):
        """Call ``handler(event)`` for each event until ``stop()`` (or ``close()``).

        ``timeout`` bounds each wait (None: ``config.poll_timeout``). The loop is
        :class:`horizon_drivers.run_loop.RunLoop`, shared by every driver: ``run`` on a closed
        runtime raises ``SocketClosedError``; a runtime closed while running ends the run quietly.
        """
        self._loop.run(self, handler, timeout)

    def stop(self):
        """Make ``run`` return after the current step. Safe from any thread; no-op once closed."""
        self._loop.stop(self)

    def wake(self):
        """Interrupt a blocked ``poll_once`` from any thread."""
        cdef int rc = 0, err = 0
        cdef int wakefd
        if self._closed:
            raise SocketClosedError("runtime", "wake")
        wakefd = self._wakefd
        with nogil:
            rc = eventfd_write(wakefd, 1)
            if rc != 0:
                err = errno
        # EAGAIN: the counter is saturated, so a wake is already pending.
        if rc != 0 and err != EAGAIN:
            raise_errno(err, "eventfd_write")

    def close(self):
        """Close the runtime (registered sockets stay open). Idempotent."""
        cdef eventfd_t one = 1
        if self._closed:
            return
        self._closed = True
        self._removals += 1
        self._slab = Slab()
        self._event_cache = []
        if self._busy == 0:
            self._close_descriptors()
        else:
            # A poll is running in another thread: wake it; it closes the descriptors on return.
            with nogil:
                eventfd_write(self._wakefd, one)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._closed else f"epfd={self._epfd}"
        mode = "edge" if self._edge else "level"
        return f"<Runtime {state} {mode}-triggered registered={len(self._slab)}>"
