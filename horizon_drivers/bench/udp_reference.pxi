# The UDP reference echo: included by _reference.pyx (not built on its own).


cdef struct UdpServer:
    int fd
    int ep
    unsigned int batch
    long long spin_ns
    unsigned char *buf          # batch slots of C_UDP_SLOT bytes
    sockaddr_storage *names     # each datagram's sender, the reply's destination
    mmsghdr *rmsgs
    mmsghdr *smsgs
    iovec *riov
    iovec *siov
    epoll_event *events


cdef struct UdpCounts:
    uint64_t received
    uint64_t sent
    uint64_t dropped           # replies the kernel refused (EAGAIN, ENOBUFS, an unreachable peer)
    uint64_t recv_calls
    uint64_t send_calls
    uint64_t waits             # blocking epoll_waits
    uint64_t spins             # epoll_wait(0) calls while spinning
    uint64_t spin_wins         # spins that found a datagram before the budget ran out
    uint64_t transient_errors  # receive errors that were a peer's (ICMP), not the socket's
    int error


cdef inline bint _udp_peer_error(int err) noexcept nogil:
    # Errors a datagram socket reports for one peer or one datagram: skip it, keep serving.
    return (err == ECONNREFUSED or err == EHOSTUNREACH or err == ENETUNREACH or err == EPERM
            or err == EMSGSIZE or err == ENOBUFS or err == ENOMEM)


cdef void _udp_reply(UdpServer *s, UdpCounts *c, unsigned int count) noexcept nogil:
    """Send the ``count`` datagrams just received back to their senders (best effort: UDP)."""
    cdef unsigned int i, done = 0
    cdef int n
    for i in range(count):
        s.siov[i].iov_len = s.rmsgs[i].msg_len
        s.smsgs[i].msg_hdr.msg_namelen = s.rmsgs[i].msg_hdr.msg_namelen
    while done < count:
        n = sendmmsg(s.fd, s.smsgs + done, count - done, MSG_DONTWAIT)
        c.send_calls += 1
        if n > 0:
            done += n
            c.sent += n
            continue
        if n < 0 and errno == EINTR:
            continue
        # This datagram cannot go now (full buffer, unreachable sender...): drop it, as a UDP
        # server does, and send the rest.
        done += 1
        c.dropped += 1


cdef int _udp_wait(UdpServer *s, UdpCounts *c) noexcept nogil:
    """The socket ran dry: spin, then block, until it is readable (0) or stop is asked (1)."""
    cdef long long until
    cdef int n, i
    if s.spin_ns > 0:
        until = _now_ns() + s.spin_ns
        while True:
            n = epoll_wait(s.ep, s.events, EVENTS, 0)
            c.spins += 1
            for i in range(n if n > 0 else 0):
                if s.events[i].data.u64 == STOP_TOKEN:
                    return 1
            if n > 0:
                c.spin_wins += 1
                return 0
            if n < 0 and errno != EINTR:
                c.error = errno
                return -1
            if _now_ns() >= until:
                break
    while True:
        n = epoll_wait(s.ep, s.events, EVENTS, -1)
        c.waits += 1
        if n < 0:
            if errno == EINTR:
                continue
            c.error = errno
            return -1
        for i in range(n):
            if s.events[i].data.u64 == STOP_TOKEN:
                return 1
        if n > 0:
            return 0


cdef int _udp_serve(UdpServer *s, UdpCounts *c) noexcept nogil:
    cdef unsigned int i, busy = 0
    cdef int n, rc
    while True:
        for i in range(s.batch):
            s.rmsgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            s.rmsgs[i].msg_hdr.msg_flags = 0
        n = recvmmsg(s.fd, s.rmsgs, s.batch, MSG_DONTWAIT, NULL)
        c.recv_calls += 1
        if n > 0:
            c.received += n
            _udp_reply(s, c, <unsigned int>n)
            busy += 1
            if busy >= CHECK_STOP_EVERY:
                # A flood never runs the socket dry: look at the stop descriptor now and then.
                busy = 0
                if _stop_asked(s.ep, s.events):
                    return 0
            continue
        if errno == EINTR:
            continue
        if errno != EAGAIN:
            if _udp_peer_error(errno):
                c.transient_errors += 1
                continue
            c.error = errno
            return -1
        busy = 0
        rc = _udp_wait(s, c)
        if rc != 0:
            return 0 if rc == 1 else -1


