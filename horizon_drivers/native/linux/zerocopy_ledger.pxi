# MSG_ZEROCOPY completions (included by native/linux/descriptor.pyx: every socket class shares
# one ledger type through descriptor.pxd).
#
# Some facts about zero-copy sends (Documentation/networking/msg_zerocopy.rst), which this file
# is built on:
#
# * With SO_ZEROCOPY set on the socket, a send with MSG_ZEROCOPY pins the caller's pages instead
#   of copying them. The call returns at once, but the kernel reads the memory until the data has
#   left (TCP: until it is acknowledged). Rewriting or freeing it earlier corrupts what is sent,
#   so every buffer is held here until its completion arrives.
# * Each successful zero-copy send call (sendmsg, and each message of a sendmmsg) takes the next
#   value of a per-socket 32-bit counter, starting at 0. A failed call (EAGAIN, ENOBUFS) takes
#   none. A socket without SO_ZEROCOPY ignores the flag and takes none either, so zero-copy is
#   used only on sockets that read SO_ZEROCOPY back as on.
# * Completions are read with recvmsg(MSG_ERRQUEUE): one control message, (SOL_IP, IP_RECVERR)
#   or (SOL_IPV6, IPV6_RECVERR) by family, carrying a sock_extended_err whose ee_origin is
#   SO_EE_ORIGIN_ZEROCOPY and whose [ee_info, ee_data] is an *inclusive* range of counter
#   values. The kernel coalesces consecutive completions into one range, the range may wrap
#   past 2**32, and UDP completions can come out of order, so holds are keyed by id.
# * ee_code SO_EE_CODE_ZEROCOPY_COPIED says the kernel copied after all: always over loopback
#   and local delivery (the receiving socket cannot keep the sender's pages), or a device
#   without scatter-gather. The data is correct either way; only the saving is gone.
# * Queued completions make the socket report EPOLLERR, level-triggered, until read, so the
#   runtime drains them when it sees EPOLLERR (``_reap_on_error``).
# * Each notification in flight is charged to the socket's option memory (net.core.optmem_max);
#   when that is spent a zero-copy send fails with ENOBUFS. Nothing was sent: the send is made
#   again by copying, and counted in ``zerocopy_fallbacks``.
# * After close() completions can no longer be read. The kernel keeps its own references to the
#   pinned pages, so dropping the holds then is safe (nothing dangles); the sends still in flight
#   are counted in ``zerocopy_abandoned``.

# The including module (descriptor.pyx) cimports what this uses; the classes are declared in
# descriptor.pxd so the socket modules can reach their C fields.

cdef enum:
    # Room for one IP_RECVERR message (the sock_extended_err and the offender's address), in
    # 8-byte words so the buffer is aligned for cmsghdr.
    _ERRQUEUE_WORDS = 32
    # Notifications one drain reads beyond the sends it knows of (foreign errors, if any).
    _DRAIN_SLACK = 64


cdef bint zerocopy_enabled(int fd) noexcept:
    """True when SO_ZEROCOPY reads back as on: only then does MSG_ZEROCOPY take a counter id."""
    cdef int value = 0
    cdef socklen_t length = sizeof(value)
    if getsockopt(fd, SOL_SOCKET, SO_ZEROCOPY, &value, &length) != 0:
        return False
    return value != 0


cdef class PoolLoan:
    """BufferPool slots one zero-copy send reads: each is given back on its completion."""

    def __cinit__(self, pool, list slots):
        self.pool = pool
        self.slots = slots

    cdef void give_back(self) except *:
        give = self.pool.return_from_kernel
        for slot in self.slots:
            give(slot)


