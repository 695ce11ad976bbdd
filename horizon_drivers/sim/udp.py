"""Simulated UDP sockets: the sync ``UdpSocket`` contract over the in-memory network.

Rules this module obeys (each as Linux does it, unless the docstring says otherwise):

* A receive buffer holds at most ``config.recv_buf`` payload bytes (the Linux default 212992
  when None; no per-datagram overhead is charged). A datagram that does not fit is dropped
  with reason "receive buffer full" and counted in ``stats.kernel_drops`` (SO_RXQ_OVFL).
* A datagram longer than the receiving slot or buffer is cut to fit; ``recv_batch`` flags it
  truncated with its true length (MSG_TRUNC). The rest of it is gone, as with the kernel.
* A connected socket only receives from its peer, and an ICMP port-unreachable for its peer makes
  its next send or receive raise ConnectionRefusedError (the error is then cleared). Unconnected
  sockets ignore ICMP errors (Linux without IP_RECVERR).
* Payloads are limited to 65507 bytes over IPv4 and 65527 over IPv6 (EMSGSIZE). With
  ``config.udp_gso_segment`` set, a longer send is split into segments of that size (at most 64),
  as UDP_SEGMENT does; GRO never coalesces here (``segment_size`` is always 0).
* The order of checks in a send: closed socket, pending ICMP error, address and size, then the
  fault plan's chance errors (EAGAIN, ENOBUFS).
"""

from __future__ import annotations

import errno
import ipaddress
from collections import deque
from collections.abc import Iterator
from typing import Final

import attrs

from horizon_core.addresses import SocketAddress, as_socket_address, wrong_family_error
from horizon_core.buffers import Batch, check_batch, check_start
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike, BytesLike, Datagrams, WritableBuffer
from horizon_core.events import Readiness
from horizon_core.options import SocketKind
from horizon_core.stats import Stats, StatsSnapshot
from horizon_drivers.lifecycle import ReleaseOnce
from horizon_drivers.sim.ledger import DatagramEvent, DropReason
from horizon_drivers.sim.ports import (
    Node,
    SimulatedSocket,
    as_seen_by,
    buffer_size,
    oserror,
    reuseport_choice,
    simulated_report,
    wire,
)

__all__ = ["SimUdpSocket"]

MAX_PAYLOAD: Final = {4: 65507, 6: 65527}
#: UDP_MAX_SEGMENTS in the Linux kernel.
MAX_GSO_SEGMENTS: Final = 64


@attrs.define(slots=True)
class _Queued:
    ident: int
    payload: bytes
    source: SocketAddress  # as this socket sees it (mapped on an IPv6 socket)


