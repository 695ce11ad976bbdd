# UdpSocket: overlapped WSARecvFrom receives in flight into the receive ring, nonblocking
# WSASendTo sends. Included by iocp.pyx.


#: Receives a UDP socket keeps in flight by default (its receive ring's slot count).
DEFAULT_RING_SLOTS = 32
#: Bytes per ring slot: every UDP datagram fits (65,507 bytes over IPv4), so its length is known.
DEFAULT_RING_SLOT_SIZE = 65536


cdef class UdpSocket(_Endpoint):
    """A UDP socket with overlapped receives in flight into its receive ring.

    Open one with :meth:`bind` or :meth:`bind_dual_stack`.

    Example:
        >>> from horizon_drivers.iocp import UdpSocket, harvest
        >>> with UdpSocket.bind("127.0.0.1:0") as a, UdpSocket.bind("127.0.0.1:0") as b:
        ...     a.send_to(b"hi", b.local_address)
        2
    """

    cdef object _ring
    cdef list _ring_batches
    cdef _PoolView _ring_view
    cdef _PoolView _user_view
    cdef int _ring_slots
    cdef int *_fifo
    cdef int _fifo_head, _fifo_len
    cdef bint _connected
    cdef object _pending_error
    cdef object _stats
    cdef readonly unsigned long long unknown_lengths
    #: Receives that came back cancelled (close, CancelIoEx) and the Win32 status of the last
    #: one: 995 (ERROR_OPERATION_ABORTED) on Windows; Wine reports 676 for a closed socket.
    cdef readonly unsigned long long cancelled
    cdef readonly unsigned long cancel_status

    def __init__(self, sock, options, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
                 ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        cdef int slot
        cdef BOOL off = 0
        cdef DWORD returned = 0
        if self._core != NULL:
            raise RuntimeError("UdpSocket is already initialised")
        if type(ring_slots) is not int or not 1 <= ring_slots <= 4096:
            raise ValueError(f"ring_slots must be an int from 1 to 4096, got {ring_slots!r}")
        if type(ring_slot_size) is not int or not 1 <= ring_slot_size <= 262144:
            raise ValueError(f"ring_slot_size must be an int from 1 to 262144, got {ring_slot_size!r}")
        if sock.type != _socket.SOCK_DGRAM:
            raise ValueError(f"expected a SOCK_DGRAM socket, got {sock!r}")
        self._ring = BufferPool(ring_slots, ring_slot_size)
        self._ring_batches = [self._ring.batch(1) for _ in range(ring_slots)]
        self._ring_view = _PoolView(self._ring)
        self._ring_slots = ring_slots
        self._fifo = <int *>calloc(ring_slots, sizeof(int))
        if self._fifo == NULL:
            raise MemoryError("cannot allocate the receive ring's queue")
        self._stats = Stats()
        self._adopt(sock, options, config, ring_slots)
        for slot in range(ring_slots):
            self._core.ops[slot].kind = OP_RECV_FROM
        # An unconnected socket ignores ICMP errors (as on Linux): one unreachable peer must
        # not fail a server's receives. Best effort: Wine accepts and ignores it.
        WSAIoctl(self._sock, SIO_UDP_CONNRESET, &off, sizeof(off), NULL, 0, &returned, NULL, NULL)
        for slot in range(ring_slots):
            self._post(slot)

    def __dealloc__(self):
        if self._core != NULL:
            self._core.owner = NULL
            self._closed = True
            if self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
            deadline = _time.monotonic() + CLOSE_DRAIN_SECONDS
            while self._core.pending > 0 and _time.monotonic() < deadline:
                _harvest(20, None)
            self._release_core(self._ring)
        free(self._fifo)
        self._fifo = NULL

    @classmethod
    def bind(cls, address, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
             ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        """Open a UDP socket with ``config``'s options (Windows meanings) and bind it.

        Example:
            >>> from horizon_drivers.iocp import UdpSocket
            >>> with UdpSocket.bind("127.0.0.1:0") as sock:
            ...     sock.local_address.port > 0
            True
        """
        from horizon_drivers.opening import open_udp

        cfg = resolve_config(config)
        sock, report = open_udp(address, cfg)
        try:
            return cls(sock, report, cfg, ring_slots=ring_slots, ring_slot_size=ring_slot_size)
        except BaseException:
            sock.close()
            raise

    @classmethod
    def bind_dual_stack(cls, port, config=None, *, ring_slots=DEFAULT_RING_SLOTS,
                        ring_slot_size=DEFAULT_RING_SLOT_SIZE):
        """Bind ``[::]:port`` with IPV6_V6ONLY off: one socket for IPv4 and IPv6 peers."""
        from horizon_drivers.opening import open_udp_dual_stack

        cfg = resolve_config(config)
        sock, report = open_udp_dual_stack(port, cfg)
        try:
            return cls(sock, report, cfg, ring_slots=ring_slots, ring_slot_size=ring_slot_size)
        except BaseException:
            sock.close()
            raise

    # -- the receive ring --------------------------------------------------------------------

    @property
    def receive_pool(self):
        """The receive ring: a BufferPool whose POSTED slots are receives in flight."""
        return self._ring

    @property
    def pending_receives(self):
        """Overlapped receives the kernel owns right now."""
        return 0 if self._core == NULL else self._core.pending

    @property
    def queued(self):
        """Datagrams received and waiting to be read."""
        return self._fifo_len

    @property
    def stats(self):
        """Counters and batch-size histograms since the socket opened (a StatsSnapshot)."""
        snapshot = self._stats.snapshot()
        return snapshot

    cdef int _post(self, int slot) except -1:
        """Post one overlapped WSARecvFrom into ring slot ``slot`` (FREE -> POSTED)."""
        cdef IoOp *op = &self._core.ops[slot]
        cdef DWORD nbytes = 0
        cdef int rc, err
        self._ring_batches[slot].post(slot)
        _begin(op)
        op.flags = 0
        op.namelen = NAME_BYTES
        op.buf.buf = <char *>(self._ring_view.memory + slot * self._ring_view.slot_size)
        op.buf.len = <ULONG>self._ring_view.slot_size
        rc = WSARecvFrom(self._sock, &op.buf, 1, &nbytes, &op.flags, <sockaddr *>&op.name,
                         &op.namelen, &op.ov, NULL)
        if rc == 0:
            # Finished at once; with SKIP_COMPLETION_PORT_ON_SUCCESS no packet will follow.
            _end(op)
            return self._completed(op, nbytes, 0)
        err = WSAGetLastError()
        if err == WSA_IO_PENDING or err == WSAEMSGSIZE:
            # A truncated datagram is a warning status (STATUS_BUFFER_OVERFLOW), not an error:
            # its completion packet is queued even when the call returns at once.
            return 0
        _end(op)
        self._ring_batches[slot].cancel(slot)
        self._note_error(err)
        return 0

    cdef void _note_error(self, DWORD err) noexcept:
        if err == ERROR_OPERATION_ABORTED:
            return
        try:
            self._pending_error = _error(err, "WSARecvFrom")
            self._stats.errors += 1
        except BaseException:
            pass

    cdef int _completed(self, IoOp *op, DWORD nbytes, DWORD err) except -1:
        cdef int slot = op.index
        cdef _PoolView ring = self._ring_view
        batch = self._ring_batches[slot]
        if self._closed:
            batch.cancel(slot)
            self.cancelled += 1
            self.cancel_status = err
            return 0
        if err == 0 or err == ERROR_MORE_DATA:
            if nbytes > <DWORD>ring.slot_size:
                nbytes = <DWORD>ring.slot_size
            if err == ERROR_MORE_DATA:
                self.unknown_lengths += 1
                batch.complete(slot, nbytes, original_length=ring.slot_size + 1)
            else:
                batch.complete(slot, nbytes)
            pack_sockaddr(&op.name, op.namelen, ring.addresses + slot * PACKED_SIZE)
            self._fifo[(self._fifo_head + self._fifo_len) % self._ring_slots] = slot
            self._fifo_len += 1
            return 0
        batch.cancel(slot)
        self._note_error(err)
        return self._post(slot)

    cdef int _refill(self) except -1:
        """Re-post every ring slot that is neither in flight nor queued."""
        cdef int slot
        states = self._ring.states
        for slot in range(self._ring_slots):
            if states[slot] == 0:
                self._post(slot)
        return 0

    cdef inline int _pop(self) noexcept:
        cdef int slot = self._fifo[self._fifo_head]
        self._fifo_head = (self._fifo_head + 1) % self._ring_slots
        self._fifo_len -= 1
        return slot

    cdef int _nothing_queued(self) except -1:
        """Raise the pending receive error, or BlockingIOError."""
        self._refill()
        if self._pending_error is not None:
            exc, self._pending_error = self._pending_error, None
            raise exc
        self._stats.would_block += 1
        raise BlockingIOError(11, "no datagram is waiting")

    cdef int _readiness(self) except -1:
        cdef int bits = 0
        if self._closed:
            return 0
        if self._fifo_len > 0:
            bits |= READABLE
        if self._pending_error is not None:
            bits |= READABLE | ERROR
        return bits | WRITABLE

    # -- receiving ---------------------------------------------------------------------------

    def recv_batch(self, batch):
        """Move up to ``batch.capacity`` received datagrams into ``batch``; return how many.

        The batch must be empty (``release()`` it first). Raises ``BlockingIOError`` when
        nothing is waiting. A datagram longer than the batch's slots is cut, flagged truncated,
        with its true length in ``original_length``.
        """
        cdef _PoolView view
        cdef _PoolView ring = self._ring_view
        cdef Py_ssize_t first, count, take, i, slot, dst
        cdef unsigned int length, stored, original
        cdef unsigned long long nbytes = 0
        cdef Py_ssize_t ntrunc = 0
        self._check("UDP socket", "receive on")
        check_batch(batch)
        _harvest(0, None)
        first, count = batch.begin_receive()
        take = count if count < self._fifo_len else self._fifo_len
        if take == 0:
            batch.commit_receive(0)
            self._stats.recv_calls += 1
            return self._nothing_queued()
        committed = False
        try:
            view = self._user_view
            if view is None or not view.matches(batch.pool):
                view = _PoolView(batch.pool)
                self._user_view = view
            for i in range(take):
                slot = self._pop()
                dst = first + i
                length = ring.lengths[slot]
                original = ring.original_lengths[slot]
                stored = length if length <= <unsigned int>view.slot_size else <unsigned int>view.slot_size
                memcpy(view.memory + dst * view.slot_size, ring.memory + slot * ring.slot_size, stored)
                view.lengths[dst] = stored
                view.original_lengths[dst] = original
                view.truncated[dst] = 1 if original > stored else 0
                view.segment_sizes[dst] = 0
                memcpy(view.addresses + dst * PACKED_SIZE, ring.addresses + slot * PACKED_SIZE, PACKED_SIZE)
                if original > stored:
                    ntrunc += 1
                nbytes += stored
                self._ring_batches[slot].release()
            batch.commit_receive(take)
            committed = True
        finally:
            if not committed:
                batch.commit_receive(0)
        self._stats.record_receive(take, nbytes, ntrunc)
        self._refill()
        return take

    cdef int _take_one(self, object buffer, Py_ssize_t *stored_out, unsigned char *packed) except -1:
        cdef Py_buffer view
        cdef _PoolView ring = self._ring_view
        cdef int slot
        cdef unsigned int length
        cdef Py_ssize_t stored
        _harvest(0, None)
        PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if self._fifo_len == 0:
                self._stats.recv_calls += 1
                return self._nothing_queued()
            slot = self._pop()
            length = ring.lengths[slot]
            stored = length if length <= view.len else view.len
            memcpy(view.buf, ring.memory + slot * ring.slot_size, stored)
            memcpy(packed, ring.addresses + slot * PACKED_SIZE, PACKED_SIZE)
            truncated = ring.original_lengths[slot] > <unsigned int>stored
            self._ring_batches[slot].release()
        finally:
            PyBuffer_Release(&view)
        self._stats.record_receive(1, stored, 1 if truncated else 0)
        self._refill()
        stored_out[0] = stored
        return 0

    def recv_from(self, buffer):
        """Receive one datagram into ``buffer``; return (bytes stored, sender).

        A datagram longer than ``buffer`` is cut to fit and counted in ``stats.truncated``.
        """
        cdef Py_ssize_t stored = 0
        cdef unsigned char packed[PACKED_SIZE]
        self._check("UDP socket", "receive on")
        self._take_one(buffer, &stored, packed)
        return stored, SocketAddress.unpack_from(bytes(packed[:PACKED_SIZE]), 0)

    def recv_into(self, buffer):
        """Receive one datagram (from the connected peer) into ``buffer``; return bytes stored."""
        cdef Py_ssize_t stored = 0
        cdef unsigned char packed[PACKED_SIZE]
        self._check("UDP socket", "receive on")
        self._take_one(buffer, &stored, packed)
        return stored

    # -- sending -----------------------------------------------------------------------------

    cdef int _send_one(self, const unsigned char *data, Py_ssize_t length,
                       const unsigned char *name, int namelen) except -1:
        """One nonblocking WSASendTo; 1 sent, 0 would block; raises other errors."""
        cdef WSABUF buf
        cdef DWORD sent = 0
        cdef int rc, err = 0
        cdef SOCKET sock = self._sock
        buf.buf = <char *>data
        buf.len = <ULONG>length
        self._busy += 1
        try:
            with nogil:
                rc = WSASendTo(sock, &buf, 1, &sent, 0,
                               <const sockaddr *>name if namelen > 0 else NULL, namelen, NULL, NULL)
                if rc != 0:
                    err = WSAGetLastError()
        finally:
            self._busy -= 1
            if self._closed and self._busy == 0 and self._sock != INVALID_SOCKET:
                closesocket(self._sock)
                self._sock = INVALID_SOCKET
        if rc == 0:
            return 1
        if err == WSAEWOULDBLOCK:
            return 0
        self._stats.errors += 1
        raise _error(err, "WSASendTo")

    def send_batch(self, datagrams, start=0):
        """Send datagrams ``start..`` with WSASendTo each; return how many went.

        ``datagrams`` is a Batch of FILLED slots (addresses in packed form) or
        ``(payload, address)`` pairs. Fewer than asked is a partial send; ``BlockingIOError``
        when the first one would block.
        """
        cdef _PoolView view
        cdef _Name name
        cdef int namelen = 0, rc
        cdef Py_ssize_t total, i, slot, sent = 0
        cdef unsigned long long nbytes = 0
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        if isinstance(datagrams, Batch):
            total = len(check_batch(datagrams))
            check_start(start, total)
            if start == total:
                return 0
            view = _PoolView(datagrams.pool)
            order = datagrams.order
            for i in range(start, total):
                slot = order[i]
                rc = unpack_sockaddr(view.addresses + slot * PACKED_SIZE, self._family, &name)
                if rc < 0:
                    if sent > 0:
                        break  # send what precedes it; the next call reports the bad slot
                    if rc == SOCKADDR_WRONG_FAMILY:
                        raise wrong_family_error(datagrams.address(i), 4)
                    raise ValueError(f"slot {slot} holds an invalid packed address")
                if not self._send_one(view.memory + slot * view.slot_size, view.lengths[slot],
                                      <unsigned char *>&name, rc):
                    break
                sent += 1
                nbytes += view.lengths[slot]
        else:
            items = datagrams if isinstance(datagrams, (list, tuple)) else list(datagrams)
            total = len(items)
            check_start(start, total)
            if start == total:
                return 0
            for i in range(start, total):
                payload, address = items[i]
                if address is None:
                    namelen = 0
                else:
                    try:
                        _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
                    except OSError:  # the other family: send what precedes it, as with a Batch
                        if sent == 0:
                            raise
                        break
                PyObject_GetBuffer(payload, &buf, PyBUF_SIMPLE)
                try:
                    ok = self._send_one(<unsigned char *>buf.buf, buf.len,
                                        <unsigned char *>&name, namelen)
                    length = buf.len
                finally:
                    PyBuffer_Release(&buf)
                if not ok:
                    break
                sent += 1
                nbytes += length
        if sent == 0:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(total - start, sent, nbytes)
        return sent

    def send_to(self, data, address):
        """Send one datagram to ``address``; return its length."""
        cdef _Name name
        cdef int namelen = 0
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            ok = self._send_one(<unsigned char *>buf.buf, buf.len, <unsigned char *>&name, namelen)
            length = buf.len
        finally:
            PyBuffer_Release(&buf)
        if not ok:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(1, 1, length)
        return length

    def connect(self, address):
        """Fix the peer; ICMP refusals then surface as ConnectionRefusedError on receive."""
        cdef _Name name
        cdef int namelen = 0
        cdef BOOL on = 1
        cdef DWORD returned = 0
        self._check("UDP socket", "connect")
        _sockaddr_of(address, self._family, <unsigned char *>&name, &namelen)
        if connect(self._sock, <sockaddr *>&name, namelen) != 0:
            raise _error(WSAGetLastError(), "connect")
        WSAIoctl(self._sock, SIO_UDP_CONNRESET, &on, sizeof(on), NULL, 0, &returned, NULL, NULL)
        self._connected = True

    def send(self, data):
        """Send one datagram to the connected peer; return its length."""
        cdef Py_buffer buf
        self._check("UDP socket", "send on")
        PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        try:
            ok = self._send_one(<unsigned char *>buf.buf, buf.len, NULL, 0)
            length = buf.len
        finally:
            PyBuffer_Release(&buf)
        if not ok:
            self._stats.would_block += 1
            raise BlockingIOError(11, "WSASendTo would block")
        self._stats.record_send(1, 1, length)
        return length

    def close(self):
        """Close: cancel the receives in flight and return every ring slot to FREE. Idempotent."""
        cdef int slot
        if self._closed:
            return
        self._closed = True
        self._shut()
        while self._fifo_len > 0:
            slot = self._pop()
            self._ring_batches[slot].release()
        self._release_core(self._ring)

    def __repr__(self):
        if self._closed:
            return "<iocp.UdpSocket closed>"
        return (f"<iocp.UdpSocket handle={<unsigned long long>self._sock} "
                f"posted={self._core.pending} queued={self._fifo_len}>")
