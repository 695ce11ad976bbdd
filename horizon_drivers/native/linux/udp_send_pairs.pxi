# UdpSocket.send_batch for (payload, address) pairs (included by native/linux/udp.pyx after the
# class): the path that takes any Python buffers and addresses, where a Batch needs no decoding.


cdef Py_ssize_t _send_pairs(UdpSocket sock, int fd, object datagrams, Py_ssize_t start) except -1:
    """Send ``(payload, address)`` pairs ``start..``: one Py_buffer and sockaddr per datagram."""
    cdef Py_ssize_t total, requested
    cdef unsigned int vlen, i, acquired = 0
    cdef msghdr *hdr
    items = datagrams if isinstance(datagrams, (list, tuple)) else list(datagrams)
    total = len(items)
    vlen = sock._reserve_span(start, total)
    if vlen == 0:
        return 0
    requested = total - start
    if sock._zc is not None:
        sock._zc.off_pool = True  # caller-owned buffers: sent by copying (see udp_zerocopy.pxi)
    try:
        for i in range(vlen):
            payload, address = items[start + i]
            PyObject_GetBuffer(payload, &sock._sbufs[i], PyBUF_SIMPLE)
            acquired += 1
            sock._siov[i].iov_base = sock._sbufs[i].buf
            sock._siov[i].iov_len = sock._sbufs[i].len
            hdr = &sock._smsgs[i].msg_hdr
            hdr.msg_flags = 0
            hdr.msg_control = NULL
            hdr.msg_controllen = 0
            if address is None:
                hdr.msg_name = NULL
                hdr.msg_namelen = 0
                continue
            try:
                sockaddr_from_address(address, sock._family, &sock._snames[i],
                                      &hdr.msg_namelen)
            except OSError:  # the other family: send what precedes it, as with a Batch
                if i == 0:
                    raise
                vlen = i
                break
            hdr.msg_name = &sock._snames[i]
        return sock._send_built(fd, vlen, requested)
    finally:
        if sock._zc is not None:
            sock._zc.off_pool = False
        for i in range(acquired):
            PyBuffer_Release(&sock._sbufs[i])
