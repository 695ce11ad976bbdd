# cython: embedsignature.format=clinic
"""The load generator's C core: UDP and TCP echo load on descriptors it is lent, GIL released.

This module opens no socket and closes none: :mod:`horizon_drivers.bench.loadgen` opens them
through :mod:`horizon_drivers.opening` (NetConfig options applied and reported, like every
driver's sockets), passes their descriptors here for the duration of one call, and closes them
afterwards. Round-trip samples come back raw, sorted, as native int64 bytes; percentiles are
:mod:`horizon_drivers.bench.latency`'s, the one place a quantile is ranked.

UDP (``udp_load.pxi``) keeps up to ``window`` datagrams outstanding against an echo server:
replies are collected with recvmmsg and, once min(64, window / 2) of them are in, replaced by new
datagrams in one burst, so the server always has work queued and the generator pays one send
call per burst rather than per reply. On a 2-core machine a generator built like the server it
measures is often the limit itself, which is why it sends its bursts as GSO messages (below).

* Datagrams carry a sequence number (bytes 0-7) and, when RTT sampling is on, the send time in
  CLOCK_MONOTONIC nanoseconds (bytes 8-15); the server must echo them unchanged.
* Loss is handled, not hung on: when no reply arrives within ``loss_timeout`` seconds, whatever is
  outstanding is counted lost and the window is refilled.
* ``busy_wait=True`` spins on a nonblocking recvmmsg instead of sleeping in poll(): the client's
  own wake-up then drops out of round-trip measurements (use it for window-1 RTT runs).
* ``gso=True`` (the default) sends each burst as UDP GSO messages: up to 64 datagrams in one
  buffer the kernel cuts into ordinary datagrams, so one trip through the send path carries many.
  The server receives exactly what it would otherwise (separate datagrams of ``payload_size``
  bytes), while the generator's own per-datagram cost drops well below any server's. A kernel or
  route without UDP GSO makes the run fall back to plain sendmmsg (``result["gso"]`` says which).

TCP (``tcp_load.pxi``) has three modes, each on nonblocking sockets in one thread:

* :func:`tcp_throughput` streams ``size``-byte writes on every connection while reading the echo
  back (poll over all of them; the echo is discarded in the kernel with MSG_TRUNC, never copied
  out), counts the bytes echoed in the measured interval, then stops writing and drains until
  every byte sent has come back (bounded by ``timeout``);
* :func:`tcp_rtt` ping-pongs ``size``-byte messages on one connection and records each round
  trip into a preallocated array;
* :func:`tcp_pipelined` keeps ``pipeline`` ``size``-byte messages in flight on one connection,
  counts the echo by message and times each message by its sequence number (messages per
  second, and each message's round trip under that load).

Every loop is bounded: by the measured ``duration`` and by a hard deadline ``timeout`` seconds past
it; a server that stops answering for ``timeout`` seconds is an ``OSError(ETIMEDOUT)``, a refused
connect or a reset is an ``OSError`` with the kernel's errno, a server that closes the connection
is ``OSError(ECONNRESET)``.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport errno, EINTR, EAGAIN, ECONNREFUSED, ECONNRESET, ETIMEDOUT, EBADMSG
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, malloc, free, qsort
from libc.string cimport memcpy, memset, memcmp
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.uio cimport iovec

from horizon_drivers.native.linux.sys_socket cimport (
    mmsghdr, socklen_t, getsockopt, recvmmsg, sendmmsg, send, recv, SOL_SOCKET, SO_ERROR,
    MSG_DONTWAIT, MSG_NOSIGNAL, MSG_TRUNC, HORIZON_MAX_MMSG,
)
from horizon_drivers.native.linux.sys_poll cimport pollfd, poll, POLLIN, POLLOUT, POLLERR, POLLHUP
from horizon_drivers.native.linux.udp_gso cimport (
    GSO_MAX_SEGMENTS, GSO_MAX_BYTES, GSO_CONTROL, attach_segment_size, gso_refused,
)
from horizon_drivers.native.linux.address cimport raise_errno

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_PIPELINE",
    "MAX_TCP_SIZE",
    "MAX_WINDOW",
    "tcp_pipelined",
    "tcp_rtt",
    "tcp_throughput",
    "udp_load",
]

#: The largest window: one recvmmsg/sendmmsg vector.
MAX_WINDOW = HORIZON_MAX_MMSG
#: The most connections :func:`tcp_throughput` drives.
MAX_CONNECTIONS = 1024
#: The largest TCP write (throughput) or message (round trip), in bytes.
MAX_TCP_SIZE = 1 << 24
#: The most messages :func:`tcp_pipelined` keeps in flight.
MAX_PIPELINE = 16384


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int _compare_i64(const void *a, const void *b) noexcept nogil:
    cdef int64_t x = (<const int64_t *>a)[0]
    cdef int64_t y = (<const int64_t *>b)[0]
    return (x > y) - (x < y)


cdef bytes _sorted_samples(int64_t *samples, size_t n):
    """Sort ``samples`` in place (GIL released) and copy them out as one bytes object."""
    if n == 0:
        return b""
    with nogil:
        qsort(samples, n, sizeof(int64_t), _compare_i64)
    return PyBytes_FromStringAndSize(<char *>samples, <Py_ssize_t>(n * sizeof(int64_t)))


include "udp_load.pxi"
include "tcp_load.pxi"
