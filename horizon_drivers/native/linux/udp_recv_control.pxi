# Receive control-message parsing for native/linux/udp.pyx (included there): the UDP_GRO stride
# and the SO_RXQ_OVFL drop counter the kernel attaches to a datagram received by recvmmsg.

cdef enum:
    # Room for SO_RXQ_OVFL (u32) and UDP_GRO (int) control messages per received datagram.
    RECV_CONTROL = 64


cdef unsigned int read_recv_control(msghdr *hdr, unsigned int mlen, unsigned int stored,
                                    unsigned int *segment_size, int64_t *drops) noexcept nogil:
    """Read ``hdr``'s control messages; return how many datagrams beyond one its buffer holds.

    A GRO stride shorter than the datagram's true length ``mlen`` goes to ``segment_size`` (the
    buffer of ``stored`` bytes carries ceil(stored / stride) datagrams); the SO_RXQ_OVFL counter
    goes to ``drops`` unless it is NULL.
    """
    cdef cmsghdr *cm = CMSG_FIRSTHDR(hdr)
    cdef int gro_size
    cdef uint32_t counter
    cdef unsigned int extra = 0
    while cm != NULL:
        if (cm.cmsg_level == SOL_UDP and cm.cmsg_type == UDP_GRO
                and cm.cmsg_len >= CMSG_LEN(sizeof(int))):
            memcpy(&gro_size, CMSG_DATA(cm), sizeof(int))
            if gro_size > 0 and <unsigned int>gro_size < mlen:
                segment_size[0] = gro_size
                extra = (stored + gro_size - 1) // gro_size - 1
        elif (cm.cmsg_level == SOL_SOCKET and cm.cmsg_type == SO_RXQ_OVFL
                and cm.cmsg_len >= CMSG_LEN(sizeof(uint32_t)) and drops != NULL):
            memcpy(&counter, CMSG_DATA(cm), sizeof(uint32_t))
            drops[0] = counter
        cm = CMSG_NXTHDR(hdr, cm)
    return extra
