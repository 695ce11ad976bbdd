# GSO send-run planning for native/linux/udp.pyx (included there): which consecutive plain
# sendmmsg messages one UDP GSO message can carry, and the GSO messages built over them.


cdef unsigned int plan_gso_runs(mmsghdr *msgs, iovec *iov, unsigned int vlen, unsigned int limit,
                                mmsghdr *groups, unsigned int *counts,
                                unsigned char *control) noexcept nogil:
    """Build ``groups`` from runs of ``msgs[:vlen]`` that one GSO send can carry; return how many.

    ``groups[k]`` sends ``counts[k]`` datagrams whose iovecs are consecutive in ``iov``: a run is
    one peer, datagrams of one length up to ``limit`` (the last may be shorter), no control of
    their own; ``control`` has GSO_CONTROL bytes per group for its segment size.
    """
    cdef unsigned int i = 0, j, k = 0, size, last, most
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
            while j < vlen and j - i < most:
                other = &msgs[j].msg_hdr
                last = <unsigned int>iov[j].iov_len
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
