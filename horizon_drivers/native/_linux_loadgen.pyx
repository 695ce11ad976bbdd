# cython: embedsignature.format=clinic
"""A lean UDP load generator for benchmarks: C all the way down, GIL released for the whole run.

It keeps ``window`` datagrams outstanding against an echo server: every reply it collects with
recvmmsg is replaced by a new datagram in one sendmmsg, so the server always has work and the
generator spends its time in two syscalls per batch. On a 2-core machine the generator, not the
server, is often the limit, which is why it is written like the server it measures.

* Datagrams carry a sequence number (bytes 0-7) and, when RTT sampling is on, the send time in
  CLOCK_MONOTONIC nanoseconds (bytes 8-15); the server must echo them unchanged.
* Loss is handled, not hung on: when no reply arrives within ``loss_timeout`` seconds, whatever is
  outstanding is counted lost and the window is refilled.
* ``busy_wait=True`` spins on a nonblocking recvmmsg instead of sleeping in poll(): the client's
  own wake-up then drops out of round-trip measurements (use it for window-1 RTT runs).
"""

from libc.errno cimport errno, EINTR, EAGAIN, ECONNREFUSED
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, free, qsort
from libc.string cimport memcpy, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.uio cimport iovec
from posix.unistd cimport close

from horizon_drivers.native.sys_socket cimport (
    sockaddr, socklen_t, mmsghdr, socket, connect, setsockopt, recvmmsg, sendmmsg,
    AF_INET, AF_INET6, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_CLOEXEC, SOL_SOCKET, MSG_DONTWAIT,
    HORIZON_MAX_MMSG,
)
from horizon_drivers.native.sys_poll cimport pollfd, poll, POLLIN, POLLOUT
from horizon_drivers.native.netinet_in cimport sockaddr_in6
from horizon_drivers.native._linux_address cimport sockaddr_from_address, raise_errno

import socket as _socket

from horizon_core.addresses import as_socket_address

__all__ = ["MAX_WINDOW", "run_udp_load"]

#: The largest window: one recvmmsg/sendmmsg vector.
MAX_WINDOW = HORIZON_MAX_MMSG


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
                 double loss_timeout=0.05, int max_samples=2000000, int socket_buffer=4194304):
    """Drive an echo server at ``target`` with ``window`` datagrams outstanding; return a dict.

    The dict holds ``sent``, ``received`` (in the measured interval after ``warmup``),
    ``total_sent``, ``total_received`` (warm-up included), ``lost``, ``timeouts``, ``recv_calls``,
    ``send_calls``, ``seconds`` (the measured interval), ``rate`` (replies per second in it) and, with ``sample_rtt``, ``rtt_ns`` percentiles (``min``, ``p50``,
    ``p90``, ``p99``, ``p999``, ``max``, ``mean``, ``samples``).

    Example:
        >>> from horizon_drivers.native._linux_loadgen import run_udp_load
        >>> result = run_udp_load("127.0.0.1:9", duration=0.05, warmup=0.0)  # doctest: +SKIP
    """
    cdef Params p
    cdef Result res
    cdef Ring ring
    cdef sockaddr_in6 name
    cdef socklen_t namelen = 0
    cdef int fd, family, rc = 0
    cdef unsigned int i
    cdef double secs
    if not 1 <= window <= HORIZON_MAX_MMSG:
        raise ValueError(f"window must be 1..{HORIZON_MAX_MMSG}, got {window}")
    if not 0 <= payload_size <= RECV_SLOT:
        raise ValueError(f"payload_size must be 0..{RECV_SLOT}, got {payload_size}")
    if not (duration > 0 and warmup >= 0 and loss_timeout > 0):
        raise ValueError("duration and loss_timeout must be > 0, warmup >= 0")
    if max_samples < 0:
        raise ValueError("max_samples must be >= 0")
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
        ring.sbuf = <unsigned char *>calloc(window, payload_size if payload_size > 0 else 1)
        ring.rbuf = <unsigned char *>calloc(window, RECV_SLOT)
        ring.smsgs = <mmsghdr *>calloc(window, sizeof(mmsghdr))
        ring.rmsgs = <mmsghdr *>calloc(window, sizeof(mmsghdr))
        ring.siov = <iovec *>calloc(window, sizeof(iovec))
        ring.riov = <iovec *>calloc(window, sizeof(iovec))
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
        }
        if sample_rtt:
            result["rtt_ns"] = _percentiles(res.samples, res.nsamples)
        return result
    finally:
        close(fd)
        free(ring.sbuf)
        free(ring.rbuf)
        free(ring.smsgs)
        free(ring.rmsgs)
        free(ring.siov)
        free(ring.riov)
        free(res.samples)


cdef dict _percentiles(int64_t *samples, size_t n):
    cdef size_t i
    cdef double total = 0
    if n == 0:
        return {"samples": 0}
    with nogil:
        qsort(samples, n, sizeof(int64_t), _compare_i64)
        for i in range(n):
            total += samples[i]
    return {
        "samples": int(n),
        "min": int(samples[0]),
        "p50": int(samples[<size_t>(0.5 * (n - 1))]),
        "p90": int(samples[<size_t>(0.9 * (n - 1))]),
        "p99": int(samples[<size_t>(0.99 * (n - 1))]),
        "p999": int(samples[<size_t>(0.999 * (n - 1))]),
        "max": int(samples[n - 1]),
        "mean": total / n,
    }
