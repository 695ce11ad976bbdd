# cython: embedsignature.format=clinic
"""The Windows driver: overlapped Winsock on one I/O completion port.

Rules this module obeys:

* One completion port per process (the *hub*): every socket of this driver is associated with
  it at creation, with ``SetFileCompletionNotificationModes(SKIP_COMPLETION_PORT_ON_SUCCESS |
  SKIP_SET_EVENT_ON_HANDLE)``, so an operation that finishes at once is handled inline and only
  operations that really waited come back through the port. Whoever harvests the port (a
  Runtime's ``poll_once``, or any socket call, with a zero wait) dispatches every completion to
  the socket that owns it; readiness is then computed from socket state, so no completion is
  lost whichever thread or runtime dequeued it.
* Completions are harvested in batches with ``GetQueuedCompletionStatusEx``, with the GIL
  released around the wait.
* A UDP socket keeps overlapped ``WSARecvFrom`` receives in flight into the slots of its own
  :class:`~horizon_core.buffers.BufferPool` (the *receive ring*): a posted receive is a POSTED
  slot (the kernel owns it), a completed one a FILLED slot queued for the reader. ``recv_batch``
  copies queued datagrams into the caller's batch (``begin_receive``/``commit_receive``) and
  re-posts their ring slots. Ring slots are 64 KiB by default, so the true length of every
  datagram is known and truncation into a smaller caller slot is flagged with it.
* ERROR_MORE_DATA (a datagram longer than a *ring* slot, possible only with a smaller
  ``ring_slot_size``) keeps the prefix and sets the truncated flag; Windows does not say how
  long the datagram was, so ``original_length`` is reported as ``ring_slot_size + 1`` (the
  least length consistent with truncation) and ``unknown_lengths`` counts such datagrams.
* Sends: UDP uses ``WSASendTo`` directly (nonblocking; would-block is ``BlockingIOError``). A
  TCP stream copies what it accepts into its send buffer and keeps one overlapped ``WSASend``
  in flight; ``send`` takes what fits (``BlockingIOError`` when the buffer is full). TCP
  receives are one overlapped ``WSARecv`` into the stream's receive buffer; connects use
  ``ConnectEx``, listeners keep ``AcceptEx`` operations posted.
* Closing cancels every operation in flight and waits (bounded) for their completions: each
  cancelled receive returns its ring slot to FREE, no slot stays POSTED, no memory the kernel
  may still write is freed. A stream closed with unread received bytes closes abortively
  (SO_LINGER 0, a reset), as a kernel does when its own receive queue is not empty.
* Unconnected UDP sockets turn SIO_UDP_CONNRESET off (ICMP errors from one peer must not fail
  a server's receives, as on Linux); ``connect`` turns it on, so refusals surface as
  ``ConnectionRefusedError`` on the next receive.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy, memmove, memset

from horizon_drivers.native.windows.winbase cimport (
    DWORD, ULONG, BOOL, HANDLE, ULONG_PTR, OVERLAPPED, OVERLAPPED_ENTRY,
    INVALID_HANDLE_VALUE, INFINITE, WAIT_TIMEOUT,
    ERROR_OPERATION_ABORTED, ERROR_MORE_DATA, ERROR_NETNAME_DELETED, ERROR_CONNECTION_REFUSED,
    ERROR_CONNECTION_ABORTED, ERROR_PORT_UNREACHABLE, ERROR_SEM_TIMEOUT,
    FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, FILE_SKIP_SET_EVENT_ON_HANDLE,
    CreateIoCompletionPort, GetQueuedCompletionStatusEx, PostQueuedCompletionStatus,
    SetFileCompletionNotificationModes, GetOverlappedResult, GetLastError,
)
from horizon_drivers.native.windows.winsock2 cimport (
    SOCKET, INVALID_SOCKET, sockaddr, WSABUF, linger,
    SOCK_STREAM, SOL_SOCKET, SO_LINGER, SD_SEND, IPPROTO_TCP,
    WSA_FLAG_OVERLAPPED, WSA_FLAG_NO_HANDLE_INHERIT, SIO_UDP_CONNRESET,
    WSAEWOULDBLOCK, WSA_IO_PENDING, WSAEMSGSIZE, WSAECONNRESET, WSAECONNREFUSED,
    WSAECONNABORTED, WSAENOTCONN, WSAETIMEDOUT, WSAENETRESET,
    WSAGetLastError, WSASocketW, closesocket, shutdown, connect, getsockname, getpeername,
    setsockopt, WSAIoctl, WSARecvFrom, WSASendTo, WSARecv, WSASend,
)
from horizon_drivers.native.sockaddr_codec cimport (
    pack_sockaddr, unpack_sockaddr, PACKED_SIZE, SOCKADDR_WRONG_FAMILY,
)
from horizon_drivers.native.windows.mswsock cimport (
    SO_UPDATE_ACCEPT_CONTEXT, SO_UPDATE_CONNECT_CONTEXT,
    horizon_load_extensions, horizon_acceptex, horizon_connectex,
)

import errno as _errno
import math as _math
import socket as _socket
import time as _time
import weakref as _weakref

from horizon_core.addresses import SocketAddress, as_socket_address, wrong_family_error
from horizon_core.buffers import Batch, BufferPool, check_batch, check_start
from horizon_core.config import resolve_config
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Readiness, check_interest, check_timeout
from horizon_core.slab import Slab
from horizon_core.stats import Stats
from horizon_drivers.run_loop import RunLoop

__all__ = [
    "DEFAULT_RING_SLOTS",
    "DEFAULT_RING_SLOT_SIZE",
    "Runtime",
    "STREAM_BUFFER",
    "TcpListener",
    "TcpStream",
    "UdpSocket",
    "harvest",
]


# Declared ahead: the hub dispatches completions to endpoints and wake-ups to runtimes.
cdef class _Endpoint
cdef class Runtime

include "errors.pxi"
include "hub.pxi"
include "addresses.pxi"
include "../pool_view.pxi"
include "endpoint.pxi"
include "udp.pxi"
include "tcp_stream.pxi"
include "tcp_listener.pxi"
include "runtime.pxi"

_init_hub()
