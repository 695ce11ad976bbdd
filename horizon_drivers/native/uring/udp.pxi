# UDP: a multishot recvmsg per socket on the provided-buffer ring; sends through the epoll
# driver's batch path (sendmmsg with UDP GSO runs). Included by uring.pyx.
#
# Layout of a receive slot, as multishot recvmsg writes it (struct io_uring_recvmsg_out, then
# the name and control areas of the sizes our msghdr announced, then the payload):
#
#     0  io_uring_recvmsg_out {namelen, controllen, payloadlen (the true length), flags}
#    16  peer sockaddr (NAME_SPACE bytes)
#    48  control messages (CONTROL_SPACE bytes: UDP_GRO, SO_RXQ_OVFL)
#   112  payload (slot size - 112 bytes; a longer datagram is cut, MSG_TRUNC in flags)

#: Receive slots (multishot receive buffers) each UDP socket keeps in its buffer ring.
DEFAULT_RING_SLOTS = 128
#: Payload bytes per receive slot: every UDP datagram fits, so every true length is exact.
DEFAULT_RING_PAYLOAD = 65536

cdef enum:
    OUT_SIZE = 16
    NAME_SPACE = 32
    CONTROL_SPACE = 64
    PAYLOAD_OFFSET = OUT_SIZE + NAME_SPACE + CONTROL_SPACE

#: Seconds close() waits for a cancelled receive's final completion before giving its memory up
#: to a graveyard (kept forever rather than freed under a kernel that may still write it).
CLOSE_SETTLE_SECONDS = 2.0
_graveyard = []


