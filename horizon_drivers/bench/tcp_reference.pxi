# The TCP reference echo: included by _reference.pyx (not built on its own).


cdef struct Conn:
    int fd
    bint writing          # waiting for EPOLLOUT: not read until the pending bytes are gone
    unsigned char *pending  # bytes the kernel did not take yet (malloc'ed on first need)
    size_t pending_cap
    size_t pending_off
    size_t pending_len
    Conn *prev
    Conn *next


cdef struct TcpServer:
    int listener
    int ep
    long long spin_ns        # busy-poll epoll_wait(0) this long before each blocking wait
    unsigned char *buf       # C_TCP_BUFFER bytes, shared by every connection
    epoll_event *events
    Conn *conns              # every open connection, so the end can close them all


cdef struct TcpCounts:
    uint64_t accepted
    uint64_t closed
    uint64_t resets            # connections ended by an error rather than EOF
    uint64_t accept_errors
    uint64_t bytes_received
    uint64_t bytes_sent
    uint64_t recv_calls
    uint64_t send_calls
    uint64_t waits             # blocking epoll_waits
    uint64_t spins             # epoll_wait(0) calls while spinning
    uint64_t spin_wins         # spins that found an event before the budget ran out
    uint64_t blocked_writes    # times a connection had to wait for EPOLLOUT
    uint64_t open_at_stop
    int error


cdef enum:
    READS_PER_WAKE = 16        # level-triggered: a busy connection yields to the others


cdef void _conn_close(TcpServer *s, Conn *conn) noexcept nogil:
    """Forget ``conn``: out of epoll and the list, its descriptor closed, its memory freed."""
    epoll_ctl(s.ep, EPOLL_CTL_DEL, conn.fd, NULL)
    close(conn.fd)
    if conn.prev != NULL:
        conn.prev.next = conn.next
    else:
        s.conns = conn.next
    if conn.next != NULL:
        conn.next.prev = conn.prev
    free(conn.pending)
    free(conn)


cdef int _conn_interest(TcpServer *s, Conn *conn, bint writing) noexcept nogil:
    cdef epoll_event ev
    memset(&ev, 0, sizeof(ev))
    ev.events = EPOLLOUT if writing else EPOLLIN
    ev.data.ptr = conn
    conn.writing = writing
    return epoll_ctl(s.ep, EPOLL_CTL_MOD, conn.fd, &ev)


cdef int _tcp_accept(TcpServer *s, TcpCounts *c) noexcept nogil:
    """Accept every pending connection (until EAGAIN); -1 only when the loop must end."""
    cdef int fd, one = 1
    cdef Conn *conn
    cdef epoll_event ev
    while True:
        fd = accept4(s.listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)
        if fd < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                return 0
            if (errno == ECONNABORTED or errno == EPROTO or errno == EPERM or errno == EMFILE
                    or errno == ENFILE or errno == ENOBUFS or errno == ENOMEM):
                # The client gave up, or no descriptor/memory right now: retried on the next
                # wake (the listener stays readable), counted, not fatal.
                c.accept_errors += 1
                return 0
            c.error = errno
            return -1
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        conn = <Conn *>calloc(1, sizeof(Conn))
        if conn == NULL:
            close(fd)
            c.accept_errors += 1
            continue
        conn.fd = fd
        memset(&ev, 0, sizeof(ev))
        ev.events = EPOLLIN
        ev.data.ptr = conn
        if epoll_ctl(s.ep, EPOLL_CTL_ADD, fd, &ev) != 0:
            close(fd)
            free(conn)
            c.accept_errors += 1
            continue
        conn.next = s.conns
        if s.conns != NULL:
            s.conns.prev = conn
        s.conns = conn
        c.accepted += 1


