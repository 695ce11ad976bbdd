# The ring: io_uring setup and mmap, submission and completion, and dispatching each completion
# to the object that owns its request. Included by uring.pyx.
#
# Some facts about io_uring this file relies on:
#
# * Submission and completion queues are memory shared with the kernel. We write SQEs and
#   publish them with a release store of the SQ tail; the kernel consumes them inside
#   io_uring_enter (no SQPOLL here) and publishes CQEs with a release store of the CQ tail,
#   which we read with an acquire load and retire by storing the CQ head.
# * Every user-space touch of the rings happens with the GIL held, so threads never race on
#   them; only the wait inside io_uring_enter runs without the GIL, and it reads nothing we write.
# * With IORING_SETUP_COOP_TASKRUN the kernel does not interrupt us to post completions of
#   socket requests; it flags IORING_SQ_TASKRUN and posts them at our next io_uring_enter. So
#   "is anything waiting" costs no syscall unless that flag (or CQ overflow) says one is needed.
# * A full CQ does not lose completions (IORING_FEAT_NODROP, required here): the kernel keeps
#   them on an overflow list and sets IORING_SQ_CQ_OVERFLOW; an io_uring_enter with GETEVENTS
#   moves them into the CQ once we have made room. ``reap`` does that until the flag clears.
# * A multishot request posts many CQEs with the same user_data; IORING_CQE_F_MORE says more
#   will follow. The final CQE (no F_MORE) ends it, whatever ended it (error, ENOBUFS, cancel).


cdef enum:
    REAP_BATCH = 256            # CQEs copied out per pass before dispatching them
    SQPOLL_IDLE_MS = 100        # an idle SQPOLL thread sleeps after this (a submission wakes it)
    KEY_IGNORED = 0             # user_data of requests whose completion nobody needs (cancels)


# poll(2) event bits, for POLL_ADD requests and their completions.
cdef enum:
    POLLIN_ = 0x001
    POLLOUT_ = 0x004
    POLLERR_ = 0x008
    POLLHUP_ = 0x010
    POLLRDHUP_ = 0x2000

cdef class _Completer:
    """Anything that owns requests on the ring: ``_on_cqe`` gets each of their completions."""

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        return 0


