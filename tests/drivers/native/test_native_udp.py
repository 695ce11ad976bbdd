"""The native driver's UDP socket, on loopback: batch receive/send, sizes, errors, options."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import attrs
import pytest

from tests.drivers.native.native_helpers import (  # first: it skips this module off Linux
    LOOPBACKS,
    WAIT,
    bracket,
    link_local_address,
    wait_readable,
)

# isort: split
from horizon_drivers.native.linux.address import _sockaddr_roundtrip

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.contract import UdpSocket as UdpSocketProtocol
from horizon_core.errors import SocketClosedError
from horizon_core.options import OptionStatus
from horizon_drivers import native
from horizon_drivers.native import MAX_BATCH, UdpSocket

MAX_UDP_PAYLOAD = 65507


@pytest.fixture
def sockets() -> Iterator[Callable[..., UdpSocket]]:
    """A factory of bound UDP sockets, all closed at the end of the test."""
    with ExitStack() as stack:

        def make(address: str, config: NetConfig | None = None) -> UdpSocket:
            return stack.enter_context(UdpSocket.bind(address, config))

        yield make


def _recv_all(sock: UdpSocket, pool: BufferPool, expected: int) -> list[tuple[bytes, bool, int]]:
    """Receive ``expected`` datagrams (bounded waits); return (payload, truncated, true length)."""
    batch = pool.batch(pool.slot_count)
    got: list[tuple[bytes, bool, int]] = []
    try:
        while len(got) < expected:
            wait_readable(sock)
            sock.recv_batch(batch)
            got.extend((bytes(d.payload), d.truncated, d.original_length) for d in batch)
            batch.release()
    finally:
        pool.free_batch(batch)
    return got


def test_satisfies_the_contract_protocol(sockets: Callable[..., UdpSocket]) -> None:
    assert isinstance(sockets("127.0.0.1:0"), UdpSocketProtocol)


def test_binds_any_ipv4_address(sockets: Callable[..., UdpSocket]) -> None:
    # The reference byte-swapped the address and could only bind 0.0.0.0.
    sock = sockets("127.0.0.2:0")
    assert str(sock.local_address.host) == "127.0.0.2"
    assert sock.local_address.port > 0


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize("size", [0, 1, 2048, MAX_UDP_PAYLOAD])
def test_datagram_sizes_survive(
    sockets: Callable[..., UdpSocket], host: str, size: int
) -> None:
    slot = 2048 if size <= 2048 else 65536
    rx, tx = sockets(bracket(host)), sockets(bracket(host))
    payload = os.urandom(size)
    assert tx.send_to(payload, rx.local_address) == size
    [(data, truncated, true_length)] = _recv_all(rx, BufferPool(4, slot), 1)
    assert (data, truncated, true_length) == (payload, False, size)
    assert rx.stats.bytes_received == size


@pytest.mark.parametrize("host", LOOPBACKS)
def test_oversized_datagram_is_flagged_with_its_true_length(
    sockets: Callable[..., UdpSocket], host: str
) -> None:
    rx, tx = sockets(bracket(host)), sockets(bracket(host))
    pool = BufferPool(4, 64)
    payload = os.urandom(65)  # slot size + 1
    tx.send_to(payload, rx.local_address)
    tx.send_to(b"after", rx.local_address)
    got = _recv_all(rx, pool, 2)
    assert got[0] == (payload[:64], True, 65)
    # The next, smaller datagram is unaffected (the reference shrank buffers for ever).
    assert got[1] == (b"after", False, 5)
    assert rx.stats.truncated == 1
    assert list(pool.lengths[:2]) == [64, 5]


def test_batch_of_one_takes_one_datagram(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    for i in range(3):
        tx.send_to(bytes([i]), rx.local_address)
    pool = BufferPool(1, 16)
    batch = pool.batch(1)
    for i in range(3):
        wait_readable(rx)
        assert rx.recv_batch(batch) == 1
        assert bytes(batch.payload(0)) == bytes([i])
        batch.release()
    with pytest.raises(BlockingIOError):
        rx.recv_batch(batch)


def test_batch_of_the_whole_pool(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    pool = BufferPool(64, 32)
    pairs = [(i.to_bytes(2, "big"), rx.local_address) for i in range(64)]
    assert tx.send_batch(pairs) == 64
    batch = pool.batch(64)
    wait_readable(rx)
    # Loopback delivers synchronously: all 64 are queued before the first recvmmsg.
    assert rx.recv_batch(batch) == 64
    assert [int.from_bytes(d.payload, "big") for d in batch] == list(range(64))
    assert all(d.address == tx.local_address for d in batch)
    assert pool.counts()[SlotState.FILLED] == 64
    batch.release()
    assert rx.stats.recv_batch_sizes[6] == 1  # one batch of 64: bucket [64, 128)


def test_recv_batch_moves_at_most_max_batch(sockets: Callable[..., UdpSocket]) -> None:
    rx = sockets("127.0.0.1:0", NetConfig(recv_buf=8 * 1024 * 1024))
    tx = sockets("127.0.0.1:0")
    total = MAX_BATCH + 76
    sent = 0
    while sent < total:
        sent += tx.send_batch([(b"y", rx.local_address)] * (total - sent))
    pool = BufferPool(total, 16)
    batch = pool.batch(total)
    wait_readable(rx)
    assert rx.recv_batch(batch) == MAX_BATCH
    assert pool.counts()[SlotState.FREE] == 76  # the posted slots beyond the cap were cancelled
    batch.release()
    assert rx.recv_batch(batch) == 76
    batch.release()
    pool.check_invariants()


def test_batches_of_different_pools_interleave(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    pools = [BufferPool(4, 16), BufferPool(8, 64), BufferPool(2, 2048)]
    batches = [p.batch(p.slot_count) for p in pools]
    for round_ in range(3):
        for i, batch in enumerate(batches):
            payload = bytes([round_, i])
            tx.send_to(payload, rx.local_address)
            wait_readable(rx)
            assert rx.recv_batch(batch) == 1
            assert bytes(batch.payload(0)) == payload
            assert rx.send_batch(batch) == 1  # the send side caches pools too
            batch.release()
            wait_readable(tx)
            assert tx.recv_from(bytearray(4))[0] == 2


def test_batches_of_one_pool_land_in_their_own_slots(sockets: Callable[..., UdpSocket]) -> None:
    # The socket keeps its recvmmsg vectors aimed at the last batch's slots between calls; a
    # batch elsewhere in the same pool (or with fewer slots) must re-aim them.
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    pool = BufferPool(16, 64)
    batches = [pool.batch(8), pool.batch(3), pool.batch(5)]
    for round_ in range(3):
        for i, batch in enumerate(batches):
            payloads = [bytes([round_, i, k]) for k in range(min(2, batch.capacity))]
            for payload in payloads:
                tx.send_to(payload, rx.local_address)
            got: list[bytes] = []
            for _ in range(len(payloads)):  # bounded: one datagram per wait at worst
                wait_readable(rx)
                rx.recv_batch(batch)
                got.extend(bytes(batch.payload(j)) for j in range(len(batch)))
                assert all(batch.start <= batch.slot(j) < batch.start + batch.capacity
                           for j in range(len(batch)))
                batch.release()
                if len(got) == len(payloads):
                    break
            assert got == payloads
            assert pool.slot_view(batch.start)[:3] == payloads[0]
    pool.check_invariants()


def test_control_messages_survive_receives_without_them(sockets: Callable[..., UdpSocket]) -> None:
    # A datagram without control messages makes the kernel write msg_controllen = 0 back into
    # its header; the next call must re-arm it, or a later drop count would go unseen.
    rx = sockets("127.0.0.1:0", NetConfig(recv_buf=4096))
    tx = sockets("127.0.0.1:0")
    pool = BufferPool(4, 128)
    batch = pool.batch(4)
    for _ in range(3):  # calls whose datagrams carry no SO_RXQ_OVFL message
        tx.send_to(b"quiet", rx.local_address)
        wait_readable(rx)
        assert rx.recv_batch(batch) == 1
        batch.release()
    assert rx.stats.kernel_drops == 0
    for _ in range(200):  # overflow the 4 KiB queue
        tx.send_to(b"x" * 64, rx.local_address)
    for _ in range(200):  # bounded: each call takes at least one datagram
        try:
            rx.recv_batch(batch)
        except BlockingIOError:
            break
        batch.release()
    else:
        pytest.fail("the receive queue never drained")
    tx.send_to(b"last", rx.local_address)  # carries the drop count
    wait_readable(rx)
    assert rx.recv_batch(batch) == 1
    batch.release()
    drops = rx.stats.kernel_drops
    assert drops is not None
    assert drops > 0


def test_would_block_leaves_the_batch_empty(sockets: Callable[..., UdpSocket]) -> None:
    rx = sockets("127.0.0.1:0")
    pool = BufferPool(8, 64)
    batch = pool.batch(8)
    with pytest.raises(BlockingIOError):
        rx.recv_batch(batch)
    assert len(batch) == 0
    assert pool.counts()[SlotState.FREE] == 8
    pool.check_invariants()
    assert rx.stats.would_block == 1
    assert rx.stats.errors == 0


def test_a_batch_that_holds_datagrams_is_refused(sockets: Callable[..., UdpSocket]) -> None:
    rx = sockets("127.0.0.1:0")
    batch = BufferPool(4, 64).batch(4)
    batch.append(b"x", rx.local_address)
    with pytest.raises((ValueError, RuntimeError)):
        rx.recv_batch(batch)
    assert len(batch) == 1


def test_echo_a_batch_to_several_peers_without_decoding(
    sockets: Callable[..., UdpSocket],
) -> None:
    server = sockets("127.0.0.1:0")
    peers = [sockets("127.0.0.1:0") for _ in range(3)]
    for n, peer in enumerate(peers):
        for k in range(n + 1):
            peer.send_to(f"{n}:{k}".encode(), server.local_address)
    pool = BufferPool(16, 64)
    batch = pool.batch(16)
    wait_readable(server)
    assert server.recv_batch(batch) == 6
    assert server.send_batch(batch) == 6
    batch.release()
    for n, peer in enumerate(peers):
        got = _recv_all(peer, BufferPool(8, 64), n + 1)
        assert [g[0] for g in got] == [f"{n}:{k}".encode() for k in range(n + 1)]


def test_send_batch_start_argument(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    batch = BufferPool(8, 16).batch(8)
    for i in range(5):
        batch.append(bytes([i]), rx.local_address)
    assert tx.send_batch(batch, 3) == 2
    assert [g[0] for g in _recv_all(rx, BufferPool(8, 16), 2)] == [b"\x03", b"\x04"]
    assert tx.send_batch(batch, 5) == 0
    with pytest.raises(IndexError):
        tx.send_batch(batch, 6)


def test_partial_sendmmsg_is_reported_and_resumable(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    to = rx.local_address
    datagrams = [(b"a", to), (b"b", to), (bytes(MAX_UDP_PAYLOAD + 1), to), (b"d", to)]
    # sendmmsg sends the two before the oversized one and stops there.
    assert tx.send_batch(datagrams) == 2
    assert tx.stats.partial_sends == 1
    with pytest.raises(OSError) as info:
        tx.send_batch(datagrams, 2)
    assert info.value.errno == errno.EMSGSIZE
    assert tx.send_batch(datagrams, 3) == 1
    assert [g[0] for g in _recv_all(rx, BufferPool(4, 16), 3)] == [b"a", b"b", b"d"]
    stats = tx.stats
    assert (stats.datagrams_sent, stats.send_calls, stats.errors) == (3, 3, 1)


def test_send_batch_moves_at_most_max_batch(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    pairs = [(b"x", rx.local_address)] * (MAX_BATCH + 100)
    assert tx.send_batch(pairs) == MAX_BATCH
    assert tx.stats.partial_sends == 1
    assert tx.send_batch(pairs, MAX_BATCH) == 100


def test_send_batch_from_an_iterator_of_pairs(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    text = str(rx.local_address)
    assert tx.send_batch((bytes([i]), text) for i in range(3)) == 3
    assert len(_recv_all(rx, BufferPool(4, 16), 3)) == 3


@pytest.mark.skipif(link_local_address() is None, reason="no link-local IPv6 address")
def test_ipv6_scope_id_is_kept() -> None:
    found = link_local_address()
    assert found is not None
    host, index = found
    with UdpSocket.bind(f"[{host}%{index}]:0") as rx, UdpSocket.bind(f"[{host}%{index}]:0") as tx:
        assert tx.local_address.scope_id == index
        tx.send_to(b"scoped", rx.local_address)
        pool = BufferPool(2, 64)
        batch = pool.batch(2)
        wait_readable(rx)
        assert rx.recv_batch(batch) == 1
        sender = batch.address(0)
        assert sender is not None
        assert (sender.scope_id, sender.port) == (index, tx.local_address.port)
        # ... and the packed address is good enough to answer through.
        assert rx.send_batch(batch) == 1
        batch.release()
        wait_readable(tx)
        assert tx.recv_from(bytearray(16))[0] == 6


def test_sockaddr_conversion_keeps_flowinfo_and_scope() -> None:
    address = SocketAddress.parse("[fe80::1%7]:80")
    address = attrs.evolve(address, flowinfo=0xABCDE)
    assert _sockaddr_roundtrip(address, socket.AF_INET6) == address
    mapped = _sockaddr_roundtrip("1.2.3.4:5", socket.AF_INET6)
    assert mapped == SocketAddress.parse("[::ffff:1.2.3.4]:5")
    assert _sockaddr_roundtrip("[::ffff:1.2.3.4]:5", socket.AF_INET) == SocketAddress.parse(
        "1.2.3.4:5"
    )
    # Any other IPv6 address for an IPv4 socket is refused by the codec, before the kernel.
    with pytest.raises(OSError) as info:
        _sockaddr_roundtrip("[2001:db8::1]:5", socket.AF_INET)
    assert info.value.errno == errno.EAFNOSUPPORT


def test_dual_stack_serves_ipv4_and_ipv6(sockets: Callable[..., UdpSocket]) -> None:
    server = UdpSocket.bind_dual_stack(0)
    try:
        port = server.local_address.port
        assert server.options["ipv6_only"].effective == 0
        v4 = sockets("127.0.0.1:0")
        v6 = sockets("[::1]:0")
        v4.send_to(b"four", f"127.0.0.1:{port}")
        v6.send_to(b"six", f"[::1]:{port}")
        pool = BufferPool(4, 64)
        batch = pool.batch(4)
        received = 0
        while received < 2:
            wait_readable(server)
            received += server.recv_batch(batch) - received
        senders = {bytes(d.payload): d.address for d in batch}
        four = senders[b"four"]
        assert four is not None
        assert four.is_v4_mapped
        assert four.unmapped() == v4.local_address
        assert senders[b"six"] == v6.local_address
        assert server.send_batch(batch) == 2
        batch.release()
        assert _recv_all(v4, BufferPool(2, 64), 1)[0][0] == b"four"
        assert _recv_all(v6, BufferPool(2, 64), 1)[0][0] == b"six"
        # A plain IPv4 address is mapped on the way out.
        assert server.send_to(b"direct", v4.local_address) == 6
        assert _recv_all(v4, BufferPool(2, 64), 1)[0][0] == b"direct"
    finally:
        server.close()


def test_connection_refused_surfaces_without_breaking_the_socket(
    sockets: Callable[..., UdpSocket],
) -> None:
    dead = sockets("127.0.0.1:0")
    dead_address = dead.local_address
    dead.close()
    live = sockets("127.0.0.1:0")
    sock = sockets("127.0.0.1:0")
    sock.connect(dead_address)
    sock.send(b"anyone?")
    wait_readable(sock)  # the ICMP port-unreachable sets the socket error
    with pytest.raises(ConnectionRefusedError):
        sock.recv_into(bytearray(16))
    # Through the batch path too.
    sock.send(b"again?")
    wait_readable(sock)
    batch = BufferPool(4, 64).batch(4)
    with pytest.raises(ConnectionRefusedError):
        sock.recv_batch(batch)
    assert len(batch) == 0
    # The socket still works: reconnect to a live peer and exchange datagrams.
    sock.connect(live.local_address)
    assert sock.send(b"hello") == 5
    wait_readable(live)
    n, sender = live.recv_from(bytearray(16))
    assert (n, sender) == (5, sock.local_address)
    live.send_to(b"back", sender)
    wait_readable(sock)
    buf = bytearray(16)
    assert sock.recv_into(buf) == 4
    assert bytes(buf[:4]) == b"back"


def test_recv_from_truncates_to_the_buffer(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    tx.send_to(b"0123456789", rx.local_address)
    wait_readable(rx)
    buf = bytearray(4)
    assert rx.recv_from(buf) == (4, tx.local_address)
    assert buf == b"0123"
    assert rx.stats.truncated == 1


def test_kernel_drops_are_counted_exactly(sockets: Callable[..., UdpSocket]) -> None:
    # A tiny receive buffer overflows at once; SO_RXQ_OVFL counts what the kernel dropped.
    rx = sockets("127.0.0.1:0", NetConfig(recv_buf=4096))
    tx = sockets("127.0.0.1:0")
    assert rx.stats.kernel_drops == 0
    sent = 500
    for _ in range(sent):
        tx.send_to(b"x" * 64, rx.local_address)
    pool = BufferPool(256, 128)
    batch = pool.batch(256)
    received = 0
    while True:
        try:
            received += rx.recv_batch(batch)
        except BlockingIOError:
            break
        batch.release()
    # The counter rides on datagrams queued after a drop: send one more to learn the total.
    tx.send_to(b"last", rx.local_address)
    wait_readable(rx)
    received += rx.recv_batch(batch)
    batch.release()
    drops = rx.stats.kernel_drops
    assert drops is not None
    assert drops > 0
    assert received + drops == sent + 1


def test_gro_buffers_are_resegmented_on_echo(sockets: Callable[..., UdpSocket]) -> None:
    gro = sockets("127.0.0.1:0", NetConfig(udp_gro=True))
    gso = sockets("127.0.0.1:0", NetConfig(udp_gso_segment=1000))
    plain = sockets("127.0.0.1:0")
    if gro.options["udp_gro"].status is not OptionStatus.APPLIED:
        pytest.skip(f"UDP_GRO: {gro.options['udp_gro'].reason}")
    gso.send_to(bytes(4000), gro.local_address)  # one send, four 1000-byte datagrams
    pool = BufferPool(4, 65536)
    batch = pool.batch(4)
    wait_readable(gro)
    gro.recv_batch(batch)
    if batch.segment_size(0) == 0:
        pytest.skip("the kernel delivered the segments separately (no GRO on this path)")
    assert (len(batch.payload(0)), batch.segment_size(0)) == (4000, 1000)
    assert gro.stats.datagrams_received == 4
    plain.local_address.pack_into(pool.addresses, batch.slot(0) * 32)
    assert gro.send_batch(batch) == 1
    batch.release()
    got = _recv_all(plain, BufferPool(8, 2048), 4)
    assert [len(g[0]) for g in got] == [1000] * 4


def test_stats_count_calls_and_histograms(sockets: Callable[..., UdpSocket]) -> None:
    rx, tx = sockets("127.0.0.1:0"), sockets("127.0.0.1:0")
    tx.send_batch([(b"abc", rx.local_address)] * 3)
    _recv_all(rx, BufferPool(8, 16), 3)
    stats = tx.stats
    assert (stats.datagrams_sent, stats.bytes_sent, stats.send_calls) == (3, 9, 1)
    assert stats.send_batch_sizes[1] == 1  # a batch of 3: bucket [2, 4)
    rstats = rx.stats
    assert (rstats.datagrams_received, rstats.bytes_received) == (3, 9)
    assert sum(rstats.recv_batch_sizes) == rstats.recv_calls - rstats.would_block


_OPERATIONS: list[tuple[str, Callable[[UdpSocket], object]]] = [
    ("recv_batch", lambda s: s.recv_batch(BufferPool(2, 16).batch(2))),
    ("send_batch", lambda s: s.send_batch([(b"x", "127.0.0.1:9")])),
    ("send_to", lambda s: s.send_to(b"x", "127.0.0.1:9")),
    ("recv_from", lambda s: s.recv_from(bytearray(8))),
    ("connect", lambda s: s.connect("127.0.0.1:9")),
    ("send", lambda s: s.send(b"x")),
    ("recv_into", lambda s: s.recv_into(bytearray(8))),
    ("local_address", lambda s: s.local_address),
]


@pytest.mark.parametrize(("name", "operation"), _OPERATIONS, ids=[n for n, _ in _OPERATIONS])
def test_closed_socket_raises_a_clear_error(
    name: str, operation: Callable[[UdpSocket], object]
) -> None:
    sock = UdpSocket.bind("127.0.0.1:0")
    sock.close()
    sock.close()  # idempotent
    assert sock.closed
    assert sock.fileno() == -1
    with pytest.raises(SocketClosedError) as info:
        operation(sock)
    assert info.value.errno == errno.EBADF
    assert "closed" in str(info.value)
    assert "closed" in repr(sock)
    # Data that needs no descriptor stays readable.
    assert sock.stats.recv_calls == 0
    assert sock.options["reuse_port"].status is OptionStatus.APPLIED


def test_adopting_a_stdlib_socket_takes_its_descriptor() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    port = raw.getsockname()[1]
    sock = UdpSocket(raw, native.bind_udp("127.0.0.1:0").options)
    assert raw.fileno() == -1  # detached: the UdpSocket owns it now
    assert sock.local_address.port == port
    sock.close()
    with pytest.raises(TypeError):
        UdpSocket("not a socket", sock.options)  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, pytest.raises(ValueError):
        UdpSocket(tcp, sock.options)


def test_descriptor_is_closed_when_the_socket_is_collected() -> None:
    sock = UdpSocket.bind("127.0.0.1:0")
    fd = sock.fileno()
    del sock
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def test_options_read_back_as_reported(sockets: Callable[..., UdpSocket]) -> None:
    sock = sockets("127.0.0.1:0", NetConfig(ttl=33, tos=0x10, recv_buf=300_000))
    with socket.socket(fileno=os.dup(sock.fileno())) as view:
        assert view.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == sock.options["ttl"].effective
        assert view.getsockopt(socket.IPPROTO_IP, socket.IP_TOS) == sock.options["tos"].effective
        assert (
            view.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            == sock.options["recv_buf"].effective
        )
        assert view.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert fcntl.fcntl(view.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
        assert os.get_inheritable(view.fileno()) is False
    assert sock.options["ttl"].status is OptionStatus.APPLIED


def test_blocking_waits_are_bounded_by_helpers() -> None:
    # Guard for the helpers themselves: a wait that never completes fails instead of hanging.
    with UdpSocket.bind("127.0.0.1:0") as idle, pytest.raises(AssertionError):
        wait_readable(idle, timeout=0.01)
    assert WAIT > 0
    assert sys.platform.startswith("linux")


def test_subclasses_of_batch_and_pool_move_datagrams_like_the_classes() -> None:
    # recv_batch/send_batch read Batch and BufferPool fields straight from their slots only for
    # the exact classes; subclasses go through getattr and must behave the same.
    from horizon_core.buffers import Batch

    class TaggedPool(BufferPool):
        __slots__ = ("tag",)

    class TaggedBatch(Batch):
        __slots__ = ()

    with UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
        pool = TaggedPool(8, 64)
        batch = pool.batch(8)
        batch.__class__ = TaggedBatch
        for i in range(3):
            tx.send_to(bytes([i]) * (i + 1), rx.local_address)
        wait_readable(rx)  # loopback queues each datagram before send_to returns
        assert rx.recv_batch(batch) == 3
        assert [bytes(batch.payload(i)) for i in range(3)] == [b"\x00", b"\x01\x01", b"\x02\x02\x02"]
        assert rx.send_batch(batch) == 3
        batch.release()
        assert pool.state(0) is SlotState.FREE