cdef int _keep(Conn *conn, const unsigned char *data, size_t n) noexcept nogil:
    """Append ``n`` unsent bytes to ``conn``'s pending buffer; -1 when out of memory."""
    cdef size_t need = conn.pending_len + n
    cdef unsigned char *grown
    if need > conn.pending_cap:
        grown = <unsigned char *>malloc(need if need > C_TCP_BUFFER else C_TCP_BUFFER)
        if grown == NULL:
            return -1
        if conn.pending_len > conn.pending_off:
            memcpy(grown, conn.pending + conn.pending_off, conn.pending_len - conn.pending_off)
        conn.pending_len -= conn.pending_off
        conn.pending_off = 0
        free(conn.pending)
        conn.pending = grown
        conn.pending_cap = need if need > C_TCP_BUFFER else C_TCP_BUFFER
    memcpy(conn.pending + conn.pending_len, data, n)
    conn.pending_len += n
    return 0


cdef int _send_some(Conn *conn, const unsigned char *data, size_t n, TcpCounts *c,
                    size_t *taken) noexcept nogil:
    """send() until done or EAGAIN; ``taken`` says how much went. -1 on a connection error."""
    cdef ssize_t k
    taken[0] = 0
    while taken[0] < n:
        k = send(conn.fd, data + taken[0], n - taken[0], MSG_DONTWAIT | MSG_NOSIGNAL)
        c.send_calls += 1
        if k > 0:
            taken[0] += k
            c.bytes_sent += k
            continue
        if k < 0 and errno == EINTR:
            continue
        if k < 0 and errno == EAGAIN:
            return 0
        return -1
    return 0


cdef int _conn_readable(TcpServer *s, Conn *conn, TcpCounts *c) noexcept nogil:
    """Read and echo until EAGAIN (or READS_PER_WAKE reads); -1: close the connection."""
    cdef ssize_t k
    cdef size_t taken
    cdef int reads = 0
    while reads < READS_PER_WAKE:
        reads += 1
        k = recv(conn.fd, s.buf, C_TCP_BUFFER, MSG_DONTWAIT)
        c.recv_calls += 1
        if k == 0:
            return -1  # EOF: the client is done
        if k < 0:
            if errno == EINTR:
                continue
            if errno == EAGAIN:
                return 0
            c.resets += 1
            return -1
        c.bytes_received += k
        if _send_some(conn, s.buf, <size_t>k, c, &taken) != 0:
            c.resets += 1
            return -1
        if taken < <size_t>k:
            # The client is not reading fast enough: keep the rest, stop reading, wait.
            if _keep(conn, s.buf + taken, <size_t>k - taken) != 0:
                c.resets += 1
                return -1
            c.blocked_writes += 1
            if _conn_interest(s, conn, True) != 0:
                return -1
            return 0
    return 0


cdef int _conn_writable(TcpServer *s, Conn *conn, TcpCounts *c) noexcept nogil:
    """Send pending bytes; back to reading once none are left. -1: close the connection."""
    cdef size_t taken
    if _send_some(conn, conn.pending + conn.pending_off, conn.pending_len - conn.pending_off,
                  c, &taken) != 0:
        c.resets += 1
        return -1
    conn.pending_off += taken
    if conn.pending_off < conn.pending_len:
        return 0
    conn.pending_off = 0
    conn.pending_len = 0
    return -1 if _conn_interest(s, conn, False) != 0 else 0


