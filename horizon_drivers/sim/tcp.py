"""Simulated TCP: listeners and streams over the in-memory network.

Rules this module obeys:

* A connection is two ends, each sending an ordered channel of segments (SYN-ACK, data, FIN,
  RST) to the other. Segments are never lost, duplicated or reordered (TCP hides that); each
  takes one latency draw, and a segment never overtakes an earlier one of its channel.
* The stream lifecycle is the table :data:`STREAM_TRANSITIONS`; flags on an established end say
  what has been shut: ``rx_eof`` (the peer's FIN or RST arrived), ``tx_shut`` (this end's FIN
  or RST went), ``aborted`` (an RST arrived).
* Linux behaviours kept: ``recv_into`` returns queued bytes first, then raises
  ConnectionResetError once after an RST, then returns 0; ``send`` after ``shutdown_write``
  raises BrokenPipeError; closing with unread bytes sends RST instead of FIN; data arriving at a
  closed end is discarded and answered with one RST; a full accept queue (more than ``backlog``
  waiting) holds new SYNs until ``accept`` makes room; refusals take one latency draw.
* Flow control: an end may have at most ``send_buf + peer recv_buf`` bytes unread by the peer
  (in flight plus waiting in the peer's buffer); beyond that ``send`` raises BlockingIOError.
* Faults: ``send_eagain``/``recv_eagain`` make a call fail with EAGAIN by chance, and
  ``partial_write`` makes ``send`` take fewer bytes than offered.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
from collections import deque
from collections.abc import Mapping, Sequence

import attrs

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.contract import BytesLike, WritableBuffer
from horizon_core.events import Readiness
from horizon_core.options import OptionReport, SocketKind
from horizon_drivers.lifecycle import Closeable, ReleaseOnce
from horizon_drivers.sim.ports import (
    Binding,
    Node,
    SimulatedSocket,
    as_seen_by,
    buffer_size,
    oserror,
    reuseport_choice,
    simulated_report,
    wire,
)

__all__ = ["STREAM_TRANSITIONS", "SimTcpListener", "SimTcpStream", "StreamState", "StreamStep"]


class StreamState(enum.StrEnum):
    """Where one end of a simulated connection is."""

    CONNECTING = "connecting"
    ESTABLISHED = "established"
    FAILED = "failed"
    CLOSED = "closed"


class StreamStep(enum.StrEnum):
    """What moves a stream end from one state to another."""

    SYN_ACK = "syn-ack arrives"
    REFUSED = "connect fails"
    CLOSE = "close"


#: The stream lifecycle: (state, step) -> next state. A close from any state ends in CLOSED.
STREAM_TRANSITIONS: Mapping[tuple[StreamState, StreamStep], StreamState] = {
    (StreamState.CONNECTING, StreamStep.SYN_ACK): StreamState.ESTABLISHED,
    (StreamState.CONNECTING, StreamStep.REFUSED): StreamState.FAILED,
    (StreamState.CONNECTING, StreamStep.CLOSE): StreamState.CLOSED,
    (StreamState.ESTABLISHED, StreamStep.CLOSE): StreamState.CLOSED,
    (StreamState.FAILED, StreamStep.CLOSE): StreamState.CLOSED,
}


class _Segment(enum.StrEnum):
    SYN_ACK = "syn-ack"
    DATA = "data"
    FIN = "fin"
    RST = "rst"


class SimTcpStream(SimulatedSocket, Closeable):
    """One end of a simulated TCP connection (``TcpStream`` contract).

    Example:
        >>> from horizon_drivers.sim import SimNetwork
        >>> host = SimNetwork().add_host()
        >>> listener = host.bind_tcp("127.0.0.1:0")
        >>> client = host.connect_tcp(listener.local_address)
        >>> server, _ = listener.accept_nonblocking()
        >>> client.finish_connect(), client.send(b"hello")
        (True, 5)
        >>> client.shutdown_write()
        >>> buf = bytearray(16)
        >>> server.recv_into(buf), bytes(buf[:5]), server.recv_into(buf)
        (5, b'hello', 0)
    """

    def __init__(
        self,
        host: Node,
        config: NetConfig,
        family: int,
        local_wire: SocketAddress,
        peer_wire: SocketAddress,
        state: StreamState,
        options: OptionReport,
    ) -> None:
        super().__init__(host, config, family, options)
        self._local_wire = local_wire
        self._peer_wire = peer_wire
        self._state = state
        self._source_port: Binding | None = None
        self._other: SimTcpStream | None = None
        self._rx = bytearray()
        self._rx_eof = False
        self._tx_shut = False
        self._aborted = False
        self._rst_sent = False
        self._error: int | None = None
        self._connect_error: int | None = None
        self._in_flight = 0
        self._channel = self._net.now
        self._window = 0
        host.adopt_stream(self)

    @classmethod
    def connect(cls, host: Node, config: NetConfig, remote: SocketAddress) -> SimTcpStream:
        """Start connecting from ``host`` to ``remote`` (the driver's ``connect_tcp``)."""
        family = remote.family
        options = simulated_report(config, family, SocketKind.TCP_STREAM)
        options.raise_for_required()
        target = wire(remote)
        if target.port == 0:
            raise oserror(errno.EINVAL, "cannot connect to port 0")
        unspecified = ipaddress.ip_address(0) if target.family == 4 else ipaddress.IPv6Address(0)
        source_ip = host.source_for(unspecified, target.host)
        local_seen = as_seen_by(family, SocketAddress(source_ip, 0))
        net = host.network
        binding = host.ports.claim(None, "tcp", family, local_seen.host, 0, v6only=False, reuse_port=False)
        source = SocketAddress(source_ip, binding.port)
        stream = cls(host, config, family, source, target, StreamState.CONNECTING, options)
        binding.owner = stream
        stream._source_port = binding
        destination = host.route(target.host)
        net.record("tcp-syn", 0, source, target, 0)
        delay = net.faults.latency_delay(net.rng)
        at = max(net.now + delay, stream._channel)
        stream._channel = at
        if destination is None:
            net.schedule_at(at, lambda: stream._connect_failed(errno.EHOSTUNREACH))
        else:
            net.schedule_at(at, lambda: _syn_arrives(destination, stream, source, target))
        net.settle()
        return stream

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``reset()`` ran."""
        return self._state is StreamState.CLOSED

    @property
    def state(self) -> StreamState:
        """Where this end is in its lifecycle."""
        return self._state

    def _move(self, step: StreamStep) -> None:
        self._state = STREAM_TRANSITIONS[(self._state, step)]

    def close(self) -> None:
        """Close: FIN (or RST when unread bytes remain, as Linux); idempotent."""
        if self.closed:
            return
        if self._state is StreamState.ESTABLISHED and not self._aborted:
            if self._rx:
                self._send_rst()
            elif not self._tx_shut:
                self._tx_shut = True
                self._transmit(_Segment.FIN)
        self._finish_close()

    def reset(self) -> None:
        """Abort the connection: the peer gets ConnectionResetError (SO_LINGER 0, then close)."""
        self._check_open("reset")
        if self._state is StreamState.ESTABLISHED and not self._aborted:
            self._send_rst()
        self._finish_close()

    def _finish_close(self) -> None:
        self._move(StreamStep.CLOSE)
        if self._rx:
            self._net.ledger.tcp_discarded(len(self._rx), buffered=True)
            self._net.record(
                "tcp-discard", 0, self._peer_wire, self._local_wire, len(self._rx), "unread at close"
            )
            self._rx.clear()
        if self._source_port is not None:
            self._host.ports.release(self._source_port)
        self._host.forget_stream(self)
        self._net.settle()

    def __repr__(self) -> str:
        return f"<SimTcpStream {self._local_wire} -> {self._peer_wire} {self._state}>"

    # -- properties ------------------------------------------------------------------------

    @property
    def local_address(self) -> SocketAddress:
        """This end's address."""
        self._check_open("get the address of")
        return as_seen_by(self._family, self._local_wire)

    @property
    def peer_address(self) -> SocketAddress:
        """The other end's address."""
        self._check_open("get the peer of")
        return as_seen_by(self._family, self._peer_wire)

    # -- the contract --------------------------------------------------------------------------

    def finish_connect(self) -> bool:
        """True once connected, False while connecting; raises the connect error if it failed."""
        self._check_open("finish connecting")
        if self._state is StreamState.FAILED:
            assert self._connect_error is not None
            raise oserror(self._connect_error, f"connect to {self._peer_wire}")
        return self._state is StreamState.ESTABLISHED

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Read what has arrived into ``buffer``; 0 at end of stream."""
        self._check_open("receive on")
        self._check_connected()
        view = memoryview(buffer).cast("B")
        if len(view) == 0:
            return 0
        net = self._net
        if self._rx:
            if net.faults.recv_blocks(net.rng):
                net.record("recv-fault", 0, self._peer_wire, self._local_wire, 0, "EAGAIN")
                raise oserror(errno.EAGAIN, "injected by the fault plan")
            count = min(len(view), len(self._rx))
            view[:count] = self._rx[:count]
            del self._rx[:count]
            net.ledger.tcp_read(count)
            net.record("tcp-read", 0, self._peer_wire, self._local_wire, count)
            return count
        if self._error is not None:
            code, self._error = self._error, None
            raise oserror(code, f"from {self._peer_wire}")
        if self._rx_eof:
            return 0
        raise oserror(errno.EAGAIN, "no data waiting")

    def send(self, data: BytesLike) -> int:
        """Write what the connection takes now; return how many bytes (maybe fewer than given)."""
        self._check_open("send on")
        self._check_connected()
        if self._error is not None:
            code, self._error = self._error, None
            raise oserror(code, f"to {self._peer_wire}")
        if self._tx_shut:
            raise oserror(errno.EPIPE, "the write side is shut")
        payload = bytes(data)
        if not payload:
            return 0
        net = self._net
        if net.faults.stream_send_blocks(net.rng):
            net.record("send-fault", 0, self._local_wire, self._peer_wire, 0, "EAGAIN")
            raise oserror(errno.EAGAIN, "injected by the fault plan")
        room = self._room()
        if room <= 0:
            raise oserror(errno.EAGAIN, "the send window is full")
        count = net.faults.accepted_bytes(net.rng, min(len(payload), room))
        net.ledger.tcp_written(count)
        net.record(
            "tcp-send", 0, self._local_wire, self._peer_wire, count, "partial" if count < len(payload) else ""
        )
        self._transmit(_Segment.DATA, payload[:count])
        net.settle()
        return count

    def send_vectored(self, buffers: Sequence[BytesLike]) -> int:
        """Write several buffers in one call; return the bytes taken."""
        self._check_open("send on")
        return self.send(b"".join(bytes(b) for b in buffers))

    def shutdown_write(self) -> None:
        """Half close: send FIN; the peer reads end of stream, this end can still read."""
        self._check_open("shut down")
        if self._state is not StreamState.ESTABLISHED or self._aborted:
            raise oserror(errno.ENOTCONN, "the stream is not connected")
        if not self._tx_shut:
            self._tx_shut = True
            self._transmit(_Segment.FIN)
            self._net.settle()

    def _check_connected(self) -> None:
        if self._state is StreamState.FAILED:
            assert self._connect_error is not None
            raise oserror(self._connect_error, f"connect to {self._peer_wire}")
        if self._state is StreamState.CONNECTING:
            raise oserror(errno.EAGAIN, "still connecting")

    def _room(self) -> int:
        other = self._other
        unread = len(other._rx) if other is not None and not other.closed else 0
        return self._window - self._in_flight - unread

    # -- the network's side ----------------------------------------------------------------

    def readiness(self) -> Readiness:
        """What a poll would report now (level-triggered)."""
        state = self._state
        if state is StreamState.CLOSED or state is StreamState.CONNECTING:
            return Readiness(0)
        if state is StreamState.FAILED:
            return Readiness.READABLE | Readiness.WRITABLE | Readiness.ERROR | Readiness.HANGUP
        ready = Readiness(0)
        if self._rx or self._rx_eof or self._error is not None:
            ready |= Readiness.READABLE
        if self._error is not None:
            ready |= Readiness.ERROR
        # A shut write side does not block (send fails at once), so Linux reports it writable.
        if self._tx_shut or self._room() > 0:
            ready |= Readiness.WRITABLE
        if (self._rx_eof and self._tx_shut) or self._aborted:
            ready |= Readiness.HANGUP
        return ready

    def buffered_bytes(self) -> int:
        """Bytes arrived and not yet read (accounting checks)."""
        return len(self._rx)

    def link(self, other: SimTcpStream) -> None:
        """Pair this end with ``other`` and size the send window (driver internal)."""
        self._other = other
        self._window = buffer_size(self._config.send_buf) + buffer_size(other._config.recv_buf)

    def _send_rst(self) -> None:
        self._rst_sent = True
        self._tx_shut = True
        self._transmit(_Segment.RST)

    def _transmit(self, kind: _Segment, payload: bytes = b"") -> None:
        other = self._other
        assert other is not None, "a segment needs a linked peer"
        net = self._net
        delay = net.faults.latency_delay(net.rng)
        at = max(net.now + delay, self._channel)
        self._channel = at
        if kind is _Segment.DATA:
            self._in_flight += len(payload)
            net.wire_tcp_bytes += len(payload)
        net.schedule_at(at, lambda: other._receive(kind, payload, self))

    def _receive(self, kind: _Segment, payload: bytes, sender: SimTcpStream) -> None:
        net = self._net
        ledger = net.ledger
        if kind is _Segment.DATA:
            count = len(payload)
            sender._in_flight -= count
            net.wire_tcp_bytes -= count
            if self.closed or self._aborted:
                ledger.tcp_discarded(count, buffered=False)
                net.record(
                    "tcp-discard", 0, sender._local_wire, self._local_wire, count, "arrived at a closed end"
                )
                if self.closed and not self._rst_sent:
                    self._send_rst()
                return
            self._rx += payload
            ledger.tcp_arrived(count)
            net.record("tcp-arrive", 0, sender._local_wire, self._local_wire, count)
        elif kind is _Segment.FIN:
            if not (self.closed or self._aborted):
                self._rx_eof = True
                net.record("tcp-fin", 0, sender._local_wire, self._local_wire, 0)
        elif kind is _Segment.RST:
            if self.closed or self._aborted:
                return
            ledger.tcp_resets += 1
            net.record("tcp-rst", 0, sender._local_wire, self._local_wire, 0)
            self._aborted = True
            self._error = errno.ECONNRESET
            self._rx_eof = True
            self._tx_shut = True
        elif kind is _Segment.SYN_ACK:
            if self.closed:
                # The connect was abandoned: tell the server end.
                if not self._rst_sent:
                    self._send_rst()
            elif self._state is StreamState.CONNECTING:
                self._move(StreamStep.SYN_ACK)
                net.record("tcp-established", 0, sender._local_wire, self._local_wire, 0)

    def _connect_failed(self, code: int) -> None:
        if self._state is not StreamState.CONNECTING:
            return
        self._net.ledger.tcp_refused += 1
        self._net.record("tcp-refused", 0, self._peer_wire, self._local_wire, 0, errno.errorcode[code])
        self._connect_error = code
        self._move(StreamStep.REFUSED)


@attrs.define(slots=True)
class _Syn:
    client: SimTcpStream
    source: SocketAddress
    target: SocketAddress


class SimTcpListener(SimulatedSocket, ReleaseOnce):
    """A listening socket on a simulated host (``TcpListener`` contract)."""

    def __init__(self, host: Node, config: NetConfig, local: SocketAddress) -> None:
        options = simulated_report(config, local.family, SocketKind.TCP_LISTENER)
        options.raise_for_required()
        super().__init__(host, config, local.family, options)
        self._stream_options = simulated_report(config, self._family, SocketKind.TCP_STREAM)
        self._bind("tcp", local, v6only=local.family == 6 and config.ipv6_only is True, listening=True)
        self._backlog = config.tcp_backlog
        self._queue: deque[SimTcpStream] = deque()
        self._waiting: deque[_Syn] = deque()

    def _release(self) -> None:
        """Stop listening: connections not yet accepted are reset, waiting SYNs refused."""
        self._host.ports.release(self._binding)
        while self._queue:
            self._queue.popleft().reset()
        while self._waiting:
            syn = self._waiting.popleft()
            _refuse(syn.client)
        self._net.settle()

    def __repr__(self) -> str:
        return f"<SimTcpListener {self._local} on {self._host.label}, {len(self._queue)} waiting>"

    @property
    def local_address(self) -> SocketAddress:
        """The bound address (with the chosen port for port 0)."""
        return self._local

    def accept_nonblocking(self) -> tuple[SimTcpStream, SocketAddress]:
        """Take one established connection; BlockingIOError when none waits."""
        self._check_open("accept on")
        if not self._queue:
            raise oserror(errno.EAGAIN, "no connection waiting")
        stream = self._queue.popleft()
        if self._waiting and len(self._queue) <= self._backlog:
            syn = self._waiting.popleft()
            self._establish(syn.client, syn.source, syn.target)
            self._net.settle()
        return stream, as_seen_by(self._family, stream._peer_wire)

    def readiness(self) -> Readiness:
        """READABLE while a connection waits to be accepted."""
        if self._closed or not self._queue:
            return Readiness(0)
        return Readiness.READABLE

    def accepts(self, destination: SocketAddress) -> int:
        """-1 if a SYN to ``destination`` cannot reach this listener, else its score."""
        return -1 if self._closed else self._binding.address_score(destination)

    def syn(self, client: SimTcpStream, source: SocketAddress, target: SocketAddress) -> None:
        """A SYN arrived: establish, or hold it while the accept queue is full."""
        # Linux's sk_acceptq_is_full is "queued > backlog": backlog + 1 connections fit.
        if len(self._queue) > self._backlog:
            self._waiting.append(_Syn(client, source, target))
            self._net.record("tcp-syn-wait", 0, source, target, 0, "accept queue full")
            return
        self._establish(client, source, target)

    def _establish(self, client: SimTcpStream, source: SocketAddress, target: SocketAddress) -> None:
        server = SimTcpStream(
            self._host,
            self._config,
            self._family,
            target,
            source,
            StreamState.ESTABLISHED,
            self._stream_options,
        )
        server.link(client)
        client.link(server)
        self._queue.append(server)
        self._net.ledger.tcp_connections += 1
        self._net.record("tcp-accept-queue", 0, source, target, 0)
        server._transmit(_Segment.SYN_ACK)


def _syn_arrives(host: Node, client: SimTcpStream, source: SocketAddress, target: SocketAddress) -> None:
    chosen = reuseport_choice(
        (
            (listener, listener.accepts(target))
            for binding in host.ports.bindings("tcp", target.port)
            if binding.listening and isinstance(listener := binding.owner, SimTcpListener)
        ),
        source,
    )
    if chosen is None:
        _refuse(client)
    else:
        chosen.syn(client, source, target)


def _refuse(client: SimTcpStream) -> None:
    """RST in answer to a SYN: the client's connect fails with ECONNREFUSED."""
    net = client._net
    delay = net.faults.latency_delay(net.rng)
    net.schedule_at(net.now + delay, lambda: client._connect_failed(errno.ECONNREFUSED))
