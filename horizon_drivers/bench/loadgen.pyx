# cython: embedsignature.format=clinic
"""A lean UDP and TCP load generator for benchmarks: C all the way down, GIL released for the whole run.

It keeps up to ``window`` datagrams outstanding against an echo server: replies are collected with
recvmmsg and, once min(64, window / 2) of them are in, replaced by new datagrams in one burst, so
the server always has work queued and the generator pays one send call per burst rather than per
reply. On a 2-core machine a generator built like the server it measures is often the limit
itself, which is why it sends its bursts as GSO messages (below).

* Datagrams carry a sequence number (bytes 0-7) and, when RTT sampling is on, the send time in
  CLOCK_MONOTONIC nanoseconds (bytes 8-15); the server must echo them unchanged.
* Loss is handled, not hung on: when no reply arrives within ``loss_timeout`` seconds, whatever is
  outstanding is counted lost and the window is refilled.
* ``busy_wait=True`` spins on a nonblocking recvmmsg instead of sleeping in poll(): the client's
  own wake-up then drops out of round-trip measurements (use it for window-1 RTT runs).
* ``gso=True`` (the default) sends each burst as UDP GSO messages: up to 64 datagrams in one
  buffer the kernel cuts into ordinary datagrams, so one trip through the send path carries many.
  The server receives exactly what it would otherwise (separate datagrams of ``payload_size``
  bytes), while the generator's own per-datagram cost drops well below any server's: the
  server, not the generator, is what a throughput run measures. A kernel or route without UDP
  GSO makes the run fall back to plain sendmmsg (``result["gso"]`` says which was used).

TCP has two modes, each on nonblocking sockets in one thread:

* :func:`run_tcp_throughput` streams ``size``-byte writes on ``connections`` connections while
  reading the echo back (poll over all of them; the echo is discarded in the kernel with
  MSG_TRUNC, never copied out), counts the bytes echoed in the measured interval,
  then stops writing and drains until every byte sent has come back (bounded by ``timeout``), so
  ``total_received == total_sent`` when ``drained`` is true.
* :func:`run_tcp_rtt` ping-pongs ``size``-byte messages on one connection (TCP_NODELAY) and
  records each round trip into a preallocated array.

Every loop is bounded: by the measured ``duration`` and by a hard deadline ``timeout`` seconds past
it; a server that stops answering for ``timeout`` seconds is an ``OSError(ETIMEDOUT)``, a refused
connect or a reset is an ``OSError`` with the kernel's errno, a server that closes the connection
is ``OSError(ECONNRESET)``.

Percentiles (UDP and TCP share one implementation) use the nearest-rank definition, so every value
reported is a measured one; ``quantiles=`` asks for more of them, e.g. a whole CDF for a plot.
"""

from libc.errno cimport (
    errno, EINTR, EAGAIN, ECONNREFUSED, ECONNRESET, EINPROGRESS, ETIMEDOUT, EBADMSG,
)
from libc.math cimport ceil
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, malloc, free, qsort
from libc.string cimport memcpy, memset, memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.uio cimport iovec
from posix.unistd cimport close

from horizon_drivers.native.linux.sys_socket cimport (
    sockaddr, socklen_t, mmsghdr, socket, connect, setsockopt, getsockopt, recvmmsg, sendmmsg,
    send, recv, AF_INET, AF_INET6, SOCK_DGRAM, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC,
    SOL_SOCKET, SO_ERROR, MSG_DONTWAIT, MSG_NOSIGNAL, MSG_TRUNC, HORIZON_MAX_MMSG,
)
from horizon_drivers.native.linux.sys_poll cimport pollfd, poll, POLLIN, POLLOUT, POLLERR, POLLHUP
from horizon_drivers.native.linux.netinet_in cimport sockaddr_in6, IPPROTO_TCP
from horizon_drivers.native.linux.udp_gso cimport (
    GSO_MAX_SEGMENTS, GSO_MAX_BYTES, GSO_CONTROL, attach_segment_size, gso_refused,
)
from horizon_drivers.native.linux.address cimport sockaddr_from_address, raise_errno