cdef int _tcp_serve(TcpServer *s, TcpCounts *c) noexcept nogil:
    cdef int n, i, rc
    cdef Conn *conn
    cdef unsigned int ev
    cdef long long until
    while True:
        n = 0
        if s.spin_ns > 0:
            # As the UDP loop: poll with a zero timeout until something is ready or the budget
            # is spent, then block.
            until = _now_ns() + s.spin_ns
            while True:
                n = epoll_wait(s.ep, s.events, EVENTS, 0)
                c.spins += 1
                if n != 0 or _now_ns() >= until:
                    break
            if n > 0:
                c.spin_wins += 1
        if n == 0:
            n = epoll_wait(s.ep, s.events, EVENTS, -1)
            c.waits += 1
        if n < 0:
            if errno == EINTR:
                continue
            c.error = errno
            return -1
        for i in range(n):
            if s.events[i].data.u64 == STOP_TOKEN:
                return 0
        for i in range(n):
            if s.events[i].data.u64 == LISTEN_TOKEN:
                if _tcp_accept(s, c) != 0:
                    return -1
                continue
            conn = <Conn *>s.events[i].data.ptr
            ev = s.events[i].events
            if conn.writing:
                # EPOLLERR/EPOLLHUP while writing surface as send's error.
                rc = _conn_writable(s, conn, c)
            else:
                # recv reports what EPOLLERR/EPOLLHUP mean: the pending error, or 0 for EOF.
                rc = _conn_readable(s, conn, c)
            if rc != 0:
                _conn_close(s, conn)
                c.closed += 1


def serve_tcp(int listener, int stop_fd, *, int spin_us=0):
    """Echo on every connection the TCP ``listener`` accepts until ``stop_fd`` is readable.

    ``listener`` (a listening nonblocking TCP socket) and ``stop_fd`` are the caller's,
    borrowed for the call. The connections it accepts are this function's: TCP_NODELAY is set
    on each, and each is closed on EOF, on an error, or when the call returns. ``spin_us`` > 0
    busy-polls ``epoll_wait(0)`` that long before each blocking wait. Returns the counters:
    ``accepted``, ``closed``, ``resets``, ``accept_errors``, ``bytes_received``,
    ``bytes_sent``, ``recv_calls``, ``send_calls``, ``waits``, ``spins``, ``spin_wins``,
    ``blocked_writes``, ``open_at_stop`` and ``spin_us``. OSError when the loop itself fails.

    Example:
        >>> serve_tcp(-1, -1)
        Traceback (most recent call last):
        ...
        ValueError: descriptors must be open ones, got -1
    """
    cdef TcpServer s
    cdef TcpCounts c
    cdef epoll_event ev
    _check_fds(listener, stop_fd)
    if not 0 <= spin_us <= C_MAX_SPIN_US:
        raise ValueError(f"spin_us must be 0..{C_MAX_SPIN_US}, got {spin_us}")
    memset(&s, 0, sizeof(s))
    memset(&c, 0, sizeof(c))
    s.listener = listener
    s.ep = -1
    s.spin_ns = <long long>spin_us * 1000
    try:
        s.buf = <unsigned char *>malloc(C_TCP_BUFFER)
        s.events = <epoll_event *>calloc(EVENTS, sizeof(epoll_event))
        if not (s.buf and s.events):
            raise MemoryError("cannot allocate the reference server's buffers")
        with nogil:
            s.ep = _epoll_with_stop(stop_fd)
            if s.ep < 0:
                c.error = errno
            else:
                memset(&ev, 0, sizeof(ev))
                ev.events = EPOLLIN
                ev.data.u64 = LISTEN_TOKEN
                if epoll_ctl(s.ep, EPOLL_CTL_ADD, listener, &ev) != 0:
                    c.error = errno
                else:
                    _tcp_serve(&s, &c)
            while s.conns != NULL:
                c.open_at_stop += 1
                _conn_close(&s, s.conns)
        if c.error:
            raise_errno(c.error, "C reference TCP server")
        return {
            "accepted": c.accepted, "closed": c.closed, "resets": c.resets,
            "accept_errors": c.accept_errors, "bytes_received": c.bytes_received,
            "bytes_sent": c.bytes_sent, "recv_calls": c.recv_calls, "send_calls": c.send_calls,
            "waits": c.waits, "spins": c.spins, "spin_wins": c.spin_wins,
            "blocked_writes": c.blocked_writes, "open_at_stop": c.open_at_stop,
            "spin_us": spin_us,
        }
    finally:
        if s.ep >= 0:
            close(s.ep)
        free(s.buf)
        free(s.events)
