# cython: embedsignature.format=clinic
"""Conversions between kernel socket addresses and horizon_core's SocketAddress.

Everything goes through the core's 32-byte packed form (see ``horizon_core.addresses``), so the
C layout rules live in one header (``sockaddr_codec.pxd``) and the Python value rules in the core.
Nothing here runs per datagram on the batch paths: those copy packed addresses in C.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.string cimport memcpy, memset
from libc.stdint cimport uint32_t

from horizon_drivers.native.linux.sys_socket cimport (
    sockaddr, socklen_t, getsockname, getpeername, AF_INET, AF_INET6,
)
from horizon_drivers.native.linux.netinet_in cimport sockaddr_in6
from horizon_drivers.native.sockaddr_codec cimport (
    pack_sockaddr, unpack_sockaddr, PACKED_SIZE, TAG_V4, TAG_V6, SOCKADDR_WRONG_FAMILY,
)
from libc.errno cimport errno

import os as _os

from horizon_core.addresses import SocketAddress, as_socket_address, wrong_family_error

__all__: list[str] = []  # C-level API (see the .pxd) and a test hook


cdef object address_from_sockaddr(const sockaddr *sa, socklen_t salen):
    """A SocketAddress for an AF_INET/AF_INET6 sockaddr, None for anything else."""
    cdef unsigned char packed[PACKED_SIZE]
    pack_sockaddr(sa, salen, packed)
    return SocketAddress.unpack_from(PyBytes_FromStringAndSize(<char *>packed, PACKED_SIZE), 0)


cdef int sockaddr_from_address(object address, int family, sockaddr_in6 *out,
                               socklen_t *outlen) except -1:
    """Fill ``out`` from anything ``as_socket_address`` accepts, for a socket of ``family``.

    An IPv6 address (not v4-mapped) for an IPv4 socket raises ``wrong_family_error``
    (EAFNOSUPPORT), as every driver does: the codec decides, not the kernel.
    """
    cdef unsigned char packed[PACKED_SIZE]
    cdef int rc
    cdef const unsigned char *raw
    cdef Py_ssize_t rawlen
    cdef uint32_t port, flow, scope
    addr = as_socket_address(address)
    host_bytes = addr.host.packed
    raw = host_bytes
    rawlen = len(host_bytes)
    port = addr.port
    flow = addr.flowinfo
    scope = addr.scope_id
    memset(packed, 0, PACKED_SIZE)
    packed[0] = TAG_V4 if rawlen == 4 else TAG_V6
    packed[2] = (port >> 8) & 0xFF
    packed[3] = port & 0xFF
    packed[4] = (flow >> 24) & 0xFF
    packed[5] = (flow >> 16) & 0xFF
    packed[6] = (flow >> 8) & 0xFF
    packed[7] = flow & 0xFF
    memcpy(packed + 8, raw, rawlen)
    packed[24] = scope & 0xFF
    packed[25] = (scope >> 8) & 0xFF
    packed[26] = (scope >> 16) & 0xFF
    packed[27] = (scope >> 24) & 0xFF
    rc = unpack_sockaddr(packed, family, out)
    if rc == SOCKADDR_WRONG_FAMILY:
        raise wrong_family_error(addr, 4)
    if rc <= 0:
        raise ValueError(f"cannot convert {address!r} to a socket address")
    outlen[0] = <socklen_t>rc
    return 0


cdef object local_address_of(int fd):
    return _name_of(fd, False)


cdef object peer_address_of(int fd):
    return _name_of(fd, True)


cdef object _name_of(int fd, bint peer):
    """getpeername or getsockname of ``fd`` as a SocketAddress."""
    cdef unsigned char storage[128]
    cdef socklen_t length = sizeof(storage)
    cdef int rc, err = 0
    with nogil:
        if peer:
            rc = getpeername(fd, <sockaddr *>storage, &length)
        else:
            rc = getsockname(fd, <sockaddr *>storage, &length)
        if rc != 0:
            err = errno
    if rc != 0:
        raise_errno(err, "getpeername" if peer else "getsockname")
    return address_from_sockaddr(<sockaddr *>storage, length)


# "context: strerror" messages by (errno, context): would-block is raised on every drained read,
# so its message is built once, not per raise.
cdef dict _messages = {}


cdef int raise_errno(int err, str context=None) except -1:
    """Raise the OSError subclass the stdlib would (BlockingIOError, ConnectionRefusedError...)."""
    key = (err, context)
    message = _messages.get(key)
    if message is None:
        message = _os.strerror(err)
        if context:
            message = f"{context}: {message}"
        if len(_messages) < 4096:  # contexts are a few literals; the bound is only a backstop
            _messages[key] = message
    raise OSError(err, message)


def _sockaddr_roundtrip(address, int family):
    """Test hook: ``address`` -> kernel sockaddr for a socket of ``family`` -> SocketAddress.

    Exercises both C conversions (and v4-mapping) without a socket. ``family`` is
    ``socket.AF_INET`` or ``socket.AF_INET6``.
    """
    cdef sockaddr_in6 storage
    cdef socklen_t length = 0
    if family != AF_INET and family != AF_INET6:
        raise ValueError(f"family must be AF_INET or AF_INET6, got {family}")
    sockaddr_from_address(address, family, &storage, &length)
    return address_from_sockaddr(<sockaddr *>&storage, length)
