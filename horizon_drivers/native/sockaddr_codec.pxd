# Header-only conversions between kernel sockaddrs and horizon_core's 32-byte packed address
# form (horizon_core/addresses.py documents the layout), shared by the Linux and Windows drivers.
#
# Both platforms lay sockaddr_in and sockaddr_in6 out alike: family u16 (host order) at 0, port
# at 2; the IPv4 address at 4; the IPv6 flow info at 4, address at 8 and scope id (host order)
# at 24; 16 and 28 bytes long. So this works on raw bytes at those offsets and needs only the
# AF_INET/AF_INET6 values from the platform's headers. The packed form mirrors sockaddr byte
# order, so port, flow info and address bytes are copied straight across; only the family tag
# is translated and scope_id is written little-endian explicitly.

from libc.string cimport memcpy, memset, memcmp
from libc.stdint cimport uint16_t, uint32_t

# <winsock2.h> comes before anything that includes <windows.h> (see winbase.pxd); on Linux the
# socket headers. Either way only the two family values are read from them.
cdef extern from *:
    """
    #ifdef _WIN32
    #include <winsock2.h>
    #include <ws2tcpip.h>
    #else
    #include <sys/socket.h>
    #include <netinet/in.h>
    #endif
    static const unsigned char HORIZON_V4_MAPPED_PREFIX[12] =
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    """
    const unsigned char HORIZON_V4_MAPPED_PREFIX[12]
    int CODEC_AF_INET "AF_INET"
    int CODEC_AF_INET6 "AF_INET6"

cdef enum:
    PACKED_SIZE = 32
    TAG_NONE = 0
    TAG_V4 = 4
    TAG_V6 = 6
    SOCKADDR_IN_SIZE = 16
    SOCKADDR_IN6_SIZE = 28      # the room unpack_sockaddr needs: a sockaddr_in6 or more
    # What unpack_sockaddr returns when it wrote no address (a positive return is a length).
    SOCKADDR_NONE = 0           # tag 0: no address; send to the connected peer
    SOCKADDR_BAD_TAG = -1       # a tag that is neither 0, 4 nor 6
    SOCKADDR_WRONG_FAMILY = -2  # an IPv6 address (not v4-mapped) for an IPv4 socket


cdef inline void pack_sockaddr(const void *sa, Py_ssize_t salen,
                               unsigned char *out) noexcept nogil:
    """Write the packed form of ``sa`` (tag 0 when it is not an IPv4/IPv6 address).

    The flow label keeps its 20 bits, as the core validates it; the traffic class above is dropped.
    """
    cdef const unsigned char *name = <const unsigned char *>sa
    cdef uint16_t family
    cdef uint32_t scope
    memset(out, 0, PACKED_SIZE)
    if salen < 2:
        return
    memcpy(&family, name, 2)
    if salen >= SOCKADDR_IN_SIZE and family == CODEC_AF_INET:
        out[0] = TAG_V4
        memcpy(out + 2, name + 2, 2)
        memcpy(out + 8, name + 4, 4)
    elif salen >= SOCKADDR_IN6_SIZE and family == CODEC_AF_INET6:
        out[0] = TAG_V6
        memcpy(out + 2, name + 2, 2)
        memcpy(out + 4, name + 4, 4)         # network order: the label is the low 20 bits
        out[4] = 0
        out[5] &= 0x0F
        memcpy(out + 8, name + 8, 16)
        memcpy(&scope, name + 24, 4)
        out[24] = scope & 0xFF
        out[25] = (scope >> 8) & 0xFF
        out[26] = (scope >> 16) & 0xFF
        out[27] = (scope >> 24) & 0xFF


cdef inline int _write_sockaddr_in(unsigned char *name, const unsigned char *port,
                                   const unsigned char *addr4) noexcept nogil:
    """An AF_INET sockaddr of a network-order port and IPv4 address; its length."""
    cdef uint16_t fam = CODEC_AF_INET
    memset(name, 0, SOCKADDR_IN_SIZE)
    memcpy(name, &fam, 2)
    memcpy(name + 2, port, 2)
    memcpy(name + 4, addr4, 4)
    return SOCKADDR_IN_SIZE


cdef inline int unpack_sockaddr(const unsigned char *packed, int family,
                                void *out) noexcept nogil:
    """Fill ``out`` (SOCKADDR_IN6_SIZE bytes or more) from a packed address, for a socket of
    ``family``; return the sockaddr's length, or SOCKADDR_NONE / BAD_TAG / WRONG_FAMILY.

    An IPv4 address for an IPv6 socket becomes ``::ffff:a.b.c.d``; a v4-mapped IPv6 address for
    an IPv4 socket becomes plain IPv4; any other IPv6 address for an IPv4 socket is
    SOCKADDR_WRONG_FAMILY, for the caller to raise as EAFNOSUPPORT before anything is sent.
    """
    cdef unsigned char *name = <unsigned char *>out
    cdef unsigned char tag = packed[0]
    cdef uint16_t fam
    cdef uint32_t scope
    if tag == TAG_NONE:
        return SOCKADDR_NONE
    if tag != TAG_V4 and tag != TAG_V6:
        return SOCKADDR_BAD_TAG
    if tag == TAG_V6 and family == CODEC_AF_INET:
        if memcmp(packed + 8, HORIZON_V4_MAPPED_PREFIX, 12) != 0:
            return SOCKADDR_WRONG_FAMILY
        return _write_sockaddr_in(name, packed + 2, packed + 20)
    if tag == TAG_V4 and family != CODEC_AF_INET6:
        return _write_sockaddr_in(name, packed + 2, packed + 8)
    memset(name, 0, SOCKADDR_IN6_SIZE)
    fam = CODEC_AF_INET6
    memcpy(name, &fam, 2)
    memcpy(name + 2, packed + 2, 2)
    if tag == TAG_V4:
        memcpy(name + 8, HORIZON_V4_MAPPED_PREFIX, 12)
        memcpy(name + 20, packed + 8, 4)
    else:
        memcpy(name + 4, packed + 4, 4)
        name[4] = 0                          # the 20-bit flow label, as on receive
        name[5] &= 0x0F
        memcpy(name + 8, packed + 8, 16)
        scope = (<uint32_t>packed[24]) | (<uint32_t>packed[25] << 8) \
            | (<uint32_t>packed[26] << 16) | (<uint32_t>packed[27] << 24)
        memcpy(name + 24, &scope, 4)
    return SOCKADDR_IN6_SIZE