cdef class _UdpRx(_Receiver):
    """The receive side of one UDP socket: its slot ring, its multishot recvmsg, its queue."""

    cdef _Ring ring
    cdef _SlotRing slots
    cdef int fd                        # a duplicate of the socket's descriptor, owned here
    cdef msghdr mh
    cdef int *fifo
    cdef unsigned int fifo_head, fifo_len, head_offset
    cdef uint64_t key                  # the multishot recvmsg in flight (0: none)
    cdef bint want_control, finished
    cdef bint recycled                 # take emptied slots not yet published to the ring
    cdef uint64_t datagrams, nbytes, truncated, calls, would_block, errors
    cdef readonly uint64_t enobufs, arms, cancelled
    cdef uint64_t hist[BUCKETS]

    def __cinit__(self):
        self.fd = -1

    def __init__(self, _Ring ring, int fd, unsigned int ring_slots, Py_ssize_t payload,
                 bint want_control):
        cdef unsigned int slot
        self.ring = ring
        self.slots = _SlotRing(ring_slots, PAYLOAD_OFFSET + payload)
        self.fifo = <int *>calloc(ring_slots, sizeof(int))
        if self.fifo == NULL:
            raise MemoryError("cannot allocate the receive queue")
        self.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if self.fd < 0:
            raise_errno(errno, "fcntl(F_DUPFD_CLOEXEC)")
        self.want_control = want_control
        # The kernel reads only the sizes: where name and control land is fixed by the layout.
        self.mh.msg_namelen = NAME_SPACE
        self.mh.msg_controllen = CONTROL_SPACE
        self.slots.register(ring)
        for slot in range(ring_slots):
            self.slots.post(slot)
        self.slots.publish()
        self.arm()

    def __dealloc__(self):
        free(self.fifo)
        if self.fd >= 0:
            close(self.fd)

    cdef int arm(self) except -1:
        """Start the multishot recvmsg unless one runs, the socket closes, or no buffer is free."""
        cdef hz_uring_sqe *sqe
        if self.key or self.closing or self.slots.posted == 0:
            return 0
        sqe = self.ring.get_sqe()
        sqe.opcode = HZ_OP_RECVMSG
        sqe.fd = self.fd
        sqe.addr = <uint64_t><uintptr_t>&self.mh
        sqe.ioprio = HZ_RECV_MULTISHOT
        sqe.flags = HZ_IOSQE_BUFFER_SELECT
        sqe.buf_group = <uint16_t>self.slots.gid
        sqe.op_flags = MSG_TRUNC
        self.key = self.ring.new_key(self)
        sqe.user_data = self.key
        self.arms += 1
        return 0

    cdef bint settled(self):
        return self.key == 0

    cdef int _on_cqe(self, int32_t res, uint32_t flags, uint64_t key) except -1:
        cdef unsigned int bid
        if not flags & HZ_CQE_F_MORE:
            self.ring.drop_key(key)
            if key == self.key:
                self.key = 0
        if flags & HZ_CQE_F_BUFFER:
            bid = flags >> HZ_CQE_BUFFER_SHIFT
            if bid < self.slots.slots and self.slots.states[bid] == _POSTED:
                self.slots.fill(bid)
                if self.closing or res < 0:
                    self.slots.release(bid)
                else:
                    self._filled(bid, <unsigned int>res)
        elif res == -ENOBUFS:
            self.enobufs += 1
        elif res == -ECANCELED:
            self.cancelled += 1
        elif res < 0 and not self.closing:
            self.errors += 1
            self.error = _os_error(-res, "recvmsg")
        if self.key == 0:
            if self.closing:
                if not self.finished and self in _graveyard:
                    self._finish()
            elif res != -EINVAL and res != -EBADF and res != -ENOTSOCK and res != -EOPNOTSUPP:
                self.arm()
        return 0

    cdef void _filled(self, unsigned int slot, unsigned int res) noexcept:
        """Record the datagram the kernel wrote into ``slot`` and queue it."""
        cdef _PoolView view = self.slots.view
        cdef unsigned char *base = self.slots.slot_memory(slot)
        cdef hz_uring_recvmsg_out *out = <hz_uring_recvmsg_out *>base
        cdef unsigned int stored = 0, true_length, namelen, segment = 0
        cdef msghdr control
        if res >= PAYLOAD_OFFSET:
            stored = res - PAYLOAD_OFFSET
        if stored > <unsigned int>(view.slot_size - PAYLOAD_OFFSET):
            stored = <unsigned int>(view.slot_size - PAYLOAD_OFFSET)
        true_length = out.payloadlen if out.payloadlen > stored else stored
        namelen = out.namelen if out.namelen <= NAME_SPACE else 0
        pack_sockaddr(base + OUT_SIZE, namelen, view.addresses + slot * PACKED_SIZE)
        if self.want_control and out.controllen > 0:
            memset(&control, 0, sizeof(control))
            control.msg_control = base + OUT_SIZE + NAME_SPACE
            control.msg_controllen = out.controllen if out.controllen <= CONTROL_SPACE else CONTROL_SPACE
            read_recv_control(&control, true_length, stored, &segment, NULL)
        view.lengths[slot] = stored
        view.original_lengths[slot] = true_length
        view.truncated[slot] = 1 if true_length > stored else 0
        view.segment_sizes[slot] = segment
        cdef unsigned int at = self.fifo_head + self.fifo_len
        if at >= self.slots.slots:
            at -= self.slots.slots    # (head < slots and len < slots: one wrap at most)
        self.fifo[at] = slot
        self.fifo_len += 1

    cdef bint readable(self):
        return self.fifo_len > 0 or self.error is not None

    cdef int refresh(self) except -1:
        """Submit what waits and dispatch what completed, when the queue is empty."""
        if self.fifo_len == 0:
            self.ring.submit()
            self.ring.reap()
        return 0

    cdef int recycle(self, unsigned int slot) except -1:
        """FILLED -> FREE -> POSTED: the slot's buffer goes back to the kernel."""
        self.slots.release(slot)
        self.slots.post(slot)
        return 0

    cdef int nothing_queued(self) except -1:
        self.calls += 1
        if self.error is not None:
            exc, self.error = self.error, None
            raise exc
        self.would_block += 1
        raise BlockingIOError(EAGAIN, "no datagram is waiting")

    cdef Py_ssize_t take(self, object batch, object pool, _PoolView view) except -1:
        """Move queued datagrams into ``batch`` (a GRO buffer becomes one slot per segment)."""
        cdef Py_ssize_t first = 0, count = 0, i = 0
        cdef unsigned char *run = _free_run(batch, pool, &first, &count)
        if run != NULL:
            # The core's begin_receive + commit_receive moves, made directly on the checked run.
            _order_room(batch, count)
            i = self._copy_out(view, first, count)
            _fill_run(batch, run, first, count, i)
        else:
            begin_receive(batch, &first, &count)  # the core's move, or its precise error
            try:
                i = self._copy_out(view, first, count)
            finally:
                commit_receive(batch, i)
        if self.recycled:
            self.recycled = False
            self.slots.publish()
            self.arm()
        self.calls += 1
        if i:
            self.hist[_bucket(i)] += 1
        return i

    cdef Py_ssize_t _copy_out(self, _PoolView view, Py_ssize_t first, Py_ssize_t count) noexcept:
        """Copy up to ``count`` queued datagrams into slots ``first..`` of ``view``; return how
        many. Slots emptied go back to the ring (published by the caller)."""
        cdef _PoolView ring = self.slots.view
        cdef Py_ssize_t i = 0, dst
        cdef unsigned int slot, stored, piece, original, segment, copy
        cdef unsigned int offset
        cdef uint64_t nbytes = 0, ntrunc = 0
        while i < count and self.fifo_len > 0:
            slot = self.fifo[self.fifo_head]
            stored = ring.lengths[slot]
            segment = ring.segment_sizes[slot]
            offset = self.head_offset
            if segment > 0 and stored > segment:
                piece = stored - offset if stored - offset < segment else segment
                original = piece
            else:
                piece = stored
                original = ring.original_lengths[slot]
            dst = first + i
            copy = piece if piece <= <unsigned int>view.slot_size else <unsigned int>view.slot_size
            memcpy(view.memory + dst * view.slot_size,
                   ring.memory + slot * ring.slot_size + PAYLOAD_OFFSET + offset, copy)
            view.lengths[dst] = copy
            view.original_lengths[dst] = original
            view.truncated[dst] = 1 if original > copy else 0
            view.segment_sizes[dst] = 0
            memcpy(view.addresses + dst * PACKED_SIZE, ring.addresses + slot * PACKED_SIZE,
                   PACKED_SIZE)
            if original > copy:
                ntrunc += 1
            nbytes += copy
            i += 1
            if offset + piece < stored:
                self.head_offset = offset + piece
                continue
            self.head_offset = 0
            self.fifo_head += 1
            if self.fifo_head == self.slots.slots:
                self.fifo_head = 0
            self.fifo_len -= 1
            self.slots.release(slot)
            self.slots.post(slot)
            self.recycled = True
        self.datagrams += i
        self.nbytes += nbytes
        self.truncated += ntrunc
        return i

    cdef Py_ssize_t take_one(self, object buffer, unsigned char *packed) except -1:
        """Copy the next queued datagram (or GRO segment) into ``buffer``; return bytes stored."""
        cdef Py_buffer target
        cdef _PoolView ring = self.slots.view
        cdef unsigned int slot, stored, segment, piece, original, offset
        cdef Py_ssize_t copy
        PyObject_GetBuffer(buffer, &target, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            self.refresh()
            if self.fifo_len == 0:
                return self.nothing_queued()
            slot = self.fifo[self.fifo_head]
            stored = ring.lengths[slot]
            segment = ring.segment_sizes[slot]
            offset = self.head_offset
            if segment > 0 and stored > segment:
                piece = stored - offset if stored - offset < segment else segment
                original = piece
            else:
                piece = stored
                original = ring.original_lengths[slot]
            copy = piece if piece <= target.len else target.len
            memcpy(target.buf, ring.memory + slot * ring.slot_size + PAYLOAD_OFFSET + offset, copy)
            memcpy(packed, ring.addresses + slot * PACKED_SIZE, PACKED_SIZE)
            if offset + piece < stored:
                self.head_offset = offset + piece
            else:
                self.head_offset = 0
                self.fifo_head += 1
                if self.fifo_head == self.slots.slots:
                    self.fifo_head = 0
                self.fifo_len -= 1
                self.recycle(slot)
                self.slots.publish()
                self.arm()
        finally:
            PyBuffer_Release(&target)
        self.calls += 1
        self.datagrams += 1
        self.nbytes += copy
        if original > copy:
            self.truncated += 1
        self.hist[0] += 1
        return copy

    cdef int close(self, bint wait) except -1:
        """Cancel the receive; with ``wait``, settle it and return every slot to FREE now."""
        if self.closing:
            return 0
        self.closing = True
        self.fifo_len = 0
        if self.key:
            self.ring.cancel(self.key)
        _graveyard.append(self)       # alive until the kernel is done with its memory
        if not wait:
            self.ring.submit()
            if self.key == 0:
                self._finish()
            return 0
        if self.ring.settle(self, CLOSE_SETTLE_SECONDS) and not self.finished:
            self._finish()
        return 0

    cdef void _finish(self) noexcept:
        self.finished = True
        self.slots.unregister()
        try:
            self.slots.cancel_all()
        except BaseException:
            pass
        if self.fd >= 0:
            close(self.fd)
            self.fd = -1
        try:
            _graveyard.remove(self)
        except BaseException:
            pass


cdef object _os_error(int err, str context):
    try:
        raise_errno(err, context)
    except OSError as exc:
        return exc


cdef class UdpSocket:
    """A UDP socket whose receives are a multishot recvmsg on io_uring into its receive ring.

    Sends take the epoll driver's batch path (sendmmsg, UDP GSO runs) on the same socket.
    Open one with :meth:`bind` or :meth:`bind_dual_stack`.

    Example:
        >>> from horizon_drivers.uring import UdpSocket
        >>> with UdpSocket.bind("127.0.0.1:0") as sock:
        ...     sock.pending_receives > 0
        True
    """

    cdef object _tx
    cdef object _tx_send_batch        # _tx.send_batch, bound once
    cdef _UdpRx _rx
    cdef bint _closed
    cdef bint _busy
    cdef _PoolView _user_view
    cdef object __weakref__

    def __init__(self, tx, *, ring_slots=DEFAULT_RING_SLOTS, ring_payload=DEFAULT_RING_PAYLOAD):
        cdef int value = 0
        cdef socklen_t length = sizeof(value)
        if self._tx is not None:
            raise RuntimeError("UdpSocket is already initialised")
        if type(ring_slots) is not int or not 1 <= ring_slots <= 32768:
            raise ValueError(f"ring_slots must be an int from 1 to 32768, got {ring_slots!r}")
        if type(ring_payload) is not int or not 1 <= ring_payload <= 262144:
            raise ValueError(f"ring_payload must be an int from 1 to 262144, got {ring_payload!r}")
        fd = tx.fileno()
        if getsockopt(fd, SOL_UDP, UDP_GRO, &value, &length) != 0:
            value = 0
        self._rx = _UdpRx(_hub(), fd, ring_slots, ring_payload, value != 0)
        self._tx = tx
        self._tx_send_batch = tx.send_batch

    def __dealloc__(self):
        if self._rx is not None and not self._closed:
            try:
                self._rx.close(False)
            except BaseException:
                pass

    @classmethod
    def bind(cls, address, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
             ring_payload=DEFAULT_RING_PAYLOAD):
        """Open a UDP socket with ``config``'s options, bind it, and start receiving.

        Example:
            >>> from horizon_drivers.uring import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0", ring_slots=16) as sock:
            ...     sock.receive_pool.slot_count
            16
        """
        cfg = resolve_config(config)
        tx = _TxUdpSocket(*_opening.open_udp(address, cfg), cfg)
        try:
            return cls(tx, ring_slots=ring_slots, ring_payload=ring_payload)
        except BaseException:
            tx.close()
            raise

    @classmethod
    def bind_dual_stack(cls, port, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
                        ring_payload=DEFAULT_RING_PAYLOAD):
        """Bind ``[::]:port`` with IPV6_V6ONLY off, serving IPv4 and IPv6 peers.

        Example:
            >>> from horizon_drivers.uring import UdpSocket
            >>> with UdpSocket.bind_dual_stack(0) as sock:
            ...     sock.local_address.family
            6
        """
        cfg = resolve_config(config)
        tx = _TxUdpSocket(*_opening.open_udp_dual_stack(port, cfg), cfg)
        try:
            return cls(tx, ring_slots=ring_slots, ring_payload=ring_payload)
        except BaseException:
            tx.close()
            raise

    # -- what the socket tells ---------------------------------------------------------------

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def fileno(self):
        """The socket's descriptor, -1 once closed."""
        return -1 if self._closed else self._tx.fileno()

    @property
    def config(self):
        """The NetConfig the socket was opened with."""
        return self._tx.config

    @property
    def options(self):
        """What the config asked for and what the kernel did with it."""
        return self._tx.options

    @property
    def local_address(self):
        """This end's bound address."""
        return self._tx.local_address

    @property
    def family(self):
        """``socket.AF_INET`` or ``socket.AF_INET6``."""
        return self._tx.family

    @property
    def gso_max_segment(self):
        """The longest datagram batch sends coalesce into UDP GSO messages; 0: they do not."""
        return self._tx.gso_max_segment

    @property
    def receive_pool(self):
        """The receive ring's BufferPool: POSTED slots are the kernel's, FILLED ones queued."""
        return self._rx.slots.pool

    @property
    def pending_receives(self):
        """Receive buffers the kernel owns right now (POSTED slots)."""
        return self._rx.slots.posted

    @property
    def queued(self):
        """Datagram buffers received and waiting to be read (a GRO buffer counts once)."""
        return self._rx.fifo_len

    @property
    def ring_counters(self):
        """How the multishot receive went: arms (starts), ENOBUFS endings, cancellations.

        Example:
            >>> from horizon_drivers.uring import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0") as sock:
            ...     sock.ring_counters["arms"]
            1
        """
        return {"arms": self._rx.arms, "enobufs": self._rx.enobufs,
                "cancelled": self._rx.cancelled, "armed": self._rx.key != 0}

    @property
    def stats(self):
        """Counters and batch-size histograms since the socket opened (a StatsSnapshot)."""
        cdef _UdpRx rx = self._rx
        sent = self._tx.stats
        return attrs.evolve(
            sent,
            datagrams_received=rx.datagrams,
            bytes_received=rx.nbytes,
            truncated=rx.truncated,
            recv_calls=rx.calls,
            would_block=sent.would_block + rx.would_block,
            errors=sent.errors + rx.errors,
            recv_batch_sizes=tuple([rx.hist[i] for i in range(BUCKETS)]),
        )

    def __repr__(self):
        if self._closed:
            return "<uring UdpSocket closed>"
        return f"<uring UdpSocket fd={self._tx.fileno()} {self._tx.local_address}>"

    # -- receiving ---------------------------------------------------------------------------

    cdef int _check(self, str operation) except -1:
        if self._closed:
            raise SocketClosedError("UDP socket", operation)
        if self._busy:
            raise RuntimeError(f"cannot {operation} this socket: another receive is running")
        return 0

    def recv_batch(self, batch):
        """Move up to ``batch.capacity`` received datagrams into ``batch``; return how many.

        The batch must be empty (``release()`` it first). Raises ``BlockingIOError`` when
        nothing is waiting. A datagram longer than the batch's slots is cut, flagged truncated,
        with its true length in ``original_length``; a GRO buffer fills one slot per datagram.
        """
        cdef _PoolView view
        cdef _UdpRx rx = self._rx
        if type(batch) is not Batch:
            check_batch(batch)
        self._check("receive on")
        if slot_get(batch, Batch, _B_ACTIVE, "_active") is not True:
            batch._check_active()  # a freed batch is an error, as in the epoll driver
        cdef Py_ssize_t first = 0, count = 0
        rx.refresh()
        if rx.fifo_len == 0:
            # The batch is checked as a receive would (a batch still holding datagrams raises).
            begin_receive(batch, &first, &count)
            commit_receive(batch, 0)
            return rx.nothing_queued()
        pool = slot_get(batch, Batch, _B_POOL, "pool")
        view = self._user_view
        if view is None or not view.matches(pool):
            view = _PoolView(pool)
            self._user_view = view
        self._busy = True
        try:
            return rx.take(batch, pool, view)
        finally:
            self._busy = False

    def recv_from(self, buffer):
        """Receive one datagram into ``buffer``; return (bytes stored, sender).

        A datagram longer than ``buffer`` is cut to fit and counted in ``stats.truncated``.
        """
        cdef unsigned char packed[PACKED_SIZE]
        cdef Py_ssize_t stored
        self._check("receive on")
        stored = self._rx.take_one(buffer, packed)
        return stored, SocketAddress.unpack_from(bytes(packed[:PACKED_SIZE]), 0)

    def recv_into(self, buffer):
        """Receive one datagram (from the connected peer) into ``buffer``; return bytes stored."""
        cdef unsigned char packed[PACKED_SIZE]
        self._check("receive on")
        return self._rx.take_one(buffer, packed)

    # -- sending (the epoll driver's paths, on the same socket) -------------------------------

    def send_batch(self, datagrams, start=0):
        """Send datagrams ``start..`` in one sendmmsg (GSO runs); return how many went."""
        return self._tx_send_batch(datagrams, start)

    def send_to(self, data, address):
        """Send one datagram to ``address``; return its length."""
        return self._tx.send_to(data, address)

    def send(self, data):
        """Send one datagram to the connected peer; return its length."""
        return self._tx.send(data)

    def connect(self, address):
        """Fix the peer: ``send``/``recv_into`` use it and ICMP errors surface on receive."""
        if self._closed:
            raise SocketClosedError("UDP socket", "connect")
        self._tx.connect(address)

    # -- closing -----------------------------------------------------------------------------

    def close(self):
        """Cancel the receive, return every slot to FREE, close the socket. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._rx.close(True)
        finally:
            self._tx.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
