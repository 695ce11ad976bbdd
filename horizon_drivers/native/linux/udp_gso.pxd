# Header-only UDP GSO pieces shared by the batch socket and the load generator: the kernel's
# limits on one GSO send, the control message that makes a send GSO, and the errors that mean
# "no GSO on this path" rather than a bad datagram.

from libc.errno cimport EINVAL, EIO, EMSGSIZE, EOPNOTSUPP, ENOPROTOOPT
from libc.stdint cimport uint16_t
from libc.string cimport memcpy

from horizon_drivers.native.linux.sys_socket cimport (
    msghdr, cmsghdr, CMSG_FIRSTHDR, CMSG_DATA, CMSG_SPACE, CMSG_LEN,
)
from horizon_drivers.native.linux.netinet_in cimport SOL_UDP, UDP_SEGMENT

cdef enum:
    # One GSO send carries at most this many segments (UDP_MAX_SEGMENTS: 64 before Linux 6.9,
    # more since) and this many bytes (a UDP datagram's largest payload over IPv4).
    GSO_MAX_SEGMENTS = 64
    GSO_MAX_BYTES = 65507
    # Room for one UDP_SEGMENT (u16) control message.
    GSO_CONTROL = 32


cdef inline void attach_segment_size(msghdr *hdr, unsigned char *control,
                                     unsigned int size) noexcept nogil:
    """Make ``hdr`` a UDP GSO send of ``size``-byte segments; ``control`` has GSO_CONTROL bytes."""
    cdef cmsghdr *cm
    cdef uint16_t size16 = <uint16_t>size
    hdr.msg_control = control
    hdr.msg_controllen = CMSG_SPACE(sizeof(uint16_t))
    cm = CMSG_FIRSTHDR(hdr)
    cm.cmsg_level = SOL_UDP
    cm.cmsg_type = UDP_SEGMENT
    cm.cmsg_len = CMSG_LEN(sizeof(uint16_t))
    memcpy(CMSG_DATA(cm), &size16, sizeof(uint16_t))


cdef inline bint gso_refused(int err) noexcept nogil:
    """True for what a GSO send answers when the path cannot carry it, where a plain send can.

    EIO (no checksum offload), EOPNOTSUPP and ENOPROTOOPT: no GSO on this path at all.
    EMSGSIZE (EINVAL on older kernels): a segment larger than the path MTU; GSO never fragments.
    """
    return (err == EMSGSIZE or err == EINVAL or err == EIO or err == EOPNOTSUPP
            or err == ENOPROTOOPT)