def serve_udp(int fd, int stop_fd, *, int batch=64, int spin_us=0):
    """Echo every datagram arriving on the UDP socket ``fd`` until ``stop_fd`` is readable.

    Both descriptors are the caller's, borrowed for the call: ``fd`` a bound nonblocking UDP
    socket, ``stop_fd`` anything epoll can watch (a pipe's read end, an eventfd); neither is read,
    closed nor kept. ``batch`` (1..256) datagrams move per recvmmsg/sendmmsg; ``spin_us`` > 0
    busy-polls that long before each blocking wait. Returns the counters: ``received``,
    ``sent``, ``dropped``, ``recv_calls``, ``send_calls``, ``waits``, ``spins``, ``spin_wins``,
    ``transient_errors``, ``batch`` and ``spin_us``. OSError when the loop itself fails.

    Example:
        >>> serve_udp(-1, -1, batch=0)
        Traceback (most recent call last):
        ...
        ValueError: batch must be 1..256, got 0
    """
    cdef UdpServer s
    cdef UdpCounts c
    cdef unsigned int i
    cdef int rc = 0
    if not 1 <= batch <= C_MAX_BATCH:
        raise ValueError(f"batch must be 1..{C_MAX_BATCH}, got {batch}")
    if not 0 <= spin_us <= C_MAX_SPIN_US:
        raise ValueError(f"spin_us must be 0..{C_MAX_SPIN_US}, got {spin_us}")
    _check_fds(fd, stop_fd)
    memset(&s, 0, sizeof(s))
    memset(&c, 0, sizeof(c))
    s.fd = fd
    s.ep = -1
    s.batch = batch
    s.spin_ns = <long long>spin_us * 1000
    try:
        s.buf = <unsigned char *>malloc(<size_t>batch * C_UDP_SLOT)
        s.names = <sockaddr_storage *>calloc(batch, sizeof(sockaddr_storage))
        s.rmsgs = <mmsghdr *>calloc(batch, sizeof(mmsghdr))
        s.smsgs = <mmsghdr *>calloc(batch, sizeof(mmsghdr))
        s.riov = <iovec *>calloc(batch, sizeof(iovec))
        s.siov = <iovec *>calloc(batch, sizeof(iovec))
        s.events = <epoll_event *>calloc(EVENTS, sizeof(epoll_event))
        if not (s.buf and s.names and s.rmsgs and s.smsgs and s.riov and s.siov and s.events):
            raise MemoryError("cannot allocate the reference server's buffers")
        for i in range(<unsigned int>batch):
            # Received and reply messages share the slot and the sender's address.
            s.riov[i].iov_base = s.buf + <size_t>i * C_UDP_SLOT
            s.riov[i].iov_len = C_UDP_SLOT
            s.siov[i].iov_base = s.riov[i].iov_base
            s.rmsgs[i].msg_hdr.msg_iov = &s.riov[i]
            s.rmsgs[i].msg_hdr.msg_iovlen = 1
            s.rmsgs[i].msg_hdr.msg_name = &s.names[i]
            s.smsgs[i].msg_hdr.msg_iov = &s.siov[i]
            s.smsgs[i].msg_hdr.msg_iovlen = 1
            s.smsgs[i].msg_hdr.msg_name = &s.names[i]
        with nogil:
            s.ep = _epoll_with_stop(stop_fd)
            if s.ep < 0:
                c.error = errno
            else:
                memset(s.events, 0, sizeof(epoll_event))
                s.events[0].events = EPOLLIN
                s.events[0].data.u64 = LISTEN_TOKEN
                if epoll_ctl(s.ep, EPOLL_CTL_ADD, fd, &s.events[0]) != 0:
                    c.error = errno
                else:
                    rc = _udp_serve(&s, &c)
        if c.error:
            raise_errno(c.error, "C reference UDP server")
        return {
            "received": c.received, "sent": c.sent, "dropped": c.dropped,
            "recv_calls": c.recv_calls, "send_calls": c.send_calls, "waits": c.waits,
            "spins": c.spins, "spin_wins": c.spin_wins, "transient_errors": c.transient_errors,
            "batch": batch, "spin_us": spin_us,
        }
    finally:
        if s.ep >= 0:
            close(s.ep)
        free(s.buf)
        free(s.names)
        free(s.rmsgs)
        free(s.smsgs)
        free(s.riov)
        free(s.siov)
        free(s.events)
