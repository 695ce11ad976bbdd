# TCP echo load, streaming and ping-pong: included by _loadgen.pyx (not built on its own).


cdef enum Stage:
    # Where a TCP run failed: names the OSError it raises.
    STAGE_NONE = 0
    STAGE_CONNECT
    STAGE_SEND
    STAGE_RECV
    STAGE_POLL
    STAGE_CLOSED     # the server closed the connection (recv returned 0)
    STAGE_TIMEOUT    # nothing moved for timeout_ns
    STAGE_MISMATCH   # the echo is not what was sent


cdef enum:
    HOUR_MS = 3600000
    TCP_RECV_BUFFER = 262144   # throughput mode discards up to this much per recv (MSG_TRUNC)
    TCP_READS_PER_WAKE = 4     # reads per connection per poll, so one cannot starve the others


cdef struct TcpParams:
    unsigned int connections
    size_t size
    long long warmup_ns
    long long duration_ns
    long long timeout_ns
    bint busy_wait
    size_t max_samples


cdef struct TcpConn:
    int fd
    size_t send_off      # bytes of the current write already taken by the kernel


cdef struct TcpResult:
    uint64_t total_sent
    uint64_t total_received
    uint64_t measured        # bytes echoed (throughput) or round trips (rtt) in the interval
    uint64_t round_trips
    uint64_t send_calls
    uint64_t recv_calls
    uint64_t poll_calls
    long long measured_ns
    long long drain_ns
    bint drained
    int64_t *samples
    size_t nsamples
    int error
    int stage


cdef inline int _fail(TcpResult *res, int err, int stage) noexcept nogil:
    res.error = err
    res.stage = stage
    return -1


