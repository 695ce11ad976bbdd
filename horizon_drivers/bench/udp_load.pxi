# UDP echo load: included by _loadgen.pyx (not built on its own).


cdef struct Params:
    int fd
    unsigned int window
    unsigned int payload_size
    long long warmup_ns
    long long duration_ns
    long long loss_timeout_ns
    bint sample_rtt
    bint busy_wait
    size_t max_samples
    # Datagrams per GSO message; 0 sends each datagram as its own message.
    unsigned int gso_segments
    # Refill the window once this many replies are in: bursts big enough to share a syscall.
    unsigned int refill


cdef struct Result:
    uint64_t sent
    uint64_t received
    uint64_t lost
    uint64_t timeouts
    uint64_t recv_calls
    uint64_t send_calls
    uint64_t measured_sent
    uint64_t measured_received
    long long measured_ns
    int64_t *samples
    size_t nsamples
    int error


cdef struct Ring:
    # Send side: window slots of payload_size bytes; receive side: window slots of 2048 bytes.
    unsigned char *sbuf
    unsigned char *rbuf
    mmsghdr *smsgs
    mmsghdr *rmsgs
    iovec *siov
    iovec *riov
    # GSO messages: message j carries datagrams [j * gso_segments, ...) of a burst, one iovec
    # over their contiguous payloads and a UDP_SEGMENT control message built once.
    mmsghdr *gmsgs
    iovec *giov
    unsigned char *gcontrol
    uint64_t seq



cdef enum:
    RECV_SLOT = 2048


cdef int _sendmmsg_gso(Params *p, Ring *r, unsigned int first, unsigned int count) noexcept nogil:
    """Send datagrams [first, count) of the burst as GSO messages; datagrams sent, or -1."""
    cdef unsigned int segs = p.gso_segments
    cdef unsigned int left = count - first
    cdef unsigned int messages = (left + segs - 1) // segs
    cdef unsigned int j, chunk
    cdef int n
    for j in range(messages):
        chunk = left - j * segs if left - j * segs < segs else segs
        r.giov[j].iov_base = r.sbuf + (first + j * segs) * p.payload_size
        r.giov[j].iov_len = chunk * p.payload_size
    n = sendmmsg(p.fd, r.gmsgs, messages, MSG_DONTWAIT)
    if n <= 0:
        return n
    # Only the last message can be short, so n messages carried this many datagrams:
    return <int>(<unsigned int>n * segs if <unsigned int>n * segs < left else left)


cdef unsigned int _send_burst(Params *p, Ring *r, Result *res, unsigned int count) noexcept nogil:
    """Send ``count`` fresh datagrams (stamped now); return how many the kernel took."""
    cdef unsigned int i, done = 0
    cdef int n
    cdef long long stamp
    cdef pollfd pfd
    cdef int tries = 0
    if count == 0:
        return 0
    if count > p.window:
        count = p.window
    stamp = _now_ns() if p.sample_rtt else 0
    for i in range(count):
        r.seq += 1
        if p.payload_size >= 8:
            memcpy(r.sbuf + i * p.payload_size, &r.seq, 8)
        if p.payload_size >= 16:
            memcpy(r.sbuf + i * p.payload_size + 8, &stamp, 8)
    while done < count:
        if p.gso_segments and count - done > 1:
            n = _sendmmsg_gso(p, r, done, count)
            if n < 0 and gso_refused(errno):
                p.gso_segments = 0  # no GSO here: plain sendmmsg for the rest of the run
                continue
        else:
            n = sendmmsg(p.fd, r.smsgs + done, count - done, MSG_DONTWAIT)
        res.send_calls += 1
        if n > 0:
            done += n
            continue
        if n < 0 and errno == EINTR:
            continue
        if n < 0 and errno == EAGAIN and tries < 100:
            tries += 1
            pfd.fd = p.fd
            pfd.events = POLLOUT
            pfd.revents = 0
            poll(&pfd, 1, 10)
            continue
        break  # ECONNREFUSED (server not up yet) and friends: the rest are not outstanding
    res.sent += done
    return done