cdef inline long long _monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <long long>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef class _Ring:
    """One io_uring instance: its mapped queues and the owners of its requests in flight."""

    cdef int fd
    cdef void *sq_map
    cdef void *cq_map
    cdef size_t sq_map_len, cq_map_len
    cdef hz_uring_sqe *sqes
    cdef size_t sqes_len
    cdef uint32_t *sq_head
    cdef uint32_t *sq_tail
    cdef uint32_t *sq_flags
    cdef uint32_t *sq_array
    cdef uint32_t *cq_head
    cdef uint32_t *cq_tail
    cdef uint32_t *cq_overflow
    cdef hz_uring_cqe *cqes
    cdef uint32_t sq_mask, cq_mask
    cdef readonly uint32_t sq_entries, cq_entries, features, setup_flags
    cdef uint32_t local_tail
    cdef bint reaping
    cdef unsigned long owner_thread
    cdef dict owners
    cdef uint64_t next_key
    # The owner of the last key dispatched: a multishot request posts a run of completions with
    # one key, which then costs no dict lookup (forgotten with the key in ``drop_key``).
    cdef uint64_t hot_key
    cdef _Completer hot_owner
    cdef uint32_t dispatch_next
    # counters shown by ring_stats()
    cdef readonly uint64_t submitted, completions, enters, overflow_flushes, taskrun_flushes
    cdef readonly uint64_t stale_completions

    def __cinit__(self):
        self.fd = -1

    def __init__(self, unsigned int entries, unsigned int cq_entries, bint sqpoll=False,
                 bint single_thread=False):
        cdef hz_uring_params p
        cdef int err
        cdef int fd = -1
        cdef uint32_t extra = HZ_SETUP_COOP_TASKRUN | HZ_SETUP_TASKRUN_FLAG
        self.owners = {}
        self.next_key = 1
        self.owner_thread = PyThread_get_thread_ident()
        if sqpoll:
            # A kernel thread consumes submissions (and runs the requests' task work) itself.
            extra = HZ_SETUP_SQPOLL
        elif single_thread:
            # Completions' task work waits for our next wait, which runs it all at once, and only
            # this thread may enter the ring (others queue SQEs it submits).
            extra = HZ_SETUP_SINGLE_ISSUER | HZ_SETUP_DEFER_TASKRUN | HZ_SETUP_TASKRUN_FLAG
        while True:
            memset(&p, 0, sizeof(p))
            p.flags = HZ_SETUP_CQSIZE | HZ_SETUP_CLAMP | HZ_SETUP_SUBMIT_ALL | extra
            p.cq_entries = cq_entries
            p.sq_thread_idle = SQPOLL_IDLE_MS
            fd = hz_uring_setup(entries, &p)
            if fd >= 0:
                break
            err = errno
            if err == EINVAL and extra and not sqpoll and not single_thread:
                extra = 0            # before 5.19: no cooperative task running
                continue
            raise_errno(err, "io_uring_setup")
        self.fd = fd
        self.setup_flags = p.flags
        self.features = p.features
        self.sq_entries = p.sq_entries
        self.cq_entries = p.cq_entries
        if not (p.features & HZ_FEAT_NODROP) or not (p.features & HZ_FEAT_EXT_ARG):
            raise OSError(ENOSYS, "io_uring here lacks IORING_FEAT_NODROP or IORING_FEAT_EXT_ARG "
                                  "(Linux 5.11 or later is needed)")
        self.sq_map_len = p.sq_off.array + p.sq_entries * sizeof(uint32_t)
        self.cq_map_len = p.cq_off.cqes + p.cq_entries * sizeof(hz_uring_cqe)
        if p.features & HZ_FEAT_SINGLE_MMAP:
            if self.cq_map_len > self.sq_map_len:
                self.sq_map_len = self.cq_map_len
            self.cq_map_len = self.sq_map_len
        self.sq_map = mmap(NULL, self.sq_map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                           fd, HZ_OFF_SQ_RING)
        if self.sq_map == MAP_FAILED:
            self.sq_map = NULL
            raise_errno(errno, "mmap(io_uring SQ ring)")
        if p.features & HZ_FEAT_SINGLE_MMAP:
            self.cq_map = self.sq_map
        else:
            self.cq_map = mmap(NULL, self.cq_map_len, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_POPULATE, fd, HZ_OFF_CQ_RING)
            if self.cq_map == MAP_FAILED:
                self.cq_map = NULL
                raise_errno(errno, "mmap(io_uring CQ ring)")
        self.sqes_len = p.sq_entries * sizeof(hz_uring_sqe)
        self.sqes = <hz_uring_sqe *>mmap(NULL, self.sqes_len, PROT_READ | PROT_WRITE,
                                         MAP_SHARED | MAP_POPULATE, fd, HZ_OFF_SQES)
        if <void *>self.sqes == MAP_FAILED:
            self.sqes = NULL
            raise_errno(errno, "mmap(io_uring SQEs)")
        cdef char *sq = <char *>self.sq_map
        cdef char *cq = <char *>self.cq_map
        self.sq_head = <uint32_t *>(sq + p.sq_off.head)
        self.sq_tail = <uint32_t *>(sq + p.sq_off.tail)
        self.sq_flags = <uint32_t *>(sq + p.sq_off.flags)
        self.sq_array = <uint32_t *>(sq + p.sq_off.array)
        self.sq_mask = (<uint32_t *>(sq + p.sq_off.ring_mask))[0]
        self.cq_head = <uint32_t *>(cq + p.cq_off.head)
        self.cq_tail = <uint32_t *>(cq + p.cq_off.tail)
        self.cq_overflow = <uint32_t *>(cq + p.cq_off.overflow)
        self.cqes = <hz_uring_cqe *>(cq + p.cq_off.cqes)
        self.cq_mask = (<uint32_t *>(cq + p.cq_off.ring_mask))[0]
        self.local_tail = self.sq_tail[0]

    def __dealloc__(self):
        self._unmap()

    cdef void _unmap(self) noexcept:
        if self.sqes != NULL:
            munmap(self.sqes, self.sqes_len)
            self.sqes = NULL
        if self.cq_map != NULL and self.cq_map != self.sq_map:
            munmap(self.cq_map, self.cq_map_len)
        self.cq_map = NULL
        if self.sq_map != NULL:
            munmap(self.sq_map, self.sq_map_len)
            self.sq_map = NULL
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1

    # -- owners --------------------------------------------------------------------------------

    cdef uint64_t new_key(self, _Completer owner) except 0:
        """A fresh user_data for a request of ``owner``; its completions go to ``owner``."""
        cdef uint64_t key = self.next_key
        self.next_key += 1
        self.owners[key] = owner
        return key

    cdef void drop_key(self, uint64_t key) noexcept:
        """Forget ``key``: a completion still on its way for it is counted stale and ignored."""
        if key != KEY_IGNORED:
            if key == self.hot_key:
                self.hot_key = KEY_IGNORED
                self.hot_owner = None
            try:
                self.owners.pop(key, None)
            except BaseException:
                pass

    # -- submission ----------------------------------------------------------------------------

    cdef hz_uring_sqe *get_sqe(self) except NULL:
        """The next free SQE, zeroed; published by the next ``submit``/``wait``."""
        cdef hz_uring_sqe *sqe
        cdef uint32_t index
        cdef int rounds = 0
        while self.local_tail - hz_load_acquire(self.sq_head) >= self.sq_entries:
            # Full: hand the kernel what is queued (room appears as it consumes them; an SQPOLL
            # thread may need a moment).
            self.submit()
            rounds += 1
            if rounds > 10:
                usleep(100)
            if rounds > 10000:
                raise OSError(EBUSY, "io_uring submission queue stays full")
        index = self.local_tail & self.sq_mask
        sqe = &self.sqes[index]
        memset(sqe, 0, sizeof(hz_uring_sqe))
        self.sq_array[index] = index
        self.local_tail += 1
        return sqe

    cdef inline uint32_t pending(self) noexcept:
        hz_store_release(self.sq_tail, self.local_tail)
        return self.local_tail - hz_load_acquire(self.sq_head)

    cdef inline bint foreign(self) noexcept:
        """True in a thread that may not enter a single-issuer ring (it only queues SQEs)."""
        return (self.setup_flags & HZ_SETUP_SINGLE_ISSUER) != 0 and \
            PyThread_get_thread_ident() != self.owner_thread

    cdef int submit(self) except -1:
        """Hand queued SQEs to the kernel without waiting (and flush what the flags ask for)."""
        if self.foreign():
            return 0
        cdef uint32_t to_submit = self.pending()
        cdef uint32_t flags = 0
        cdef uint32_t sqf = hz_load_acquire(self.sq_flags)
        cdef int rc, err = 0
        if sqf & (HZ_SQ_CQ_OVERFLOW | HZ_SQ_TASKRUN):
            flags = HZ_ENTER_GETEVENTS
        if self.setup_flags & HZ_SETUP_SQPOLL:
            # The kernel thread takes what we published; it needs a syscall only when asleep.
            if sqf & HZ_SQ_NEED_WAKEUP and to_submit:
                flags |= HZ_ENTER_SQ_WAKEUP
            elif flags == 0:
                return 0
        if to_submit == 0 and flags == 0:
            return 0
        rc = hz_uring_enter(self.fd, to_submit, 0, flags, NULL, 0)
        self.enters += 1
        if rc < 0:
            err = errno
            if err == EINTR or err == EAGAIN or err == EBUSY:
                # EBUSY: the overflow list is full until we reap; the caller reaps next.
                return 0
            raise_errno(err, "io_uring_enter")
        self.submitted += rc
        return 0

    cdef int wait(self, long long timeout_ns) except -1:
        """Submit, then wait (GIL released) for one completion or ``timeout_ns`` (-1: forever)."""
        cdef hz_uring_getevents_arg arg
        cdef hz_kernel_timespec ts
        cdef uint32_t to_submit = self.pending()
        cdef int rc, err = 0
        cdef int fd = self.fd
        if self.foreign():
            raise RuntimeError(
                "this process's io_uring ring is single-threaded (HORIZON_URING_SINGLE_THREAD=1): "
                "poll it from the thread that made it")
        memset(&arg, 0, sizeof(arg))
        arg.sigmask_sz = 8
        if timeout_ns >= 0:
            ts.tv_sec = timeout_ns // 1000000000
            ts.tv_nsec = timeout_ns % 1000000000
            arg.ts = <uint64_t><uintptr_t>&ts
        cdef uint32_t flags = HZ_ENTER_GETEVENTS | HZ_ENTER_EXT_ARG
        if self.setup_flags & HZ_SETUP_SQPOLL and hz_load_acquire(self.sq_flags) & HZ_SQ_NEED_WAKEUP:
            flags |= HZ_ENTER_SQ_WAKEUP
        with nogil:
            rc = hz_uring_enter(fd, to_submit, 1, flags, &arg, sizeof(arg))
            if rc < 0:
                err = errno
        self.enters += 1
        if rc >= 0:
            self.submitted += rc
            return 0
        if err == ETIME or err == EAGAIN or err == EBUSY:
            return 0
        if err == EINTR:
            PyErr_CheckSignals()
            return 0
        raise_errno(err, "io_uring_enter")

    # -- completion ----------------------------------------------------------------------------

    cdef int reap(self) except -1:
        """Dispatch every completion waiting (and those on the overflow list); return how many."""
        cdef hz_uring_cqe got[REAP_BATCH]
        cdef uint32_t head, tail, n, i
        cdef int total = 0, rounds = 0
        cdef uint32_t sqf
        if self.reaping or self.fd < 0:
            return 0
        self.reaping = True
        failure = None
        try:
            while rounds < 1000:
                rounds += 1
                head = self.cq_head[0]
                tail = hz_load_acquire(self.cq_tail)
                n = tail - head
                if n > REAP_BATCH:
                    n = REAP_BATCH
                for i in range(n):
                    got[i] = self.cqes[(head + i) & self.cq_mask]
                if n:
                    hz_store_release(self.cq_head, head + n)
                i = 0
                while i < n:
                    # One try around the run: a failing handler ends it, the rest go on after it.
                    try:
                        self._dispatch(got, i, n)
                        i = n
                    except BaseException as exc:  # dispatch every completion, then report
                        i = self.dispatch_next
                        if failure is None:
                            failure = exc
                total += n
                self.completions += n
                if n == REAP_BATCH:
                    continue
                sqf = hz_load_acquire(self.sq_flags)
                if not sqf & (HZ_SQ_CQ_OVERFLOW | HZ_SQ_TASKRUN) or self.foreign():
                    break
                # Completions wait on the overflow list or as task work: GETEVENTS posts them.
                if sqf & HZ_SQ_CQ_OVERFLOW:
                    self.overflow_flushes += 1
                else:
                    self.taskrun_flushes += 1
                hz_uring_enter(self.fd, self.pending(), 0, HZ_ENTER_GETEVENTS, NULL, 0)
                self.enters += 1
                if hz_load_acquire(self.cq_tail) == self.cq_head[0]:
                    break
        finally:
            self.reaping = False
        if failure is not None:
            raise failure
        return total

    cdef int _dispatch(self, hz_uring_cqe *got, uint32_t i, uint32_t n) except -1:
        """Hand completions ``i..n-1`` to their owners. If a handler raises, ``dispatch_next``
        is the index after the failing completion: the caller resumes there."""
        cdef _Completer owner
        cdef uint64_t key
        while i < n:
            key = got[i].user_data
            if key == KEY_IGNORED:
                self.stale_completions += 1
                i += 1
                continue
            if key == self.hot_key:
                owner = self.hot_owner
            else:
                obj = self.owners.get(key)
                if obj is None:
                    self.stale_completions += 1
                    i += 1
                    continue
                owner = <_Completer>obj
                self.hot_key = key
                self.hot_owner = owner
            self.dispatch_next = i + 1
            owner._on_cqe(got[i].res, got[i].flags, key)
            i += 1
        return 0

    cdef int cancel(self, uint64_t key) except -1:
        """Ask the kernel to cancel the request ``key`` (its final completion still comes)."""
        cdef hz_uring_sqe *sqe = self.get_sqe()
        sqe.opcode = HZ_OP_ASYNC_CANCEL
        sqe.fd = -1
        sqe.addr = key
        sqe.user_data = KEY_IGNORED
        return 0

    cdef int settle(self, _Settling who, double seconds) except -1:
        """Reap until ``who.settled()`` or ``seconds`` pass; 1 if settled, 0 if not."""
        cdef long long deadline = _monotonic_ns() + <long long>(seconds * 1e9)
        cdef long long left
        self.submit()
        self.reap()
        while not who.settled():
            left = deadline - _monotonic_ns()
            if left <= 0:
                return 0
            self.wait(left if left < 10000000 else 10000000)
            self.reap()
        return 1

    def stats(self):
        return {
            "sqpoll": bool(self.setup_flags & HZ_SETUP_SQPOLL),
            "single_thread": bool(self.setup_flags & HZ_SETUP_SINGLE_ISSUER),
            "sq_entries": self.sq_entries,
            "cq_entries": self.cq_entries,
            "submitted": self.submitted,
            "completions": self.completions,
            "enters": self.enters,
            "overflow_flushes": self.overflow_flushes,
            "taskrun_flushes": self.taskrun_flushes,
            "stale_completions": self.stale_completions,
            "cq_overflow_dropped": hz_load_acquire(self.cq_overflow) if self.cq_map != NULL else 0,
            "requests_in_flight": len(self.owners),
        }


cdef class _Settling(_Completer):
    """A completer ``_Ring.settle`` can wait for: ``settled()`` once nothing of it is in flight."""

    cdef bint settled(self):
        return True


cdef class _Receiver(_Settling):
    """A socket's multishot request and its queue: the Runtime reads readiness from it."""

    cdef bint closing
    cdef object error

    cdef bint readable(self):
        return self.error is not None

    cdef int ready_bits(self):
        """The runtime's readiness bits while READABLE interest holds: 1 readable, 4 error."""
        if not self.readable():
            return 0
        return 5 if self.error is not None else 1

    cdef bint polled(self):
        """True while readability must come from a poll (a stream not yet receiving)."""
        return False
