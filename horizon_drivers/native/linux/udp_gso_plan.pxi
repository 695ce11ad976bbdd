# GSO send-run planning for native/linux/udp.pyx (included there): which consecutive plain
# sendmmsg messages one UDP GSO message can carry, and the GSO messages built over them.


cdef enum:
    # A zero-copy send pins each page of its payload as one fragment of one skb, and an skb has
    # at most MAX_SKB_FRAGS (17 by default) of them: a longer run fails with EMSGSIZE. Measured
    # on Linux 6.18 with 1400-, 1000- and 600-byte datagrams in 2 KiB slots: iovecs touching 17
    # pages in all (counted per iovec: pages are not shared between iovecs) went, 18 failed.
    # Runs that will go zero-copy are cut at 16, one to spare.
    ZEROCOPY_MAX_PAGES = 16
    _PAGE_SHIFT = 12


cdef inline unsigned int _pages(iovec *v) noexcept nogil:
    """How many 4 KiB pages ``v`` touches (0 for an empty iovec)."""
    cdef size_t first = <size_t>v.iov_base
    if v.iov_len == 0:
        return 0
    return <unsigned int>(((first + v.iov_len - 1) >> _PAGE_SHIFT) - (first >> _PAGE_SHIFT) + 1)


cdef unsigned int plan_gso_runs(mmsghdr *msgs, iovec *iov, unsigned int vlen, unsigned int limit,
                                mmsghdr *groups, unsigned int *counts,
                                unsigned char *control, unsigned int max_pages) noexcept nogil:
    """Build ``groups`` from runs of ``msgs[:vlen]`` that one GSO send can carry; return how many.

    ``groups[k]`` sends ``counts[k]`` datagrams whose iovecs are consecutive in ``iov``: a run is
    one peer, datagrams of one length up to ``limit`` (the last may be shorter), no control of
    their own; ``control`` has GSO_CONTROL bytes per group for its segment size. ``max_pages``
    (0: no cap) caps the pages a run touches, for runs that may be sent zero-copy.
    """
    cdef unsigned int i = 0, j, k = 0, size, last, most, pages
    cdef msghdr *first
    cdef msghdr *other
    cdef msghdr *group
    while i < vlen:
        first = &msgs[i].msg_hdr
        size = <unsigned int>iov[i].iov_len
        j = i + 1
        # A message with its own control (a GRO buffer re-segmented) goes alone, and GSO
        # has no segment size of 0.
        if 0 < size <= limit and first.msg_control == NULL:
            most = GSO_MAX_BYTES // size
            if most > GSO_MAX_SEGMENTS:
                most = GSO_MAX_SEGMENTS
            pages = _pages(&iov[i])
            while j < vlen and j - i < most:
                other = &msgs[j].msg_hdr
                last = <unsigned int>iov[j].iov_len
                if max_pages:
                    pages += _pages(&iov[j])
                    if pages > max_pages:
                        break
                if (last == 0 or last > size or other.msg_control != NULL
                        or other.msg_namelen != first.msg_namelen
                        or (first.msg_namelen != 0
                            and memcmp(other.msg_name, first.msg_name, first.msg_namelen) != 0)):
                    break
                j += 1
                if last < size:
                    break  # only the last segment of a GSO send may be shorter
        group = &groups[k].msg_hdr
        group.msg_name = first.msg_name
        group.msg_namelen = first.msg_namelen
        group.msg_iov = &iov[i]
        group.msg_iovlen = j - i
        group.msg_flags = 0
        if j - i > 1:
            attach_segment_size(group, control + k * GSO_CONTROL, size)
        else:
            group.msg_control = first.msg_control
            group.msg_controllen = first.msg_controllen
        counts[k] = j - i
        k += 1
        i = j
    return k
