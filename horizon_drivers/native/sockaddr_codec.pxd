# Header-only conversions between kernel sockaddrs and horizon_core's 32-byte packed address
# form (horizon_core/addresses.py documents the layout). The packed form mirrors sockaddr byte
# order, so port, flow info and address bytes are copied straight across; only the family tag
# is translated and scope_id is written little-endian explicitly.

from libc.string cimport memcpy, memset, memcmp
from libc.stdint cimport uint32_t

from horizon_drivers.native.linux.sys_socket cimport sockaddr, socklen_t, AF_INET, AF_INET6
from horizon_drivers.native.linux.netinet_in cimport sockaddr_in, sockaddr_in6, htonl

cdef enum:
    PACKED_SIZE = 32
    TAG_NONE = 0
    TAG_V4 = 4
    TAG_V6 = 6

# 20-bit flow label mask, as the core validates it; the traffic-class bits above it are dropped.
cdef extern from *:
    """
    static const unsigned char HORIZON_V4_MAPPED_PREFIX[12] =
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    """
    const unsigned char HORIZON_V4_MAPPED_PREFIX[12]


cdef inline void pack_sockaddr(const sockaddr *sa, socklen_t salen,
                               unsigned char *out) noexcept nogil:
    """Write the packed form of ``sa`` (tag 0 when it is not an IPv4/IPv6 address)."""
    cdef const sockaddr_in *sin
    cdef const sockaddr_in6 *sin6
    cdef uint32_t scope, flow
    memset(out, 0, PACKED_SIZE)
    if salen >= sizeof(sockaddr_in) and sa.sa_family == AF_INET:
        sin = <const sockaddr_in *>sa
        out[0] = TAG_V4
        memcpy(out + 2, &sin.sin_port, 2)
        memcpy(out + 8, &sin.sin_addr, 4)
    elif salen >= sizeof(sockaddr_in6) and sa.sa_family == AF_INET6:
        sin6 = <const sockaddr_in6 *>sa
        out[0] = TAG_V6
        memcpy(out + 2, &sin6.sin6_port, 2)
        flow = sin6.sin6_flowinfo & htonl(0x000FFFFF)
        memcpy(out + 4, &flow, 4)
        memcpy(out + 8, &sin6.sin6_addr, 16)
        scope = sin6.sin6_scope_id
        out[24] = scope & 0xFF
        out[25] = (scope >> 8) & 0xFF
        out[26] = (scope >> 16) & 0xFF
        out[27] = (scope >> 24) & 0xFF


cdef inline int unpack_sockaddr(const unsigned char *packed, int family,
                                sockaddr_in6 *out, socklen_t *outlen) noexcept nogil:
    """Fill ``out`` (room for either family) from a packed address, for a socket of ``family``.

    Returns 0 when an address was written, 1 for tag 0 (no address: use the connected peer) and
    -1 for a tag that is neither 0, 4 nor 6. An IPv4 address for an IPv6 socket becomes
    ``::ffff:a.b.c.d``; a v4-mapped IPv6 address for an IPv4 socket becomes plain IPv4; any other
    mismatch is passed through so the kernel reports it (EAFNOSUPPORT).
    """
    cdef sockaddr_in *sin
    cdef unsigned char tag = packed[0]
    cdef uint32_t scope
    if tag == TAG_NONE:
        outlen[0] = 0
        return 1
    if tag != TAG_V4 and tag != TAG_V6:
        return -1
    memset(out, 0, sizeof(sockaddr_in6))
    if tag == TAG_V6 and family == AF_INET and memcmp(packed + 8, HORIZON_V4_MAPPED_PREFIX, 12) == 0:
        sin = <sockaddr_in *>out
        sin.sin_family = AF_INET
        memcpy(&sin.sin_port, packed + 2, 2)
        memcpy(&sin.sin_addr, packed + 20, 4)
        outlen[0] = sizeof(sockaddr_in)
        return 0
    if tag == TAG_V4 and family != AF_INET6:
        sin = <sockaddr_in *>out
        sin.sin_family = AF_INET
        memcpy(&sin.sin_port, packed + 2, 2)
        memcpy(&sin.sin_addr, packed + 8, 4)
        outlen[0] = sizeof(sockaddr_in)
        return 0
    out.sin6_family = AF_INET6
    memcpy(&out.sin6_port, packed + 2, 2)
    if tag == TAG_V4:
        memcpy(&out.sin6_addr, HORIZON_V4_MAPPED_PREFIX, 12)
        memcpy((<unsigned char *>&out.sin6_addr) + 12, packed + 8, 4)
    else:
        memcpy(&out.sin6_flowinfo, packed + 4, 4)
        memcpy(&out.sin6_addr, packed + 8, 16)
        scope = (<uint32_t>packed[24]) | (<uint32_t>packed[25] << 8) \
            | (<uint32_t>packed[26] << 16) | (<uint32_t>packed[27] << 24)
        out.sin6_scope_id = scope
    outlen[0] = sizeof(sockaddr_in6)
    return 0