import socket as _socket

from horizon_core.addresses import as_socket_address

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_TCP_SIZE",
    "MAX_WINDOW",
    "run_tcp_rtt",
    "run_tcp_throughput",
    "run_udp_load",
]

#: The largest window: one recvmmsg/sendmmsg vector.
MAX_WINDOW = HORIZON_MAX_MMSG
#: The most connections :func:`run_tcp_throughput` opens.
MAX_CONNECTIONS = 1024
#: The largest TCP write (throughput) or message (round trip), in bytes.
MAX_TCP_SIZE = 1 << 24


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


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int _compare_i64(const void *a, const void *b) noexcept nogil:
    cdef int64_t x = (<const int64_t *>a)[0]
    cdef int64_t y = (<const int64_t *>b)[0]
    return (x > y) - (x < y)


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


def run_udp_load(target, *, double duration=2.0, int window=256, int payload_size=64,
                 double warmup=0.5, bint sample_rtt=False, bint busy_wait=False,
                 double loss_timeout=0.05, int max_samples=2000000, int socket_buffer=4194304,
                 quantiles=None, bint gso=True):
    """Drive an echo server at ``target`` with ``window`` datagrams outstanding; return a dict.

    The dict holds ``sent``, ``received`` (in the measured interval after ``warmup``),
    ``total_sent``, ``total_received`` (warm-up included), ``lost``, ``timeouts``, ``recv_calls``,
    ``send_calls``, ``seconds`` (the measured interval), ``rate`` (replies per second in it) and,
    with ``sample_rtt``, ``rtt_ns`` percentiles (``min``, ``p50``, ``p90``, ``p99``, ``p999``,
    ``max``, ``mean``, ``samples``). ``quantiles`` (fractions in [0, 1], e.g. 0.01 to 0.999 for
    a CDF) adds ``rtt_ns["quantiles"]``: a list of ``(fraction, ns)`` pairs in the order given.
    ``gso`` sends bursts as UDP GSO messages where the kernel allows it; ``result["gso"]`` is
    True when the whole run used them.

    Example:
        >>> from horizon_drivers.bench.loadgen import run_udp_load
        >>> result = run_udp_load("127.0.0.1:9", duration=0.05, warmup=0.0)  # doctest: +SKIP
    """
    cdef Params p
    cdef Result res
    cdef Ring ring
    cdef sockaddr_in6 name
    cdef socklen_t namelen = 0
    cdef int fd, family, rc = 0
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
    wanted = _check_quantiles(quantiles)
    address = as_socket_address(target)
    family = AF_INET if address.family == 4 else AF_INET6
    sockaddr_from_address(address, family, &name, &namelen)

    memset(&p, 0, sizeof(p))
    memset(&res, 0, sizeof(res))
    memset(&ring, 0, sizeof(ring))
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        raise_errno(errno, "socket")
    try:
        # Best effort: a small buffer only costs drops, which the loss accounting absorbs.
        setsockopt(fd, SOL_SOCKET, _socket.SO_RCVBUF, &socket_buffer, sizeof(int))
        setsockopt(fd, SOL_SOCKET, _socket.SO_SNDBUF, &socket_buffer, sizeof(int))
        if connect(fd, <sockaddr *>&name, namelen) != 0:
            raise_errno(errno, "connect")
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
            result["rtt_ns"] = _percentiles(res.samples, res.nsamples, wanted)
        return result
    finally:
        close(fd)
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


# -- percentiles: one implementation for every mode ---------------------------------------------


cdef size_t _rank_index(size_t n, double q) noexcept nogil:
    """Index of the nearest-rank ``q`` quantile in ``n`` sorted samples (n > 0)."""
    # The small slack keeps q * n from rounding up past an exact rank (0.07 * 100 = 7.000...01).
    cdef double rank = ceil(q * <double>n - 1e-9)
    if rank < 1:
        return 0
    if rank >= <double>n:
        return n - 1
    return <size_t>rank - 1