cdef class ZerocopyLedger:
    """The zero-copy sends of one socket that await their completion, keyed by counter id.

    A hold is whatever keeps the sent memory alive and unchanged: memoryviews of the caller's
    buffers (a bytearray with a live view cannot be resized away), or a ``PoolLoan``.
    """

    def __cinit__(self, Py_ssize_t threshold):
        self.holds = {}
        self.threshold = threshold

    def __dealloc__(self):
        # A socket dropped without close(): give pool slots back so the pool does not keep them
        # POSTED forever (the descriptor is closed by then, so no completion can come).
        if self.holds:
            self.abandon()

    @property
    def in_flight(self):
        return len(self.holds)

    # Python-visible for the tests only: the kernel's counter cannot be driven to 2**32 there.
    def _test_start_at(self, uint32_t next_id):
        self.next_id = next_id

    def _test_record(self, hold):
        self.record(hold)

    def _test_complete(self, uint32_t low, uint32_t high, bint copied):
        self.complete(low, high, copied)

    cdef void record(self, object hold) except *:
        """One zero-copy send call succeeded: it took the next id."""
        self.holds[self.next_id] = hold
        self.next_id += 1  # uint32_t: wraps at 2**32 exactly as the kernel's counter
        self.sends += 1

    cdef void record_loan(self, object pool, list slots) except *:
        """One zero-copy send of these pool slots succeeded: lend them until its completion."""
        cdef Py_ssize_t lent = 0
        lend = pool.lend_to_kernel
        try:
            for slot in slots:
                lend(slot)
                lent += 1
        except BaseException:
            PoolLoan(pool, slots[:lent]).give_back()  # all or nothing
            raise
        self.record(PoolLoan(pool, slots))

    cdef int complete(self, uint32_t low, uint32_t high, bint copied) except -1:
        """The sends ``low..high`` (inclusive, modulo 2**32) completed."""
        cdef uint64_t span = <uint64_t><uint32_t>(high - low) + 1
        cdef uint64_t k
        cdef uint32_t ident
        holds = self.holds
        if span <= <uint64_t>len(holds):
            done = []
            for k in range(span):
                ident = low + <uint32_t>k
                hold = holds.pop(ident, None)
                if hold is not None:
                    done.append(hold)
        else:
            # A range wider than what is in flight: walk the holds, not the range (it may be
            # up to 2**32 wide).
            mine = [i for i in holds if <uint32_t>(<uint32_t>i - low) < span]
            done = [holds.pop(i) for i in mine]
        self.completions += len(done)
        if copied:
            self.copied += len(done)
        for hold in done:
            if type(hold) is PoolLoan:
                (<PoolLoan>hold).give_back()
        return 0

    cdef Py_ssize_t drain(self, int fd) except -1:
        """Read every queued notification; return the zero-copy ones. Never blocks."""
        cdef msghdr msg
        cdef iovec none
        cdef uint64_t control[_ERRQUEUE_WORDS]
        cdef unsigned char *end
        cdef cmsghdr *cm
        cdef sock_extended_err ee
        cdef ssize_t n
        cdef int err = 0
        cdef Py_ssize_t notes = 0, rounds = 0
        cdef Py_ssize_t limit = len(self.holds) + _DRAIN_SLACK
        self.foreign = False
        while rounds < limit:
            memset(&msg, 0, sizeof(msg))
            none.iov_base = NULL
            none.iov_len = 0
            msg.msg_iov = &none
            msg.msg_iovlen = 1
            msg.msg_control = control
            msg.msg_controllen = sizeof(control)
            with nogil:
                n = recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT)
                if n < 0:
                    err = errno
            if n < 0:
                if err == EINTR:
                    PyErr_CheckSignals()
                    continue
                break  # EAGAIN: the queue is empty (any other error: nothing more to read)
            rounds += 1
            if msg.msg_controllen > sizeof(control):
                msg.msg_controllen = sizeof(control)  # never walk past our buffer
            end = <unsigned char *>control + msg.msg_controllen
            cm = CMSG_FIRSTHDR(&msg)
            while cm != NULL:
                if (cm.cmsg_len >= CMSG_LEN(sizeof(ee))
                        and CMSG_DATA(cm) + sizeof(ee) <= end
                        and ((cm.cmsg_level == IPPROTO_IP and cm.cmsg_type == IP_RECVERR)
                             or (cm.cmsg_level == IPPROTO_IPV6 and cm.cmsg_type == IPV6_RECVERR))):
                    memcpy(&ee, CMSG_DATA(cm), sizeof(ee))  # CMSG_DATA need not be aligned
                    if ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY and ee.ee_errno == 0:
                        self.complete(ee.ee_info, ee.ee_data,
                                      (ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED) != 0)
                        notes += 1
                    else:
                        self.foreign = True
                else:
                    self.foreign = True
                cm = CMSG_NXTHDR(&msg, cm)
        return notes

    cdef void abandon(self) except *:
        """The socket closed: count what never completed and drop the holds (pool slots too)."""
        holds = list(self.holds.values())
        self.holds.clear()
        self.abandoned += len(holds)
        for hold in holds:
            if type(hold) is PoolLoan:
                (<PoolLoan>hold).give_back()

    cdef dict counters(self):
        return {
            "zerocopy_sends": self.sends,
            "zerocopy_completions": self.completions,
            "zerocopy_copied": self.copied,
            "zerocopy_fallbacks": self.fallbacks,
            "zerocopy_abandoned": self.abandoned,
        }

