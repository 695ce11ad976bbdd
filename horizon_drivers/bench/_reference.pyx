# cython: embedsignature.format=clinic
"""The C reference echo servers ``horizon bench`` measures as peer ``c``: the machine's limit.

A server written the way a C programmer would write it for speed, so the bench table can say how
close each contender comes to what this machine can do at all. Like the load generator, this
module opens no socket it is lent and closes none of them: :mod:`horizon_drivers.bench.reference`
opens the UDP socket or TCP listener through :mod:`horizon_drivers.opening` (the same NetConfig as
every other server) and a stop descriptor, passes their descriptors in for one call, and closes
them afterwards. The only descriptors this module owns are its epoll instance and the TCP
connections it accepts; both are closed before the call returns, whatever happened.

* :func:`serve_udp` (``udp_reference.pxi``) echoes with recvmmsg/sendmmsg, ``batch`` datagrams
  per call, replying to each sender; with ``spin_us > 0`` it busy-polls ``epoll_wait(0)`` for
  that long after the socket runs dry before blocking (the native driver's
  ``NetConfig.spin_budget``, in C).
* :func:`serve_tcp` (``tcp_reference.pxi``) is a level-triggered epoll echo: nonblocking
  ``accept4`` until EAGAIN, TCP_NODELAY on every accepted socket, reads into one shared buffer
  and writes straight back; bytes the kernel does not take wait in a per-connection buffer while
  the connection waits for EPOLLOUT (and is not read meanwhile: backpressure).

Both run with the GIL released until ``stop_fd`` becomes readable (a pipe whose write end is
``signal.set_wakeup_fd``'s, or an eventfd), then return their counters as a dict. A failure of the
loop itself (epoll, a socket error that is not the peer's) is an OSError after cleanup, never a
crash; a peer's reset only closes that connection.
"""

from libc.errno cimport (
    errno, EINTR, EAGAIN, ECONNREFUSED, ECONNRESET, ECONNABORTED, EHOSTUNREACH, ENETUNREACH,
    EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM, EPIPE, EPROTO, EMSGSIZE,
)
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memset
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close
from posix.uio cimport iovec

from horizon_drivers.native.linux.sys_socket cimport (
    mmsghdr, sockaddr, sockaddr_storage, socklen_t, recvmmsg, sendmmsg, send, recv, accept4,
    setsockopt, MSG_DONTWAIT, MSG_NOSIGNAL, SOCK_NONBLOCK, SOCK_CLOEXEC,
)
from horizon_drivers.native.linux.sys_epoll cimport (
    epoll_event, epoll_create1, epoll_ctl, epoll_wait, EPOLL_CLOEXEC, EPOLLIN, EPOLLOUT,
    EPOLLERR, EPOLLHUP, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL,
)
from horizon_drivers.native.linux.netinet_in cimport IPPROTO_TCP
from horizon_drivers.native.linux.address cimport raise_errno

cdef extern from "<netinet/tcp.h>" nogil:
    enum:
        TCP_NODELAY

__all__ = ["MAX_BATCH", "MAX_SPIN_US", "TCP_BUFFER", "UDP_SLOT", "serve_tcp", "serve_udp"]

cdef enum:
    C_MAX_BATCH = 256
    C_MAX_SPIN_US = 1000000
    C_UDP_SLOT = 65536
    C_TCP_BUFFER = 262144

#: The most datagrams one recvmmsg/sendmmsg of :func:`serve_udp` moves.
MAX_BATCH = C_MAX_BATCH
#: The longest spin :func:`serve_udp` accepts, in microseconds.
MAX_SPIN_US = C_MAX_SPIN_US
#: Bytes each UDP receive slot holds: any datagram.
UDP_SLOT = C_UDP_SLOT
#: The shared TCP read buffer, in bytes.
TCP_BUFFER = C_TCP_BUFFER


cdef enum:
    STOP_TOKEN = 0          # epoll data of the stop descriptor
    LISTEN_TOKEN = 1        # epoll data of the TCP listener (connections carry their pointer)
    EVENTS = 256            # epoll events per wait
    CHECK_STOP_EVERY = 1024  # busy batches between two looks at the stop descriptor


cdef inline long long _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef int _epoll_with_stop(int stop_fd) noexcept nogil:
    """A new epoll instance watching ``stop_fd`` for input; -1 with errno on failure."""
    cdef epoll_event ev
    cdef int ep = epoll_create1(EPOLL_CLOEXEC)
    if ep < 0:
        return -1
    memset(&ev, 0, sizeof(ev))
    ev.events = EPOLLIN
    ev.data.u64 = STOP_TOKEN
    if epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) != 0:
        close(ep)
        return -1
    return ep


cdef int _stop_asked(int ep, epoll_event *events) noexcept nogil:
    """A look at the stop descriptor without blocking: 1 when it is readable, else 0."""
    cdef int n = epoll_wait(ep, events, EVENTS, 0)
    cdef int i
    for i in range(n):
        if events[i].data.u64 == STOP_TOKEN:
            return 1
    return 0


def _check_fds(*fds):
    for fd in fds:
        if fd < 0:
            raise ValueError(f"descriptors must be open ones, got {fd}")


include "udp_reference.pxi"
include "tcp_reference.pxi"
