# cython: embedsignature.format=clinic
"""The io_uring driver: one ring, multishot receives into provided buffers for datagrams,
readiness from completions.

Rules this module obeys:

* No liburing: the ring is set up, mapped and driven through the kernel interface directly
  (``uring_abi.h`` says why). Where io_uring cannot run (no kernel support, EPERM from
  ``kernel.io_uring_disabled`` or a seccomp filter, a kernel before 6.0), importing
  ``horizon_drivers.uring`` raises ImportError with the reason, and the registry lists the
  driver as unavailable with it.
* One ring per process (the hub), as the iocp driver has one completion port: sockets are made
  before and apart from any Runtime in the contract, so their requests need a ring that does
  not belong to one Runtime. Every ring access holds the GIL; waits release it.
* A UDP socket keeps one multishot recvmsg in flight on its own provided-buffer ring, whose
  buffers are the slots of its receive BufferPool: POSTED while the kernel owns them, FILLED
  with length, true length (MSG_TRUNC), GRO stride and peer address on completion, copied into
  the caller's batch by ``recv_batch`` and FREE again, then back in the ring (POSTED).
  ENOBUFS (every buffer queued) and any other end of the multishot request re-arm it as soon
  as a buffer is free; the datagrams wait in the socket's queue meanwhile.
* Sends use the epoll driver's batch path (sendmmsg with UDP GSO runs) on the same socket:
  a direct sendmmsg takes one syscall for a whole batch, as a ring submission would, with no
  completion to reap. A TCP listener keeps a multishot accept in flight.
* A connected TCP stream receives into the caller's buffer, not into provided buffers: it keeps
  a multishot poll in flight for readiness, and ``recv_into`` is the epoll driver's nonblocking
  recv. A stream's bytes have no boundaries to keep, so a buffer ring only added a copy out of
  its slots and slot-sized kernel receives; measured on 8 bulk streams that cost about a quarter
  of the server's throughput against the epoll driver (tcp_stream.pxi has the numbers). The
  stream's readiness is level-triggered: a read that proves the socket empty clears it. Stream
  sends, connect and shutdown are the epoll driver's calls too.
* Closing a socket cancels its request and waits (bounded) for the final completion, then
  returns every slot to FREE. Closing the runtime cancels its polls; sockets stay open.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_Clear
from cpython.long cimport PyLong_AsSsize_t
from cpython.object cimport Py_SIZE
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_SET_ITEM
from cpython cimport array
from libc.errno cimport (
    errno, EINTR, EAGAIN, EBUSY, ETIME, EINVAL, ENOBUFS, EBADF, ENOTSOCK, EOPNOTSUPP, ENOSYS, EPERM,
    ECONNABORTED, EPROTO,
)
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport calloc, free
from posix.stdlib cimport posix_memalign
from libc.string cimport memcpy, memset
from libc.math cimport ceil
from posix.fcntl cimport fcntl, F_DUPFD_CLOEXEC
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED, MAP_POPULATE
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close, usleep

from horizon_drivers.native.uring.uring_abi cimport *
from horizon_drivers.native.linux.sys_socket cimport (
    msghdr, cmsghdr, socklen_t, getsockopt, CMSG_FIRSTHDR, CMSG_NXTHDR, CMSG_DATA, CMSG_LEN,
    SOL_SOCKET, SO_RXQ_OVFL, MSG_TRUNC, SOCK_NONBLOCK, SOCK_CLOEXEC, setsockopt,
)
from horizon_drivers.native.linux.netinet_in cimport SOL_UDP, UDP_GRO
from horizon_drivers.native.linux.address cimport raise_errno
from horizon_drivers.native.linux.sys_eventfd cimport (
    eventfd, eventfd_read, eventfd_write, eventfd_t, EFD_CLOEXEC, EFD_NONBLOCK,
)
from horizon_drivers.native.linux.batch_states cimport begin_receive, commit_receive
from horizon_drivers.native.sockaddr_codec cimport pack_sockaddr, PACKED_SIZE

import os as _os
import socket as _socket
from collections import deque as _deque

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import TRANSITIONS, Batch, BufferPool, SlotOp, SlotState, check_batch
from horizon_core.config import resolve_config
from horizon_core.errors import SocketClosedError
from horizon_core.events import (
    MAX_POLL_TIMEOUT, Event, Readiness, check_interest, check_timeout,
)
from horizon_core.slab import Slab
from horizon_drivers.native.linux.tcp import TcpListener as _TxTcpListener
from horizon_drivers.native.linux.tcp import TcpStream as _TxTcpStream
from horizon_drivers.native.linux.udp import UdpSocket as _TxUdpSocket
from horizon_drivers.opening import configure_accepted as _configure_accepted
# Sockets open without the native driver's features: zero-copy completions are read by the
# epoll runtime on EPOLLERR, which this driver's completion runtime does not watch, so the
# option report says SO_ZEROCOPY is not supported here rather than holding buffers forever.
from horizon_drivers import opening as _opening
from horizon_drivers.run_loop import RunLoop

__all__ = [
    "ACCEPT_QUEUE", "CLOSE_SETTLE_SECONDS", "DEFAULT_RING_PAYLOAD", "DEFAULT_RING_SLOTS", "Runtime",
    "TcpListener", "TcpStream", "UdpSocket", "USED_FEATURES",
    "probe", "ring_stats", "unavailable_reason",
]  # fmt: skip

cdef enum:
    BUCKETS = 12


cdef extern from "<errno.h>":
    int ECANCELED


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef extern from "Python.h":
    void Py_SET_SIZE(object, Py_ssize_t)


cdef inline int _bucket(uint64_t n) noexcept nogil:
    """Histogram bucket of a batch of n >= 1 datagrams: floor(log2 n), capped."""
    cdef int b = 63 - __builtin_clzll(n)
    return b if b < BUCKETS - 1 else BUCKETS - 1


include "../pool_view.pxi"
include "../linux/udp_recv_control.pxi"
include "ring.pxi"
include "buffer_ring.pxi"
include "batch_fast.pxi"
include "udp.pxi"
include "tcp_stream.pxi"
include "tcp.pxi"
include "runtime.pxi"
include "probe.pxi"