class SimUdpSocket(SimulatedSocket, ReleaseOnce):
    """A UDP socket on a :class:`~horizon_drivers.sim.host.SimHost` (``UdpSocket`` contract).

    Example:
        >>> from horizon_core.buffers import BufferPool
        >>> from horizon_drivers.sim import SimNetwork
        >>> host = SimNetwork().add_host()
        >>> a, b = host.bind_udp("127.0.0.1:0"), host.bind_udp("127.0.0.1:0")
        >>> a.send_batch([(b"one", b.local_address), (b"two", b.local_address)])
        2
        >>> batch = BufferPool(4, 2).batch(4)
        >>> b.recv_batch(batch), [(bytes(d.payload), d.truncated, d.original_length) for d in batch]
        (2, [(b'on', True, 3), (b'tw', True, 3)])
    """

    def __init__(self, host: Node, config: NetConfig, local: SocketAddress, v6only: bool) -> None:
        # Everything is checked before the port is claimed: a refused bind leaves nothing behind.
        options = simulated_report(config, local.family, SocketKind.UDP)
        options.raise_for_required()
        super().__init__(host, config, local.family, options)
        self._v6only = v6only
        self._bind("udp", local, v6only=v6only)
        self._peer: SocketAddress | None = None  # wire form
        self._queue: deque[_Queued] = deque()
        self._queued_bytes = 0
        self._capacity = buffer_size(config.recv_buf)
        self._error: int | None = None
        self._drops = 0
        self._stats = Stats(kernel_drops=0 if config.rx_drop_counter else None)

    # -- lifecycle -------------------------------------------------------------------------

    def _release(self) -> None:
        """Release the port; datagrams still queued are dropped ("socket closed"). Idempotent."""
        self._host.ports.release(self._binding)
        self._host.forget_udp(self)
        while self._queue:
            item = self._queue.popleft()
            self._net.ledger.datagram_moved(item.ident, DatagramEvent.DROP, DropReason.SOCKET_CLOSED)
            self._net.record(
                "drop", item.ident, item.source, self._local, len(item.payload), DropReason.SOCKET_CLOSED
            )
        self._queued_bytes = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)} queued"
        return f"<SimUdpSocket {self._local} on {self._host.label}, {state}>"

    # -- properties ------------------------------------------------------------------------

    @property
    def local_address(self) -> SocketAddress:
        """The bound address (the chosen port for port 0; the source address once connected)."""
        return self._local

    @property
    def peer_address(self) -> SocketAddress | None:
        """The connected peer as this socket sees it, or None."""
        return None if self._peer is None else as_seen_by(self._family, self._peer)

    @property
    def stats(self) -> StatsSnapshot:
        """Counters since the socket opened; ``kernel_drops`` counts receive-buffer overflows."""
        if self._stats.kernel_drops is not None:
            self._stats.kernel_drops = self._drops
        return self._stats.snapshot()

    @property
    def family(self) -> int:
        """4 or 6."""
        return self._family

    # -- sending ---------------------------------------------------------------------------

    def connect(self, address: AddressLike) -> None:
        """Fix the peer: only its datagrams are received, and ICMP errors are reported."""
        self._check_open("connect")
        target = self._destination(as_socket_address(address))
        source = self._host.source_for(self._binding_ip(), target.host)
        self._peer = target
        if self._local.host.is_unspecified:
            # Linux binds a connected socket to the source address of the route (getsockname).
            seen = as_seen_by(self._family, SocketAddress(source, self._local.port))
            self._local = seen
            self._binding.host = seen.host

    def send_to(self, data: BytesLike, address: AddressLike) -> int:
        """Send one datagram to ``address``; return its length."""
        self._check_open("send_to")
        payload = bytes(data)
        self._stats.count_send(lambda: self._send_one(payload, self._destination(as_socket_address(address))))
        return len(payload)

    def send(self, data: BytesLike) -> int:
        """Send one datagram to the connected peer (EDESTADDRREQ when not connected)."""
        self._check_open("send")
        payload = bytes(data)

        def send_to_peer() -> int:
            if self._peer is None:
                self._raise_pending()
                raise oserror(errno.EDESTADDRREQ, "the socket is not connected")
            return self._send_one(payload, self._peer)

        self._stats.count_send(send_to_peer)
        return len(payload)

    def send_batch(self, datagrams: Datagrams, start: int = 0) -> int:
        """Send datagrams ``start..``; return how many went. An error after at least one went
        ends the batch early and is not raised (sendmmsg); an error on the first is raised.
        Datagrams of a Batch without an address go to the connected peer."""
        self._check_open("send_batch")
        if isinstance(datagrams, Batch):
            check_batch(datagrams)
        items = self._items(datagrams)
        items = items[check_start(start, len(items)) :]
        sent = 0
        nbytes = 0
        error: OSError | None = None
        for payload, address in items:
            try:
                self._send_one(payload, self._target_or_peer(address))
            except OSError as exc:
                error = exc
                break
            sent += 1
            nbytes += len(payload)
        return self._stats.finish_batch_send(len(items), sent, nbytes, error)

    def _items(self, datagrams: Datagrams) -> list[tuple[bytes, SocketAddress | None]]:
        # Addresses are parsed before anything is sent (a malformed one is a caller bug, a
        # ValueError); whether each can be reached is the send's business, datagram by datagram.
        if isinstance(datagrams, Batch):
            return [(bytes(datagrams.payload(i)), datagrams.address(i)) for i in range(len(datagrams))]
        return [(bytes(payload), as_socket_address(address)) for payload, address in datagrams]

    def _target_or_peer(self, address: SocketAddress | None) -> SocketAddress:
        if address is not None:
            return self._destination(address)
        if self._peer is None:
            raise oserror(errno.EDESTADDRREQ, "a datagram has no address and no peer is set")
        return self._peer

    def _destination(self, address: SocketAddress) -> SocketAddress:
        """Validate a user-given destination; return its wire form."""
        plain = address.unmapped()
        if self._family == 4 and plain.family == 6:
            raise wrong_family_error(address, self._family)
        if self._family == 6 and plain.family == 4 and self._v6only:
            raise oserror(errno.ENETUNREACH, f"IPV6_V6ONLY socket cannot reach {address}")
        if plain.port == 0:
            raise oserror(errno.EINVAL, "destination port 0")
        return wire(plain)

    def _binding_ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self._local.unmapped().host

    def _raise_pending(self) -> None:
        if self._error is not None:
            code, self._error = self._error, None
            raise oserror(code, "ICMP port unreachable")

    def _send_one(self, payload: bytes, target: SocketAddress) -> int:
        self._raise_pending()
        limit = MAX_PAYLOAD[target.family]
        if len(payload) > limit:
            raise oserror(errno.EMSGSIZE, f"{len(payload)} bytes > {limit}")
        segments = [payload]
        gso = self._config.udp_gso_segment
        if gso is not None and len(payload) > gso:
            if -(-len(payload) // gso) > MAX_GSO_SEGMENTS:
                raise oserror(errno.EINVAL, f"more than {MAX_GSO_SEGMENTS} UDP_SEGMENT segments")
            segments = [payload[i : i + gso] for i in range(0, len(payload), gso)]
        source_ip = self._host.source_for(self._binding_ip(), target.host)
        if source_ip.version != target.family:
            raise oserror(errno.ENETUNREACH, f"{source_ip} cannot reach {target}")
        source = SocketAddress(source_ip, self._local.port)
        net = self._net
        code = net.faults.send_error(net.rng)
        if code is not None:
            net.record("send-fault", 0, source, target, len(payload), errno.errorcode[code])
            raise oserror(code, "injected by the fault plan")
        for segment in segments:
            transmit(self._host, segment, source, target)
        return len(payload)

    # -- receiving -------------------------------------------------------------------------

    def recv_batch(self, batch: Batch) -> int:
        """Receive up to ``batch.capacity`` datagrams; BlockingIOError when none waits now."""
        check_batch(batch)
        self._check_open("recv_batch")
        stats = self._stats
        first, count = batch.begin_receive()
        try:
            ready = self._ready_to_read()
        except OSError:
            batch.commit_receive(0)
            stats.errors += 1
            raise
        if not ready:
            batch.commit_receive(0)
            stats.record_receive(0, 0)
            stats.would_block += 1
            raise oserror(errno.EAGAIN, "no datagram is waiting")
        pool = batch.pool
        size = pool.slot_size
        filled = nbytes = ntrunc = 0
        while filled < count and self._queue:
            item = self._take()
            slot = first + filled
            stored = min(len(item.payload), size)
            pool.slot_view(slot)[:stored] = item.payload[:stored]
            batch.record(slot, stored, len(item.payload), item.source)
            cut = stored < len(item.payload)
            self._delivered(item, cut)
            filled += 1
            nbytes += stored
            ntrunc += cut
        batch.commit_receive(filled)
        stats.record_receive(filled, nbytes, ntrunc)
        return filled

    def recv_from(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]:
        """Receive one datagram into ``buffer``; return (bytes stored, sender). A longer
        datagram is cut to fit, silently, as recvfrom does (``recv_batch`` flags it)."""
        self._check_open("recv_from")
        return self._recv_one(buffer)

    def recv_into(self, buffer: WritableBuffer) -> int:
        """Receive one datagram (from the peer, when connected) into ``buffer``."""
        self._check_open("recv_into")
        return self._recv_one(buffer)[0]

    def _recv_one(self, buffer: WritableBuffer) -> tuple[int, SocketAddress]:
        stats = self._stats
        view = memoryview(buffer).cast("B")
        try:
            ready = self._ready_to_read()
        except OSError:
            stats.errors += 1
            raise
        if not ready:
            stats.record_receive(0, 0)
            stats.would_block += 1
            raise oserror(errno.EAGAIN, "no datagram is waiting")
        item = self._take()
        stored = min(len(item.payload), len(view))
        view[:stored] = item.payload[:stored]
        cut = stored < len(item.payload)
        self._delivered(item, cut)
        stats.record_receive(1, stored, int(cut))
        return stored, item.source

    def _ready_to_read(self) -> bool:
        """Raise a pending ICMP error; draw the chance EAGAIN; say whether a datagram waits."""
        self._raise_pending()
        if not self._queue:
            return False
        net = self._net
        if net.faults.recv_blocks(net.rng):
            net.record("recv-fault", 0, "", self._local, 0, "EAGAIN")
            return False
        return True

    def _take(self) -> _Queued:
        item = self._queue.popleft()
        self._queued_bytes -= len(item.payload)
        return item

    def _delivered(self, item: _Queued, cut: bool) -> None:
        self._net.ledger.datagram_moved(item.ident, DatagramEvent.READ, truncated=cut)
        self._net.record(
            "read", item.ident, item.source, self._local, len(item.payload), "truncated" if cut else ""
        )

    # -- the network's side ----------------------------------------------------------------

    def readiness(self) -> Readiness:
        """What a poll would report now (level-triggered)."""
        if self._closed:
            return Readiness(0)
        ready = Readiness.WRITABLE
        if self._queue:
            ready |= Readiness.READABLE
        if self._error is not None:
            ready |= Readiness.READABLE | Readiness.ERROR
        return ready

    def accepts(self, destination: SocketAddress, source: SocketAddress) -> int:
        """-1 if a datagram from ``source`` to ``destination`` (wire forms) cannot reach this
        socket, else its score: connected beats unconnected, a specific address a wildcard."""
        score = -1 if self._closed else self._binding.address_score(destination)
        if score < 0:
            return -1
        if self._peer is not None:
            if self._peer != source:
                return -1
            score += 2
        return score

    def enqueue(self, ident: int, payload: bytes, source: SocketAddress) -> None:
        """A datagram arrived: queue it, or drop it if the receive buffer has no room."""
        net = self._net
        seen = as_seen_by(self._family, source)
        if self._queued_bytes + len(payload) > self._capacity:
            self._drops += 1
            net.ledger.datagram_moved(ident, DatagramEvent.DROP, DropReason.RECEIVE_BUFFER_FULL)
            net.record("drop", ident, seen, self._local, len(payload), DropReason.RECEIVE_BUFFER_FULL)
            return
        self._queue.append(_Queued(ident, payload, seen))
        self._queued_bytes += len(payload)
        net.ledger.datagram_moved(ident, DatagramEvent.ARRIVE)
        net.record("queue", ident, seen, self._local, len(payload))

    def icmp_refused(self, remote: SocketAddress) -> bool:
        """An ICMP port-unreachable about ``remote`` came back; True if this socket takes it."""
        if self._closed or self._peer != remote:
            return False
        self._error = errno.ECONNREFUSED
        return True

    def queue_state(self) -> tuple[list[int], int, int]:
        """(queued datagram ids, queued bytes, capacity), for the accounting checks."""
        return [item.ident for item in self._queue], self._queued_bytes, self._capacity


def transmit(host: Node, payload: bytes, source: SocketAddress, target: SocketAddress) -> None:
    """Put one datagram on the wire from ``host``: draw its fate, schedule what follows."""
    net = host.network
    ident = net.ledger.datagram_sent(len(payload))
    net.record("send", ident, source, target, len(payload))
    duplicate = _launch(host, ident, payload, source, target, copy=False)
    if duplicate:
        copy_ident = net.ledger.datagram_sent(len(payload), duplicate=True)
        net.record("duplicate", copy_ident, source, target, len(payload), f"copy of #{ident}")
        _launch(host, copy_ident, payload, source, target, copy=True)
    net.settle()


def _launch(
    host: Node,
    ident: int,
    payload: bytes,
    source: SocketAddress,
    target: SocketAddress,
    *,
    copy: bool,
) -> bool:
    """Decide one datagram's fate and schedule it; return whether the network duplicates it."""
    net = host.network
    ledger = net.ledger
    destination = host.route(target.host)
    if destination is None:
        ledger.datagram_moved(ident, DatagramEvent.DROP, DropReason.NO_SUCH_HOST)
        net.record("drop", ident, source, target, len(payload), DropReason.NO_SUCH_HOST)
        return False
    fate = net.faults.datagram_fate(net.rng, len(payload), copy=copy)
    if fate.lost:
        ledger.datagram_moved(ident, DatagramEvent.DROP, DropReason.LOSS)
        net.record("drop", ident, source, target, len(payload), DropReason.LOSS)
        return False
    if fate.port_unreachable:
        ledger.datagram_moved(ident, DatagramEvent.DROP, DropReason.PORT_UNREACHABLE)
        net.record("drop", ident, source, target, len(payload), DropReason.PORT_UNREACHABLE)
        _send_icmp(destination, host, source, target)
        return False
    body = payload
    if fate.truncated:
        body = payload[: fate.length]
        ledger.truncated_in_network += 1
        net.record("truncate", ident, source, target, len(body), f"was {len(payload)}")
    if fate.reordered:
        net.record("reorder", ident, source, target, len(body), f"arrives in {fate.delay:.6f}s")
    net.wire_datagrams.add(ident)
    net.schedule_at(net.now + fate.delay, lambda: _arrive(destination, host, ident, body, source, target))
    return fate.duplicated


def _arrive(
    host: Node,
    sender: Node,
    ident: int,
    payload: bytes,
    source: SocketAddress,
    target: SocketAddress,
) -> None:
    net = host.network
    net.wire_datagrams.discard(ident)
    # SO_REUSEPORT: one socket of the group, chosen by a stable hash of the flow.
    chosen = reuseport_choice(
        ((sock, sock.accepts(target, source)) for sock in _sockets_on(host, target.port)), source
    )
    if chosen is None:
        net.ledger.datagram_moved(ident, DatagramEvent.DROP, DropReason.NO_SUCH_PORT)
        net.record("drop", ident, source, target, len(payload), DropReason.NO_SUCH_PORT)
        _send_icmp(host, sender, source, target)
        return
    chosen.enqueue(ident, payload, source)


def _sockets_on(host: Node, port: int) -> Iterator[SimUdpSocket]:
    """The UDP sockets bound to ``port`` on ``host``, oldest first."""
    for binding in host.ports.bindings("udp", port):
        sock = binding.owner
        assert isinstance(sock, SimUdpSocket)
        yield sock


def _send_icmp(origin: Node, sender: Node, source: SocketAddress, target: SocketAddress) -> None:
    """ICMP port-unreachable from ``origin`` back to the datagram's ``source`` on ``sender``.

    ICMP is never lost, duplicated or reordered; it takes one latency draw to come back.
    """
    net = origin.network
    net.ledger.icmp_errors += 1
    delay = net.faults.latency_delay(net.rng)

    def deliver() -> None:
        taken = any(sock.icmp_refused(target) for sock in _sockets_on(sender, source.port))
        note = "port unreachable" if taken else "port unreachable, ignored"
        net.record("icmp", 0, target, source, 0, note)

    net.schedule_at(net.now + delay, deliver)
