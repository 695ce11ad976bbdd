# TCP streams: a multishot recv on the ring into the stream's own provided-buffer ring; sends,
# connect and shutdown are the epoll driver's calls on the same socket. Included by uring.pyx.
#
# The receive is armed only once the stream is connected: a receive on a connecting socket would
# consume its pending error (SO_ERROR), which finish_connect must report. A stream closed while
# received bytes wait unread closes abortively (SO_LINGER 0: a reset), as a kernel does when its
# own receive queue is not empty, so the peer sees the same thing as with the epoll driver.

#: Receive buffers each TCP stream keeps in its buffer ring, and their size.
STREAM_SLOTS = 8
STREAM_SLOT_SIZE = 65536


cdef class _StreamRx(_Receiver):
    """A stream's multishot recv, its slot ring and the bytes received but not yet read."""

    cdef _Ring ring
    cdef _SlotRing slots
    cdef int fd
    cdef uint64_t key
    cdef int *fifo
    cdef unsigned int fifo_head, fifo_len, head_offset
    cdef bint eof, armed_once, finished

    def __cinit__(self):
        self.fd = -1

    def __init__(self, _Ring ring, int fd):
        cdef unsigned int slot
        self.ring = ring
        self.slots = _SlotRing(STREAM_SLOTS, STREAM_SLOT_SIZE)
        self.fifo = <int *>calloc(STREAM_SLOTS, sizeof(int))
        if self.fifo == NULL:
            raise MemoryError("cannot allocate the stream's receive queue")
        self.fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if self.fd < 0:
            raise_errno(errno, "fcntl(F_DUPFD_CLOEXEC)")
        self.slots.register(ring)
        for slot in range(STREAM_SLOTS):
            self.slots.post(slot)
        self.slots.publish()

    def __dealloc__(self):
        free(self.fifo)
        if self.fd >= 0:
            close(self.fd)

    cdef int arm(self) except -1:
        cdef hz_uring_sqe *sqe
        if self.key or self.closing or self.eof or self.error is not None \
                or self.slots.posted == 0:
            return 0
        sqe = self.ring.get_sqe()
        sqe.opcode = HZ_OP_RECV
        sqe.fd = self.fd
        sqe.ioprio = HZ_RECV_MULTISHOT
        sqe.flags = HZ_IOSQE_BUFFER_SELECT
        sqe.buf_group = <uint16_t>self.slots.gid
        self.key = self.ring.new_key(self)
        sqe.user_data = self.key
        self.armed_once = True
        return 0

    cdef bint settled(self):
        return self.key == 0

    cdef bint readable(self):
        return self.fifo_len > 0 or self.eof or self.error is not None

    cdef bint polled(self):
        return not self.armed_once

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
                if self.closing or res <= 0:
                    self.slots.release(bid)
                    self.slots.post(bid)
                    self.slots.publish()
                else:
                    self.slots.view.lengths[bid] = <unsigned int>res if res <= STREAM_SLOT_SIZE \
                        else STREAM_SLOT_SIZE
                    self.slots.view.original_lengths[bid] = self.slots.view.lengths[bid]
                    self.fifo[(self.fifo_head + self.fifo_len) % STREAM_SLOTS] = bid
                    self.fifo_len += 1
        elif res == 0 and not self.closing:
            self.eof = True
        elif res < 0 and res != -ENOBUFS and res != -ECANCELED and not self.closing:
            self.error = _os_error(-res, "recv")
        if self.key == 0 and not self.closing:
            self.arm()
        elif self.key == 0 and self.closing and not self.finished:
            self._finish()
        return 0

    cdef Py_ssize_t take(self, object buffer) except -2:
        """Copy queued bytes into ``buffer``: their count, 0 at end of stream, -1 if none yet."""
        cdef Py_buffer target
        cdef Py_ssize_t done = 0, piece
        cdef unsigned int slot, length
        cdef bint recycled = False
        PyObject_GetBuffer(buffer, &target, PyBUF_SIMPLE | PyBUF_WRITABLE)
        try:
            if self.fifo_len == 0:
                self.ring.submit()
                self.ring.reap()
            while done < target.len and self.fifo_len > 0:
                slot = self.fifo[self.fifo_head]
                length = self.slots.view.lengths[slot]
                piece = length - self.head_offset
                if piece > target.len - done:
                    piece = target.len - done
                memcpy(<unsigned char *>target.buf + done,
                       self.slots.slot_memory(slot) + self.head_offset, piece)
                done += piece
                self.head_offset += <unsigned int>piece
                if self.head_offset >= length:
                    self.head_offset = 0
                    self.fifo_head = (self.fifo_head + 1) % STREAM_SLOTS
                    self.fifo_len -= 1
                    self.slots.release(slot)
                    self.slots.post(slot)
                    recycled = True
        finally:
            PyBuffer_Release(&target)
            if recycled:
                self.slots.publish()
                self.arm()
        if done or target.len == 0:
            return done
        if self.error is not None:
            # A reset ends the stream: reported once, then it reads as ended, as recv(2) does.
            exc, self.error = self.error, None
            self.eof = True
            raise exc
        return 0 if self.eof else -1

    cdef int close(self) except -1:
        if self.closing:
            return 0
        self.closing = True
        self.fifo_len = 0
        _graveyard.append(self)
        if self.key:
            self.ring.cancel(self.key)
            if not self.ring.settle(self, CLOSE_SETTLE_SECONDS):
                return 0
        if not self.finished:
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