cdef tuple _check_quantiles(object quantiles):
    """``quantiles`` as a tuple of floats in [0, 1] (None stays None); ValueError otherwise."""
    if quantiles is None:
        return None
    wanted = tuple(float(q) for q in quantiles)
    for q in wanted:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantiles must be fractions in [0, 1], got {q}")
    return wanted


cdef dict _percentiles(int64_t *samples, size_t n, tuple quantiles):
    """Sort ``samples`` in place; return their summary (and ``quantiles`` when asked)."""
    cdef size_t i
    cdef double total = 0
    if n == 0:
        return {"samples": 0}
    with nogil:
        qsort(samples, n, sizeof(int64_t), _compare_i64)
        for i in range(n):
            total += samples[i]
    result = {
        "samples": int(n),
        "min": int(samples[0]),
        "p50": int(samples[_rank_index(n, 0.5)]),
        "p90": int(samples[_rank_index(n, 0.9)]),
        "p99": int(samples[_rank_index(n, 0.99)]),
        "p999": int(samples[_rank_index(n, 0.999)]),
        "max": int(samples[n - 1]),
        "mean": total / n,
    }
    if quantiles is not None:
        result["quantiles"] = [(q, int(samples[_rank_index(n, q)])) for q in quantiles]
    return result


# -- TCP ------------------------------------------------------------------------------------------


cdef enum Stage:
    # Where a TCP run failed: names the OSError it raises.
    STAGE_NONE = 0
    STAGE_SOCKET
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
    int family
    sockaddr_in6 name
    socklen_t namelen
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


cdef int _tcp_connect(TcpParams *p, long long deadline, TcpResult *res) noexcept nogil:
    """A connected nonblocking TCP_NODELAY socket, or -1 with the error in ``res``."""
    cdef int fd, err = 0, one = 1
    cdef socklen_t errlen = sizeof(int)
    fd = socket(p.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
    if fd < 0:
        return _fail(res, errno, STAGE_SOCKET)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int))
    if connect(fd, <sockaddr *>&p.name, p.namelen) != 0:
        err = errno
        # EINTR: the connect goes on asynchronously, like EINPROGRESS.
        if err != EINPROGRESS and err != EINTR:
            close(fd)
            return _fail(res, err, STAGE_CONNECT)
        if _wait_fd(fd, POLLOUT, deadline, res) != 0:
            close(fd)
            res.stage = STAGE_CONNECT
            return -1
        err = 0
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) != 0:
            err = errno
        if err != 0:
            close(fd)
            return _fail(res, err, STAGE_CONNECT)
    return fd


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
        conns[i].fd = _tcp_connect(p, start + p.timeout_ns, res)
        if conns[i].fd < 0:
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


cdef _tcp_setup(TcpParams *p, target, double duration, double warmup, double timeout,
                long long size):
    """Validate the common arguments and resolve ``target`` into ``p``; return the address."""
    if not (duration > 0 and warmup >= 0 and timeout > 0):
        raise ValueError("duration and timeout must be > 0, warmup >= 0")
    if not 1 <= size <= MAX_TCP_SIZE:
        raise ValueError(f"size must be 1..{MAX_TCP_SIZE}, got {size}")
    address = as_socket_address(target)
    memset(p, 0, sizeof(TcpParams))
    p.family = AF_INET if address.family == 4 else AF_INET6
    sockaddr_from_address(address, p.family, &p.name, &p.namelen)
    p.size = <size_t>size
    p.warmup_ns = <long long>(warmup * 1e9)
    p.duration_ns = <long long>(duration * 1e9)
    p.timeout_ns = <long long>(timeout * 1e9)
    return address


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
        context = {STAGE_SOCKET: "socket", STAGE_SEND: "send", STAGE_RECV: "recv",
                   STAGE_POLL: "poll"}.get(stage, "run")
    return raise_errno(res.error, f"TCP load generator: {context}")


