# What io_uring this kernel offers, and the process's ring (the hub). Included by uring.pyx.

cdef _Ring _the_hub = None

#: Features the driver relies on or uses when present (``probe()["used"]``).
USED_FEATURES = (
    "multishot_recvmsg", "provided_buffer_rings", "multishot_accept", "poll_add", "nodrop",
    "ext_arg", "coop_taskrun",
)


cdef unsigned int _env_entries(str name, unsigned int default) except 0:
    text = _os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 32768:
        raise ValueError(f"{name} must be an integer from 1 to 32768, got {text!r}")
    return value


cdef bint _env_flag(str name) except -1:
    text = _os.environ.get(name, "0")
    if text not in ("0", "1", ""):
        raise ValueError(f"{name} must be 0 or 1, got {text!r}")
    return text == "1"


cdef _Ring _hub():
    """The process's ring: every uring socket's requests and every Runtime's waits live on it."""
    global _the_hub
    if _the_hub is None:
        sqpoll = _env_flag("HORIZON_URING_SQPOLL")
        single = _env_flag("HORIZON_URING_SINGLE_THREAD")
        if sqpoll and single:
            raise ValueError("HORIZON_URING_SQPOLL and HORIZON_URING_SINGLE_THREAD exclude each other")
        _the_hub = _Ring(_env_entries("HORIZON_URING_ENTRIES", 256),
                         _env_entries("HORIZON_URING_CQ_ENTRIES", 8192), sqpoll, single)
    return _the_hub


def ring_stats():
    """Counters of the process's ring: submissions, completions, overflow flushes, in flight.

    Example:
        >>> from horizon_drivers.uring import ring_stats
        >>> ring_stats()["cq_entries"] >= 1
        True
    """
    return _hub().stats()


cdef dict _opcodes(_Ring ring):
    cdef hz_uring_probe *probe = <hz_uring_probe *>calloc(1, sizeof(hz_uring_probe))
    cdef int i
    supported = {}
    if probe == NULL:
        raise MemoryError("cannot allocate the io_uring probe")
    try:
        if hz_uring_register(ring.fd, HZ_REGISTER_PROBE, probe, 256) < 0:
            return supported
        for i in range(probe.ops_len):
            supported[probe.ops[i].op] = bool(probe.ops[i].flags & HZ_IO_URING_OP_SUPPORTED)
    finally:
        free(probe)
    return supported


cdef class _Trial(_Settling):
    """A multishot recvmsg on a throwaway socket pair: does this kernel run what we need?"""

    cdef uint64_t key
    cdef int32_t res
    cdef uint32_t flags
    cdef bint first_seen, cancelling

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        if not self.first_seen:
            self.first_seen = True
            self.res = res
            self.flags = flags
        if not flags & HZ_CQE_F_MORE:
            _the_hub.drop_key(key)
            self.key = 0
        return 0

    cdef bint settled(self):
        return self.key == 0 if self.cancelling else self.first_seen


cdef int _self_test(_Ring ring) except -1:
    """Receive one datagram with multishot recvmsg from a provided-buffer ring, then cancel."""
    cdef _SlotRing slots = _SlotRing(2, PAYLOAD_OFFSET + 64)
    cdef _Trial trial = _Trial()
    cdef msghdr mh
    cdef hz_uring_sqe *sqe
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        slots.register(ring)
        try:
            slots.post(0)
            slots.post(1)
            slots.publish()
            memset(&mh, 0, sizeof(mh))
            mh.msg_namelen = NAME_SPACE
            mh.msg_controllen = CONTROL_SPACE
            b.send(b"probe")
            sqe = ring.get_sqe()
            sqe.opcode = HZ_OP_RECVMSG
            sqe.fd = a.fileno()
            sqe.addr = <uint64_t><uintptr_t>&mh
            sqe.ioprio = HZ_RECV_MULTISHOT
            sqe.flags = HZ_IOSQE_BUFFER_SELECT
            sqe.buf_group = <uint16_t>slots.gid
            trial.key = ring.new_key(trial)
            sqe.user_data = trial.key
            ring.settle(trial, 2.0)
            if trial.key:
                ring.cancel(trial.key)
                trial.cancelling = True
                ring.settle(trial, 2.0)
                ring.drop_key(trial.key)
        finally:
            slots.unregister()
            slots.cancel_all()
    finally:
        a.close()
        b.close()
    if trial.res < 0:
        raise OSError(-trial.res, f"multishot recvmsg on a provided-buffer ring failed: "
                                  f"{_os.strerror(-trial.res)} (Linux 6.0 or later is needed)")
    if not trial.flags & HZ_CQE_F_BUFFER or trial.res != PAYLOAD_OFFSET + 5:
        raise OSError(EOPNOTSUPP, f"multishot recvmsg did not fill a provided buffer as expected "
                                  f"(result {trial.res}, flags {trial.flags:#x})")
    return 0


def _disabled_setting():
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip()
    except OSError:
        return None


def unavailable_reason():
    """Why io_uring cannot run in this process, or None when it can.

    Example:
        >>> from horizon_drivers.native.uring.uring import unavailable_reason
        >>> unavailable_reason() is None
        True
    """
    global _the_hub
    try:
        ring = _hub()
        _self_test(ring)
    except OSError as exc:
        _the_hub = None
        disabled = _disabled_setting()
        hints = []
        if exc.errno == ENOSYS:
            hints.append("the kernel has no io_uring (before 5.1, or built without it)")
        if exc.errno == EPERM:
            hints.append("refused: kernel.io_uring_disabled or a seccomp filter (containers)")
        if disabled not in (None, "0"):
            hints.append(f"kernel.io_uring_disabled = {disabled}")
        hint = f" ({'; '.join(hints)})" if hints else ""
        return f"io_uring cannot run here: {exc}{hint}"
    return None


def probe():
    """The io_uring features of this kernel, and which of them the driver uses.

    Example:
        >>> from horizon_drivers.uring import probe
        >>> report = probe()
        >>> report["features"]["multishot_recvmsg"], "multishot_recvmsg" in report["used"]
        (True, True)
    """
    cdef _Ring ring = _hub()
    ops = _opcodes(ring)
    features = {
        "multishot_recvmsg": bool(ops.get(HZ_OP_RECVMSG)),
        "provided_buffer_rings": True,
        "poll_add": bool(ops.get(HZ_OP_POLL_ADD)),
        "multishot_accept": bool(ops.get(HZ_OP_ACCEPT)),
        "send_zc": bool(ops.get(HZ_OP_SEND_ZC)),
        "sendmsg_zc": bool(ops.get(HZ_OP_SENDMSG_ZC)),
        "msg_ring": bool(ops.get(HZ_OP_MSG_RING)),
        "bundles": bool(ring.features & HZ_FEAT_RECVSEND_BUNDLE),
        "nodrop": bool(ring.features & HZ_FEAT_NODROP),
        "ext_arg": bool(ring.features & HZ_FEAT_EXT_ARG),
        "fast_poll": bool(ring.features & HZ_FEAT_FAST_POLL),
        "coop_taskrun": bool(ring.setup_flags & HZ_SETUP_COOP_TASKRUN),
    }
    return {
        "features": features,
        "used": tuple(name for name in USED_FEATURES if features.get(name)),
        "opcodes_supported": sum(1 for ok in ops.values() if ok),
        "sq_entries": ring.sq_entries,
        "cq_entries": ring.cq_entries,
    }