cdef int _run(Params *p, Ring *r, Result *res) noexcept nogil:
    cdef long long start = _now_ns()
    cdef long long measure_from = start + p.warmup_ns
    cdef long long end = measure_from + p.duration_ns
    cdef long long now, last_progress, t
    cdef unsigned int outstanding = 0, i
    cdef int n, err, timeout_ms
    cdef bint measuring = False
    cdef uint64_t sent0 = 0, received0 = 0
    cdef int64_t stamp
    cdef pollfd pfd
    timeout_ms = <int>(p.loss_timeout_ns // 1000000)
    if timeout_ms < 1:
        timeout_ms = 1
    outstanding = _send_burst(p, r, res, p.window)
    last_progress = _now_ns()
    while True:
        now = _now_ns()
        if not measuring and now >= measure_from:
            measuring = True
            sent0 = res.sent
            received0 = res.received
            measure_from = now
        if now >= end:
            break
        for i in range(p.window):
            r.rmsgs[i].msg_hdr.msg_flags = 0
        n = recvmmsg(p.fd, r.rmsgs, p.window, MSG_DONTWAIT, NULL)
        res.recv_calls += 1
        if n > 0:
            if <unsigned int>n > p.window:
                n = p.window
            res.received += n
            if p.sample_rtt and measuring and p.payload_size >= 16:
                t = _now_ns()
                for i in range(<unsigned int>n):
                    if res.nsamples < p.max_samples and r.rmsgs[i].msg_len >= 16:
                        memcpy(&stamp, r.rbuf + i * RECV_SLOT + 8, 8)
                        res.samples[res.nsamples] = t - stamp
                        res.nsamples += 1
            outstanding = outstanding - n if outstanding > <unsigned int>n else 0
            last_progress = now
            if p.window - outstanding >= p.refill:
                outstanding += _send_burst(p, r, res, p.window - outstanding)
            continue
        err = errno if n < 0 else EAGAIN
        if err == EINTR:
            continue
        if err != EAGAIN and err != ECONNREFUSED:
            res.error = err
            break
        if err == EAGAIN and not p.busy_wait:
            pfd.fd = p.fd
            pfd.events = POLLIN
            pfd.revents = 0
            if poll(&pfd, 1, timeout_ms) > 0:
                continue
            now = _now_ns()
        if now - last_progress >= p.loss_timeout_ns or err == ECONNREFUSED:
            # Nothing came back in time (or the port is not open yet): call it lost, refill.
            res.timeouts += 1
            res.lost += outstanding
            outstanding = _send_burst(p, r, res, p.window)
            last_progress = _now_ns()
    if measuring:
        res.measured_ns = _now_ns() - measure_from
        res.measured_sent = res.sent - sent0
        res.measured_received = res.received - received0
    return 0




def udp_load(int fd, *, double duration=2.0, int window=256, int payload_size=64,
             double warmup=0.5, bint sample_rtt=False, bint busy_wait=False,
             double loss_timeout=0.05, int max_samples=2000000, bint gso=True):
    """Drive the echo server ``fd`` is connected to with ``window`` datagrams outstanding.

    ``fd`` is a connected, nonblocking UDP socket the caller owns: it is borrowed for the call
    and neither closed nor kept. Returns a dict: ``sent``, ``received`` (in the measured
    interval after ``warmup``), ``total_sent``, ``total_received`` (warm-up included), ``lost``,
    ``timeouts``, ``recv_calls``, ``send_calls``, ``seconds`` (the measured interval), ``rate``
    (replies per second in it), ``window``, ``payload_size``, ``gso`` (True when the whole run
    sent GSO messages) and, with ``sample_rtt``, ``samples``: the round trips in nanoseconds as
    native int64 values in ascending order (bytes; ``memoryview(samples).cast("q")`` reads them).

    Example:
        >>> udp_load(-1, window=0)
        Traceback (most recent call last):
        ...
        ValueError: window must be 1..1024, got 0
    """
    cdef Params p
    cdef Result res
    cdef Ring ring
    cdef unsigned int i, segs, messages
    cdef double secs
    if not 1 <= window <= HORIZON_MAX_MMSG:
        raise ValueError(f"window must be 1..{HORIZON_MAX_MMSG}, got {window}")
    if not 0 <= payload_size <= RECV_SLOT:
        raise ValueError(f"payload_size must be 0..{RECV_SLOT}, got {payload_size}")
    if not (duration > 0 and warmup >= 0 and loss_timeout > 0):
        raise ValueError("duration and loss_timeout must be > 0, warmup >= 0")
    if max_samples < 0:
        raise ValueError("max_samples must be >= 0")
    if fd < 0:
        raise ValueError(f"fd must be an open socket's descriptor, got {fd}")
    memset(&p, 0, sizeof(p))
    memset(&res, 0, sizeof(res))
    memset(&ring, 0, sizeof(ring))
    try:
        p.fd = fd
        p.window = window
        p.payload_size = payload_size
        p.warmup_ns = <long long>(warmup * 1e9)
        p.duration_ns = <long long>(duration * 1e9)
        p.loss_timeout_ns = <long long>(loss_timeout * 1e9)
        p.sample_rtt = sample_rtt
        p.busy_wait = busy_wait
        p.max_samples = max_samples if sample_rtt else 0
        p.refill = <unsigned int>window // 2 if window < 2 * GSO_MAX_SEGMENTS else GSO_MAX_SEGMENTS
        if p.refill < 1:
            p.refill = 1
        ring.sbuf = <unsigned char *>calloc(window, payload_size if payload_size > 0 else 1)
        ring.rbuf = <unsigned char *>calloc(window, RECV_SLOT)
        ring.smsgs = <mmsghdr *>calloc(window, sizeof(mmsghdr))
        ring.rmsgs = <mmsghdr *>calloc(window, sizeof(mmsghdr))
        ring.siov = <iovec *>calloc(window, sizeof(iovec))
        ring.riov = <iovec *>calloc(window, sizeof(iovec))
        segs = GSO_MAX_BYTES // payload_size if payload_size > 0 else 0
        if segs > GSO_MAX_SEGMENTS:
            segs = GSO_MAX_SEGMENTS
        if gso and segs >= 2 and window >= 2:
            p.gso_segments = segs
            messages = (<unsigned int>window + segs - 1) // segs
            ring.gmsgs = <mmsghdr *>calloc(messages, sizeof(mmsghdr))
            ring.giov = <iovec *>calloc(messages, sizeof(iovec))
            ring.gcontrol = <unsigned char *>calloc(messages, GSO_CONTROL)
            if not (ring.gmsgs and ring.giov and ring.gcontrol):
                raise MemoryError("cannot allocate load generator buffers")
            for i in range(messages):
                ring.gmsgs[i].msg_hdr.msg_iov = &ring.giov[i]
                ring.gmsgs[i].msg_hdr.msg_iovlen = 1
                attach_segment_size(&ring.gmsgs[i].msg_hdr, ring.gcontrol + i * GSO_CONTROL,
                                    payload_size)
        if p.max_samples:
            res.samples = <int64_t *>calloc(p.max_samples, sizeof(int64_t))
        if not (ring.sbuf and ring.rbuf and ring.smsgs and ring.rmsgs and ring.siov
                and ring.riov) or (p.max_samples and not res.samples):
            raise MemoryError("cannot allocate load generator buffers")
        for i in range(<unsigned int>window):
            ring.siov[i].iov_base = ring.sbuf + i * payload_size
            ring.siov[i].iov_len = payload_size
            ring.smsgs[i].msg_hdr.msg_iov = &ring.siov[i]
            ring.smsgs[i].msg_hdr.msg_iovlen = 1
            ring.riov[i].iov_base = ring.rbuf + i * RECV_SLOT
            ring.riov[i].iov_len = RECV_SLOT
            ring.rmsgs[i].msg_hdr.msg_iov = &ring.riov[i]
            ring.rmsgs[i].msg_hdr.msg_iovlen = 1
        with nogil:
            _run(&p, &ring, &res)
        if res.error:
            raise_errno(res.error, "load generator")
        secs = res.measured_ns / 1e9
        result = {
            "sent": res.measured_sent,
            "received": res.measured_received,
            "lost": res.lost,
            "timeouts": res.timeouts,
            "recv_calls": res.recv_calls,
            "send_calls": res.send_calls,
            "seconds": secs,
            "total_sent": res.sent,
            "total_received": res.received,
            "rate": res.measured_received / secs if secs > 0 else 0.0,
            "window": window,
            "payload_size": payload_size,
            "gso": p.gso_segments > 0,
        }
        if sample_rtt:
            result["samples"] = _sorted_samples(res.samples, res.nsamples)
        return result
    finally:
        free(ring.sbuf)
        free(ring.rbuf)
        free(ring.smsgs)
        free(ring.rmsgs)
        free(ring.siov)
        free(ring.riov)
        free(ring.gmsgs)
        free(ring.giov)
        free(ring.gcontrol)
        free(res.samples)