cdef class TcpStream:
    """A TCP connection whose receives are a multishot recv on io_uring into its buffer ring.

    Sends, connect and shutdown are the epoll driver's calls on the same socket.

    Example:
        >>> from horizon_drivers.uring import TcpListener, TcpStream
        >>> with TcpListener.bind("127.0.0.1:0") as listener:
        ...     with TcpStream.connect(listener.local_address) as stream:
        ...         stream.closed
        False
    """

    cdef object _tx
    cdef _StreamRx _rx
    cdef bint _closed
    cdef bint _connected
    cdef object __weakref__

    def __init__(self, tx, *, connected=True):
        if self._tx is not None:
            raise RuntimeError("TcpStream is already initialised")
        self._rx = _StreamRx(_hub(), tx.fileno())
        self._tx = tx
        self._connected = bool(connected)
        if self._connected:
            self._rx.arm()

    def __dealloc__(self):
        if self._rx is not None and not self._closed:
            self._rx.closing = True
            if self._rx.key:
                try:
                    self._rx.ring.cancel(self._rx.key)
                    self._rx.ring.submit()
                except BaseException:
                    pass
            elif not self._rx.finished:
                self._rx._finish()

    @classmethod
    def connect(cls, address, config=None):
        """Start a nonblocking connect to ``address``; see :meth:`finish_connect`.

        Example:
            >>> from horizon_drivers.uring import TcpListener, TcpStream
            >>> with TcpListener.bind("127.0.0.1:0") as listener:
            ...     with TcpStream.connect(listener.local_address) as stream:
            ...         stream.options["tcp_nodelay"].effective
            1
        """
        cfg = resolve_config(config)
        tx = _TxTcpStream(*_opening.open_tcp_stream(address, cfg), cfg, connecting=True)
        try:
            return cls(tx, connected=False)
        except BaseException:
            tx.close()
            raise

    @property
    def closed(self):
        """True once ``close()`` ran."""
        return self._closed

    def fileno(self):
        """The stream's descriptor, -1 once closed."""
        return -1 if self._closed else self._tx.fileno()

    @property
    def config(self):
        """The NetConfig the stream was opened (or accepted) with."""
        return self._tx.config

    @property
    def options(self):
        """What the config asked for and what the kernel did with it."""
        return self._tx.options

    @property
    def local_address(self):
        """This end's address."""
        return self._tx.local_address

    @property
    def receive_pool(self):
        """The stream's receive BufferPool: POSTED slots are the kernel's, FILLED ones unread."""
        return self._rx.slots.pool

    @property
    def peer_address(self):
        """The other end's address."""
        return self._tx.peer_address

    def finish_connect(self):
        """True once connected (the receive starts then), False while connecting; raises its error."""
        if self._closed:
            raise SocketClosedError("TCP stream", "finish connecting")
        done = self._tx.finish_connect()
        if done and not self._connected:
            self._connected = True
            self._rx.arm()
        return done

    def recv_into(self, buffer):
        """Read into ``buffer``; 0 means the peer closed its write side. Raises BlockingIOError,
        ConnectionResetError on a reset."""
        cdef Py_ssize_t n
        if self._closed:
            raise SocketClosedError("TCP stream", "receive on")
        if not self._connected:
            return self._tx.recv_into(buffer)  # not connected yet: the kernel says what to say
        n = self._rx.take(buffer)
        if n < 0:
            raise BlockingIOError(EAGAIN, "no bytes are waiting")
        return n

    def send(self, data):
        """Write what the kernel takes now; return how many bytes."""
        return self._tx.send(data)

    def send_vectored(self, buffers):
        """Write several buffers in one sendmsg; return the bytes taken."""
        return self._tx.send_vectored(buffers)

    def shutdown(self, how=_socket.SHUT_RDWR):
        """shutdown(2) the stream."""
        self._tx.shutdown(how)

    def shutdown_write(self):
        """Half close: the peer reads end-of-stream, this end can still read."""
        self._tx.shutdown_write()

    def close(self):
        """Cancel the receive and close; unread received bytes make it a reset. Idempotent."""
        cdef linger abortive
        if self._closed:
            return
        self._closed = True
        try:
            if self._rx.fifo_len > 0 and self._tx.fileno() >= 0:
                abortive.l_onoff = 1
                abortive.l_linger = 0
                setsockopt(self._tx.fileno(), SOL_SOCKET, SO_LINGER, &abortive, sizeof(abortive))
            self._rx.close()
        finally:
            self._tx.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def __repr__(self):
        return "<uring TcpStream closed>" if self._closed else f"<uring TcpStream fd={self._tx.fileno()}>"