cdef inline int _ms_until(long long deadline) noexcept nogil:
    """poll()'s timeout for ``deadline``: rounded up to whole ms, 0 when already past."""
    cdef long long left = deadline - _now_ns()
    if left <= 0:
        return 0
    if left >= <long long>HOUR_MS * 1000000:
        return HOUR_MS
    return <int>((left + 999999) // 1000000)


cdef int _wait_fd(int fd, short events, long long deadline, TcpResult *res) noexcept nogil:
    """Wait until ``fd`` has ``events`` (or an error to report); -1 (ETIMEDOUT) at ``deadline``."""
    cdef pollfd pfd
    cdef int rc
    while True:
        pfd.fd = fd
        pfd.events = events
        pfd.revents = 0
        rc = poll(&pfd, 1, _ms_until(deadline))
        res.poll_calls += 1
        if rc > 0:
            return 0
        if rc < 0 and errno != EINTR:
            return _fail(res, errno, STAGE_POLL)
        if rc == 0 and _now_ns() >= deadline:
            return _fail(res, ETIMEDOUT, STAGE_TIMEOUT)


cdef int _tcp_connected(int fd, long long deadline, TcpResult *res) noexcept nogil:
    """Wait for the nonblocking connect the caller started on ``fd``; 0, or -1 with the error."""
    cdef int err = 0
    cdef socklen_t errlen = sizeof(int)
    if _wait_fd(fd, POLLOUT, deadline, res) != 0:
        res.stage = STAGE_CONNECT
        return -1
    if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0:
        err = errno
    if err != 0:
        return _fail(res, err, STAGE_CONNECT)
    return 0


cdef int _tcp_stream(TcpParams *p, TcpConn *conns, pollfd *pfds, unsigned char *sbuf,
                     unsigned char *rbuf, TcpResult *res) noexcept nogil:
    """Throughput: write and read on every connection until the end, then drain the echo."""
    cdef unsigned int i, reads, n = p.connections
    cdef long long now, start, measure_from, end, hard, last_progress, drain_from = 0, deadline
    cdef bint measuring = False, sending = True
    cdef uint64_t received0 = 0
    cdef ssize_t k
    cdef int rc, fd
    cdef short ev
    start = _now_ns()
    for i in range(n):
        if _tcp_connected(conns[i].fd, start + p.timeout_ns, res) != 0:
            return -1
    start = _now_ns()
    measure_from = start + p.warmup_ns
    end = measure_from + p.duration_ns
    hard = end + p.timeout_ns
    last_progress = start
    while True:
        now = _now_ns()
        if sending:
            if not measuring and now >= measure_from:
                measuring = True
                measure_from = now
                received0 = res.total_received
            if now >= end:
                # Stop writing; what is in flight still comes back (the drain below).
                sending = False
                res.measured_ns = now - measure_from
                res.measured = res.total_received - received0
                drain_from = now
        if not sending:
            if res.total_received >= res.total_sent:
                res.drained = True
                break
            if now >= hard:
                break  # not drained: reported, not raised
        if now - last_progress >= p.timeout_ns:
            return _fail(res, ETIMEDOUT, STAGE_TIMEOUT)
        for i in range(n):
            pfds[i].fd = conns[i].fd
            pfds[i].events = POLLIN | POLLOUT if sending else POLLIN
            pfds[i].revents = 0
        deadline = end if sending else hard
        if last_progress + p.timeout_ns < deadline:
            deadline = last_progress + p.timeout_ns
        rc = poll(pfds, n, _ms_until(deadline))
        res.poll_calls += 1
        if rc < 0:
            if errno == EINTR:
                continue
            return _fail(res, errno, STAGE_POLL)
        now = _now_ns()  # progress below is stamped after the wait, not before it
        for i in range(n):
            ev = pfds[i].revents
            if ev == 0:
                continue
            fd = conns[i].fd
            if ev & (POLLIN | POLLHUP | POLLERR):
                # recv reports what POLLERR/POLLHUP mean: the pending error, or 0 for EOF.
                # MSG_TRUNC: TCP drops the bytes in the kernel (Linux >= 2.4), only counted here.
                reads = 0
                while reads < TCP_READS_PER_WAKE:
                    reads += 1
                    k = recv(fd, rbuf, TCP_RECV_BUFFER, MSG_DONTWAIT | MSG_TRUNC)
                    res.recv_calls += 1
                    if k > 0:
                        res.total_received += k
                        last_progress = now
                        if k < TCP_RECV_BUFFER:
                            break
                        continue
                    if k == 0:
                        return _fail(res, ECONNRESET, STAGE_CLOSED)
                    if errno == EINTR:
                        continue
                    if errno == EAGAIN:
                        break
                    return _fail(res, errno, STAGE_RECV)
            if sending and ev & POLLOUT:
                k = send(fd, sbuf + conns[i].send_off, p.size - conns[i].send_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL)
                res.send_calls += 1
                if k > 0:
                    res.total_sent += k
                    conns[i].send_off += k
                    if conns[i].send_off >= p.size:
                        conns[i].send_off = 0
                    last_progress = now
                elif k < 0 and errno != EAGAIN and errno != EINTR:
                    return _fail(res, errno, STAGE_SEND)
    res.drain_ns = _now_ns() - drain_from
    return 0


cdef int _tcp_pingpong(TcpParams *p, int fd, unsigned char *sbuf, unsigned char *rbuf,
                       TcpResult *res) noexcept nogil:
    """Round trips: send ``size`` bytes, read ``size`` back, record the time; until the end."""
    cdef long long now, t0, t1, measure_from, end, hard, deadline
    cdef bint measuring = False, wait
    cdef uint64_t seq = 0, trips0 = 0
    cdef size_t off
    cdef ssize_t k
    now = _now_ns()
    measure_from = now + p.warmup_ns
    end = measure_from + p.duration_ns
    hard = end + p.timeout_ns
    while True:
        now = _now_ns()
        if not measuring and now >= measure_from:
            measuring = True
            measure_from = now
            trips0 = res.round_trips
        if now >= end:
            break
        seq += 1
        if p.size >= 8:
            memcpy(sbuf, &seq, 8)
        t0 = _now_ns()
        # A round trip begun before the end may finish after it, within the timeout.
        deadline = t0 + p.timeout_ns if t0 + p.timeout_ns < hard else hard
        off = 0
        while off < p.size:
            k = send(fd, sbuf + off, p.size - off, MSG_DONTWAIT | MSG_NOSIGNAL)
            res.send_calls += 1
            if k > 0:
                off += k
                res.total_sent += k
                continue
            if k < 0 and errno == EINTR:
                continue
            if k < 0 and errno == EAGAIN:
                if _wait_fd(fd, POLLOUT, deadline, res) != 0:
                    return -1
                continue
            return _fail(res, errno, STAGE_SEND)
        off = 0
        wait = not p.busy_wait  # sleeping: poll first, the echo cannot be there yet
        while off < p.size:
            if wait and _wait_fd(fd, POLLIN, deadline, res) != 0:
                return -1
            k = recv(fd, rbuf + off, p.size - off, MSG_DONTWAIT)
            res.recv_calls += 1
            if k > 0:
                off += k
                res.total_received += k
                continue
            if k == 0:
                return _fail(res, ECONNRESET, STAGE_CLOSED)
            if errno == EINTR:
                continue
            if errno != EAGAIN:
                return _fail(res, errno, STAGE_RECV)
            wait = not p.busy_wait
            if p.busy_wait and _now_ns() >= deadline:
                return _fail(res, ETIMEDOUT, STAGE_TIMEOUT)
        t1 = _now_ns()
        if p.size >= 8 and memcmp(rbuf, sbuf, 8) != 0:
            return _fail(res, EBADMSG, STAGE_MISMATCH)
        res.round_trips += 1
        if measuring and res.nsamples < p.max_samples:
            res.samples[res.nsamples] = t1 - t0
            res.nsamples += 1
    if measuring:
        res.measured_ns = now - measure_from
        res.measured = res.round_trips - trips0
    return 0


cdef int _tcp_setup(TcpParams *p, double duration, double warmup, double timeout,
                    long long size) except -1:
    """Validate the common arguments into ``p``."""
    if not (duration > 0 and warmup >= 0 and timeout > 0):
        raise ValueError("duration and timeout must be > 0, warmup >= 0")
    if not 1 <= size <= MAX_TCP_SIZE:
        raise ValueError(f"size must be 1..{MAX_TCP_SIZE}, got {size}")
    memset(p, 0, sizeof(TcpParams))
    p.size = <size_t>size
    p.warmup_ns = <long long>(warmup * 1e9)
    p.duration_ns = <long long>(duration * 1e9)
    p.timeout_ns = <long long>(timeout * 1e9)
    return 0


cdef int _tcp_raise(TcpResult *res, address, double timeout) except -1:
    cdef int stage = res.stage
    if stage == STAGE_CONNECT:
        context = f"connect to {address}"
    elif stage == STAGE_CLOSED:
        context = f"{address} closed the connection"
    elif stage == STAGE_TIMEOUT:
        context = f"no progress from {address} within {timeout:g}s"
    elif stage == STAGE_MISMATCH:
        context = f"the echo from {address} differs from what was sent"
    else:
        context = {STAGE_SEND: "send", STAGE_RECV: "recv",
                   STAGE_POLL: "poll"}.get(stage, "run")
    return raise_errno(res.error, f"TCP load generator: {context}")




def tcp_throughput(fds, *, str peer="the server", double duration=2.0, int size=65536,
                   double warmup=0.5, double timeout=5.0):
    """Stream ``size``-byte writes on the TCP sockets ``fds`` while reading the echo back.

    ``fds`` are nonblocking TCP sockets whose connect has started (or finished), owned by the
    caller: borrowed for the call, neither closed nor kept. ``peer`` names the server in errors.
    Returns a dict: ``bytes`` (echoed bytes received in the measured interval after ``warmup``),
    ``seconds`` (that interval), ``bytes_per_s``, ``total_sent`` and ``total_received``
    (warm-up and drain included), ``drained`` (every byte sent came back), ``drain_seconds``,
    ``send_calls``, ``recv_calls``, ``poll_calls``, ``connections`` and ``size``. OSError on a
    failed connect, a reset, a closed connection or ``timeout`` seconds without progress.

    Example:
        >>> tcp_throughput([])
        Traceback (most recent call last):
        ...
        ValueError: connections must be 1..1024, got 0
    """
    cdef TcpParams p
    cdef TcpResult res
    cdef TcpConn *conns = NULL
    cdef pollfd *pfds = NULL
    cdef unsigned char *sbuf = NULL
    cdef unsigned char *rbuf = NULL
    cdef unsigned int i
    cdef double secs
    descriptors = [int(fd) for fd in fds]
    connections = len(descriptors)
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be 1..{MAX_CONNECTIONS}, got {connections}")
    if min(descriptors) < 0:
        raise ValueError(f"fds must be open sockets' descriptors, got {descriptors}")
    _tcp_setup(&p, duration, warmup, timeout, size)
    p.connections = connections
    memset(&res, 0, sizeof(res))
    conns = <TcpConn *>calloc(connections, sizeof(TcpConn))
    pfds = <pollfd *>calloc(connections, sizeof(pollfd))
    sbuf = <unsigned char *>calloc(p.size, 1)
    rbuf = <unsigned char *>malloc(TCP_RECV_BUFFER)
    try:
        if not (conns and pfds and sbuf and rbuf):
            raise MemoryError("cannot allocate load generator buffers")
        for i in range(<unsigned int>connections):
            conns[i].fd = descriptors[i]
        with nogil:
            _tcp_stream(&p, conns, pfds, sbuf, rbuf, &res)
        if res.error:
            _tcp_raise(&res, peer, timeout)
        secs = res.measured_ns / 1e9
        return {
            "bytes": res.measured,
            "seconds": secs,
            "bytes_per_s": res.measured / secs if secs > 0 else 0.0,
            "total_sent": res.total_sent,
            "total_received": res.total_received,
            "drained": bool(res.drained),
            "drain_seconds": res.drain_ns / 1e9,
            "send_calls": res.send_calls,
            "recv_calls": res.recv_calls,
            "poll_calls": res.poll_calls,
            "connections": connections,
            "size": size,
        }
    finally:
        free(conns)
        free(pfds)
        free(sbuf)
        free(rbuf)


def tcp_rtt(int fd, *, str peer="the server", double duration=2.0, int size=64,
            double warmup=0.5, bint busy_wait=False, double timeout=5.0,
            int max_samples=2000000):
    """Ping-pong ``size``-byte messages on the TCP socket ``fd``; return a dict.

    ``fd`` is a nonblocking TCP socket whose connect has started (or finished), owned by the
    caller: borrowed for the call, neither closed nor kept. ``peer`` names the server in errors.
    The dict holds ``round_trips`` (in the measured interval after ``warmup``), ``seconds``,
    ``rate`` (round trips per second), ``total_round_trips``, ``total_sent``,
    ``total_received``, ``send_calls``, ``recv_calls``, ``poll_calls``, ``size`` and
    ``samples``: the round trips in nanoseconds as native int64 values in ascending order
    (bytes). Bytes 0-7 of each message carry a sequence number the echo must return.
    ``busy_wait=True`` spins on a nonblocking recv instead of sleeping in poll().

    Example:
        >>> tcp_rtt(-1, size=0)
        Traceback (most recent call last):
        ...
        ValueError: size must be 1..16777216, got 0
    """
    cdef TcpParams p
    cdef TcpResult res
    cdef unsigned char *sbuf = NULL
    cdef unsigned char *rbuf = NULL
    cdef double secs
    cdef int rc = 0
    if max_samples < 0:
        raise ValueError("max_samples must be >= 0")
    _tcp_setup(&p, duration, warmup, timeout, size)
    if fd < 0:
        raise ValueError(f"fd must be an open socket's descriptor, got {fd}")
    p.connections = 1
    p.busy_wait = busy_wait
    p.max_samples = max_samples
    memset(&res, 0, sizeof(res))
    sbuf = <unsigned char *>calloc(p.size, 1)
    rbuf = <unsigned char *>malloc(p.size)
    if max_samples:
        res.samples = <int64_t *>calloc(max_samples, sizeof(int64_t))
    try:
        if not (sbuf and rbuf) or (max_samples and not res.samples):
            raise MemoryError("cannot allocate load generator buffers")
        with nogil:
            rc = _tcp_connected(fd, _now_ns() + p.timeout_ns, &res)
            if rc == 0:
                _tcp_pingpong(&p, fd, sbuf, rbuf, &res)
        if res.error:
            _tcp_raise(&res, peer, timeout)
        secs = res.measured_ns / 1e9
        return {
            "round_trips": res.measured,
            "seconds": secs,
            "rate": res.measured / secs if secs > 0 else 0.0,
            "total_round_trips": res.round_trips,
            "total_sent": res.total_sent,
            "total_received": res.total_received,
            "send_calls": res.send_calls,
            "recv_calls": res.recv_calls,
            "poll_calls": res.poll_calls,
            "size": size,
            "samples": _sorted_samples(res.samples, res.nsamples),
        }
    finally:
        free(sbuf)
        free(rbuf)
        free(res.samples)


cdef int _tcp_pipelined(TcpParams *p, int fd, size_t depth, unsigned char *sbuf,
                        unsigned char *rbuf, long long *stamps, TcpResult *res) noexcept nogil:
    """Keep ``depth`` messages of ``size`` bytes in flight on ``fd`` until the end.

    Message ``i`` (from 1) carries ``i`` in bytes 0-7 and is stamped when composed into the send
    buffer; the echo stream is cut at every ``size`` bytes, each completed message checked
    against its number and timed against its stamp (``stamps[i % depth]``: at most ``depth``
    messages are outstanding, so no two share a slot). The buffer is refilled with as many
    messages as have come back once everything composed before has gone to the kernel.
    """
    cdef long long now, t, measure_from, end, last_progress, deadline
    cdef bint measuring = False, progressed
    cdef uint64_t composed = 0, done = 0, done0 = 0, room, j
    cdef size_t s_off = 0, s_len = 0, rx_in = 0, pos, take, h
    cdef unsigned char hdr[8]
    cdef unsigned int reads
    cdef ssize_t k
    cdef int rc
    cdef pollfd pfd
    now = _now_ns()
    measure_from = now + p.warmup_ns
    end = measure_from + p.duration_ns
    last_progress = now
    while True:
        now = _now_ns()
        if not measuring and now >= measure_from:
            measuring = True
            measure_from = now
            done0 = done
        if now >= end:
            break  # what is still in flight is not waited for: the connection closes
        progressed = False
        if s_off == s_len and composed - done < depth:
            room = depth - (composed - done)
            t = _now_ns()
            for j in range(room):
                composed += 1
                if p.size >= 8:
                    memcpy(sbuf + j * p.size, &composed, 8)
                stamps[composed % depth] = t
            s_off = 0
            s_len = <size_t>room * p.size
        if s_off < s_len:
            k = send(fd, sbuf + s_off, s_len - s_off, MSG_DONTWAIT | MSG_NOSIGNAL)
            res.send_calls += 1
            if k > 0:
                s_off += k
                res.total_sent += k
                progressed = True
            elif k < 0 and errno != EAGAIN and errno != EINTR:
                return _fail(res, errno, STAGE_SEND)
        reads = 0
        while reads < TCP_READS_PER_WAKE:
            reads += 1
            k = recv(fd, rbuf, TCP_RECV_BUFFER, MSG_DONTWAIT)
            res.recv_calls += 1
            if k == 0:
                return _fail(res, ECONNRESET, STAGE_CLOSED)
            if k < 0:
                if errno == EINTR:
                    continue
                if errno == EAGAIN:
                    break
                return _fail(res, errno, STAGE_RECV)
            progressed = True
            res.total_received += k
            t = _now_ns()
            pos = 0
            while pos < <size_t>k:
                take = p.size - rx_in
                if take > <size_t>k - pos:
                    take = <size_t>k - pos
                if p.size >= 8 and rx_in < 8:
                    h = 8 - rx_in if 8 - rx_in < take else take
                    memcpy(hdr + rx_in, rbuf + pos, h)
                rx_in += take
                pos += take
                if rx_in == p.size:
                    rx_in = 0
                    done += 1
                    if p.size >= 8 and memcmp(hdr, &done, 8) != 0:
                        return _fail(res, EBADMSG, STAGE_MISMATCH)
                    if measuring and res.nsamples < p.max_samples:
                        res.samples[res.nsamples] = t - stamps[done % depth]
                        res.nsamples += 1
            if <size_t>k < TCP_RECV_BUFFER:
                break
        if progressed:
            last_progress = now
            continue
        if now - last_progress >= p.timeout_ns:
            return _fail(res, ETIMEDOUT, STAGE_TIMEOUT)
        if p.busy_wait:
            continue
        deadline = last_progress + p.timeout_ns
        if end < deadline:
            deadline = end
        pfd.fd = fd
        pfd.events = POLLIN | POLLOUT if s_off < s_len else POLLIN
        pfd.revents = 0
        rc = poll(&pfd, 1, _ms_until(deadline))
        res.poll_calls += 1
        if rc < 0 and errno != EINTR:
            return _fail(res, errno, STAGE_POLL)
    res.round_trips = done
    if measuring:
        res.measured_ns = now - measure_from
        res.measured = done - done0
    return 0


def tcp_pipelined(int fd, *, str peer="the server", double duration=2.0, int size=64,
                  int pipeline=256, double warmup=0.5, bint busy_wait=False,
                  double timeout=5.0, int max_samples=2000000):
    """Keep ``pipeline`` ``size``-byte messages in flight on the TCP socket ``fd``; a dict.

    ``fd`` is a nonblocking TCP socket whose connect has started (or finished), owned by the
    caller: borrowed for the call, neither closed nor kept. The echo is counted by message:
    ``messages`` (completed in the measured interval after ``warmup``), ``seconds``, ``rate``
    (messages per second), ``total_messages``, ``total_sent``, ``total_received`` (bytes),
    ``send_calls``, ``recv_calls``, ``poll_calls``, ``size``, ``pipeline`` and ``samples``: each
    message's round trip (composed to echoed) in nanoseconds, native int64 in ascending order
    (bytes). Bytes 0-7 of each message carry its number, which the echo must return in order
    (``OSError(EBADMSG)`` otherwise). Messages still in flight at the end are not waited for.

    Example:
        >>> tcp_pipelined(-1, pipeline=0)
        Traceback (most recent call last):
        ...
        ValueError: pipeline must be 1..16384, got 0
    """
    cdef TcpParams p
    cdef TcpResult res
    cdef unsigned char *sbuf = NULL
    cdef unsigned char *rbuf = NULL
    cdef long long *stamps = NULL
    cdef double secs
    cdef int rc = 0
    if not 1 <= pipeline <= MAX_PIPELINE:
        raise ValueError(f"pipeline must be 1..{MAX_PIPELINE}, got {pipeline}")
    if max_samples < 0:
        raise ValueError("max_samples must be >= 0")
    _tcp_setup(&p, duration, warmup, timeout, size)
    if <size_t>pipeline * p.size > MAX_TCP_SIZE:
        raise ValueError(f"pipeline x size must be at most {MAX_TCP_SIZE} bytes, "
                         f"got {pipeline} x {size}")
    if fd < 0:
        raise ValueError(f"fd must be an open socket's descriptor, got {fd}")
    p.connections = 1
    p.busy_wait = busy_wait
    p.max_samples = max_samples
    memset(&res, 0, sizeof(res))
    sbuf = <unsigned char *>calloc(<size_t>pipeline * p.size, 1)
    rbuf = <unsigned char *>malloc(TCP_RECV_BUFFER)
    stamps = <long long *>calloc(pipeline, sizeof(long long))
    if max_samples:
        res.samples = <int64_t *>calloc(max_samples, sizeof(int64_t))
    try:
        if not (sbuf and rbuf and stamps) or (max_samples and not res.samples):
            raise MemoryError("cannot allocate load generator buffers")
        with nogil:
            rc = _tcp_connected(fd, _now_ns() + p.timeout_ns, &res)
            if rc == 0:
                _tcp_pipelined(&p, fd, <size_t>pipeline, sbuf, rbuf, stamps, &res)
        if res.error:
            _tcp_raise(&res, peer, timeout)
        secs = res.measured_ns / 1e9
        return {
            "messages": res.measured,
            "seconds": secs,
            "rate": res.measured / secs if secs > 0 else 0.0,
            "total_messages": res.round_trips,
            "total_sent": res.total_sent,
            "total_received": res.total_received,
            "send_calls": res.send_calls,
            "recv_calls": res.recv_calls,
            "poll_calls": res.poll_calls,
            "size": size,
            "pipeline": pipeline,
            "samples": _sorted_samples(res.samples, res.nsamples),
        }
    finally:
        free(sbuf)
        free(rbuf)
        free(stamps)
        free(res.samples)
