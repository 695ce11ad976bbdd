# Zero-copy UDP GSO sends for native/linux/udp.pyx (included after the class). What a completion
# is and how it is read lives in zerocopy_ledger.pxi; here is only which sends go zero-copy and
# what they hold.
#
# * Only batch sends from a BufferPool: the slots sent are lent to the kernel
#   (``BufferPool.lend_to_kernel``) and released slots wait in POSTED until their completion, so
#   the pool never hands out memory the kernel may still read. ``(payload, address)`` pairs are
#   caller-owned buffers that nothing could keep unchanged: they are always copied.
# * sendmmsg takes one set of flags for every message, so a call goes zero-copy when its GSO
#   messages carry on average at least ``zerocopy_threshold`` bytes (a batch cut into runs
#   leaves a shorter last run, which should not turn zero-copy off for the rest); each message
#   sent takes one completion id.
# * Runs that will go zero-copy are cut at ZEROCOPY_MAX_PAGES pages (udp_gso_plan.pxi): a
#   zero-copy send pins one fragment per page and an skb holds at most MAX_SKB_FRAGS of them.

from libc.errno cimport ENOBUFS

from horizon_drivers.native.linux.descriptor cimport ZerocopyLedger
from horizon_drivers.native.linux.sys_errqueue cimport MSG_ZEROCOPY


cdef unsigned int plan_send_runs(UdpSocket sock, unsigned int vlen) noexcept:
    """Plan the GSO runs of the ``vlen`` messages built in ``_smsgs``; return how many.

    Runs are cut at ZEROCOPY_MAX_PAGES only when the call will likely go zero-copy (its
    messages, planned uncut, average ``zerocopy_threshold`` bytes): a copied send keeps runs as
    long as GSO allows, which measured twice as fast on loopback.
    """
    cdef unsigned int groups, i
    cdef size_t nbytes = 0
    groups = plan_gso_runs(sock._smsgs, sock._siov, vlen, sock._gso_limit, sock._gmsgs,
                           sock._gcounts, sock._gcontrol, 0)
    if sock._zc is None or sock._zc.off_pool or groups >= vlen:
        return groups
    for i in range(vlen):
        nbytes += sock._siov[i].iov_len
    if nbytes < <size_t>sock._zc.threshold * groups:
        return groups
    return plan_gso_runs(sock._smsgs, sock._siov, vlen, sock._gso_limit, sock._gmsgs,
                         sock._gcounts, sock._gcontrol, ZEROCOPY_MAX_PAGES)


cdef int send_groups_zerocopy(UdpSocket sock, int fd, unsigned int groups, int *err) except -2:
    """sendmmsg of the GSO messages built in ``_gmsgs``: zero-copy when they are large enough
    on average and lie in the batch's pool; the slots each message sent are lent until its
    completion. Returns messages sent, or -1 with ``*err`` as ``_call_sendmmsg`` does."""
    cdef ZerocopyLedger zc = sock._zc
    cdef _PoolView view = sock._send_view
    cdef unsigned int k, j
    cdef size_t nbytes = 0, offset, extent
    cdef msghdr *hdr
    cdef int n = 0
    cdef bint zero = not zc.off_pool and view is not None and groups > 0
    if zero:
        extent = <size_t>view.slot_count * <size_t>view.slot_size
        for k in range(groups):
            hdr = &sock._gmsgs[k].msg_hdr
            for j in range(hdr.msg_iovlen):
                offset = <size_t>(<unsigned char *>hdr.msg_iov[j].iov_base - view.memory)
                if <unsigned char *>hdr.msg_iov[j].iov_base < view.memory or offset >= extent:
                    zero = False  # not this pool's memory: nothing to lend
                nbytes += hdr.msg_iov[j].iov_len
        if nbytes < <size_t>zc.threshold * groups:
            zero = False
    if not zero:
        return sock._call_sendmmsg(fd, sock._gmsgs, groups, err)
    if zc.inject_enobufs > 0:
        zc.inject_enobufs -= 1
        n = -1
        err[0] = ENOBUFS
    else:
        while True:
            with nogil:
                n = sendmmsg(fd, sock._gmsgs, groups, MSG_DONTWAIT | MSG_ZEROCOPY)
                if n < 0:
                    err[0] = errno
            if n >= 0 or err[0] != EINTR:
                break
            PyErr_CheckSignals()
        sock._send_calls += 1
    if n < 0:
        if err[0] != ENOBUFS:
            return n
        # Option memory is spent on notifications in flight: read them (that frees it) and
        # send this batch by copying.
        zc.fallbacks += 1
        zc.drain(fd)
        return sock._call_sendmmsg(fd, sock._gmsgs, groups, err)
    if <unsigned int>n > groups:
        n = groups  # never trust a count beyond what we passed
    for k in range(<unsigned int>n):
        hdr = &sock._gmsgs[k].msg_hdr
        slots = [
            <Py_ssize_t>((<unsigned char *>hdr.msg_iov[j].iov_base - view.memory) // view.slot_size)
            for j in range(hdr.msg_iovlen)
        ]
        zc.record_loan(view.pool, slots)
    return n