def run_tcp_throughput(target, *, double duration=2.0, int connections=1, int size=65536,
                       double warmup=0.5, double timeout=5.0):
    """Stream ``size``-byte writes on ``connections`` connections to the echo server at ``target``
    while reading the echo back; return a dict.

    The dict holds ``bytes`` (echoed bytes received in the measured interval after ``warmup``),
    ``seconds`` (that interval), ``bytes_per_s``, ``total_sent`` and ``total_received`` (warm-up
    and drain included), ``drained`` (every byte sent came back: then the two totals are equal),
    ``drain_seconds``, ``send_calls``, ``recv_calls``, ``poll_calls``, ``connections`` and
    ``size``. The run lasts at most ``timeout`` (connecting) + ``warmup`` + ``duration`` +
    ``timeout`` (draining) seconds; OSError on a refused connect, a reset, a closed connection or
    ``timeout`` seconds without progress.

    Example:
        >>> from horizon_drivers.bench.loadgen import run_tcp_throughput
        >>> result = run_tcp_throughput("127.0.0.1:7", duration=0.1)  # doctest: +SKIP
    """
    cdef TcpParams p
    cdef TcpResult res
    cdef TcpConn *conns = NULL
    cdef pollfd *pfds = NULL
    cdef unsigned char *sbuf = NULL
    cdef unsigned char *rbuf = NULL
    cdef unsigned int i
    cdef double secs
    if not 1 <= connections <= MAX_CONNECTIONS:
        raise ValueError(f"connections must be 1..{MAX_CONNECTIONS}, got {connections}")
    address = _tcp_setup(&p, target, duration, warmup, timeout, size)
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
            conns[i].fd = -1
        with nogil:
            _tcp_stream(&p, conns, pfds, sbuf, rbuf, &res)
        if res.error:
            _tcp_raise(&res, address, timeout)
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
        if conns:
            for i in range(<unsigned int>connections):
                if conns[i].fd >= 0:
                    close(conns[i].fd)
        free(conns)
        free(pfds)
        free(sbuf)
        free(rbuf)


def run_tcp_rtt(target, *, double duration=2.0, int size=64, double warmup=0.5,
                bint busy_wait=False, double timeout=5.0, int max_samples=2000000,
                quantiles=None):
    """Ping-pong ``size``-byte messages with the echo server at ``target`` on one connection;
    return a dict.

    The dict holds ``round_trips`` (in the measured interval after ``warmup``), ``seconds``,
    ``rate`` (round trips per second), ``total_round_trips``, ``total_sent``,
    ``total_received``, ``send_calls``, ``recv_calls``, ``poll_calls``, ``size`` and ``rtt_ns``:
    the percentiles ``run_udp_load`` reports (``quantiles`` adds the ``(fraction, ns)`` pairs
    asked for). Bytes 0-7 of each message carry a sequence number the echo must return.
    ``busy_wait=True`` spins on a nonblocking recv instead of sleeping in poll(). The run lasts
    at most ``timeout`` + ``warmup`` + ``duration`` + ``timeout`` seconds; OSError on a refused
    connect, a reset, a closed connection, a wrong echo or ``timeout`` seconds without one.

    Example:
        >>> from horizon_drivers.bench.loadgen import run_tcp_rtt
        >>> result = run_tcp_rtt("127.0.0.1:7", duration=0.1, size=64)  # doctest: +SKIP
    """
    cdef TcpParams p
    cdef TcpResult res
    cdef unsigned char *sbuf = NULL
    cdef unsigned char *rbuf = NULL
    cdef int fd = -1
    cdef double secs
    if max_samples < 0:
        raise ValueError("max_samples must be >= 0")
    wanted = _check_quantiles(quantiles)
    address = _tcp_setup(&p, target, duration, warmup, timeout, size)
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
            fd = _tcp_connect(&p, _now_ns() + p.timeout_ns, &res)
            if fd >= 0:
                _tcp_pingpong(&p, fd, sbuf, rbuf, &res)
        if res.error:
            _tcp_raise(&res, address, timeout)
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
            "rtt_ns": _percentiles(res.samples, res.nsamples, wanted),
        }
    finally:
        if fd >= 0:
            close(fd)
        free(sbuf)
        free(rbuf)
        free(res.samples)
