"""Simulated UDP with faults off: the sync contract, exactly."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.addresses import SocketAddress
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.contract import Driver, UdpSocket
from horizon_core.errors import ConfigError, SocketClosedError
from horizon_core.options import OptionStatus
from horizon_core.strategies import invalid_config_kwargs, net_configs
from horizon_drivers import sim
from horizon_drivers.sim import DropReason, FaultPlan, SimHost, SimNetwork, SimUdpSocket

SMALL = settings(max_examples=60, deadline=None)

payloads = st.binary(max_size=300)


def two_hosts(seed: int = 0) -> tuple[SimNetwork, SimHost, SimHost]:
    net = SimNetwork(seed=seed)
    return net, net.add_host("10.0.0.1", "fd00::1"), net.add_host("10.0.0.2", "fd00::2")


def drain(sock: SimUdpSocket, slot_size: int = 2048) -> list[tuple[bytes, SocketAddress | None]]:
    pool = BufferPool(16, slot_size)
    batch = pool.batch(16)
    got: list[tuple[bytes, SocketAddress | None]] = []
    while True:
        try:
            n = sock.recv_batch(batch)
        except BlockingIOError:
            break
        assert 1 <= n <= batch.capacity
        got.extend((bytes(d.payload), d.address) for d in batch)
        batch.release()
    pool.check_invariants()
    return got


def test_hosts_and_sockets_satisfy_the_contract_protocols() -> None:
    _, a, _ = two_hosts()
    assert isinstance(a, Driver)
    assert isinstance(sim.DRIVER, Driver)
    assert isinstance(a.bind_udp("127.0.0.1:0"), UdpSocket)
    assert sim.driver(seed=3).network.seed == 3


@SMALL
@given(st.lists(st.tuples(st.integers(0, 3), payloads), max_size=30))
def test_bytes_boundaries_and_true_sender_survive(messages: list[tuple[int, bytes]]) -> None:
    net, a, b = two_hosts()
    server = b.bind_udp_dual_stack(7000)
    senders = [
        a.bind_udp("10.0.0.1:0"),
        a.bind_udp("[fd00::1]:0"),
        b.bind_udp("127.0.0.1:0"),
        a.bind_udp("[::]:0"),
    ]
    targets = ["10.0.0.2:7000", "[fd00::2]:7000", "127.0.0.1:7000", "[fd00::2]:7000"]
    expected = []
    for index, payload in messages:
        assert senders[index].send_to(payload, targets[index]) == len(payload)
        source = senders[index].local_address
        if source.host.is_unspecified:
            source = SocketAddress(ipaddress.ip_address("fd00::1"), source.port)
        expected.append((payload, source.to_v4_mapped()))
    assert drain(server) == expected
    assert net.ledger.datagrams_delivered == len(messages)
    net.check_invariants()


@SMALL
@given(st.lists(payloads, min_size=1, max_size=20), st.integers(1, 64), st.integers(1, 8))
def test_truncation_is_flagged_with_the_true_length(
    messages: list[bytes], slot_size: int, capacity: int
) -> None:
    net, a, _ = two_hosts()
    rx, tx = a.bind_udp("127.0.0.1:0"), a.bind_udp("127.0.0.1:0")
    for payload in messages:
        tx.send_to(payload, rx.local_address)
    pool = BufferPool(capacity, slot_size)
    batch = pool.batch(capacity)
    seen: list[tuple[bytes, bool, int]] = []
    while True:
        try:
            n = rx.recv_batch(batch)
        except BlockingIOError:
            break
        assert n <= capacity
        seen.extend((bytes(d.payload), d.truncated, d.original_length) for d in batch)
        batch.release()
    assert seen == [(m[:slot_size], len(m) > slot_size, len(m)) for m in messages]
    cut = sum(len(m) > slot_size for m in messages)
    assert rx.stats.truncated == cut == net.ledger.truncated_on_receive
    net.check_invariants()


def test_nothing_waiting_is_would_block_and_leaves_the_batch_usable() -> None:
    _, a, _ = two_hosts()
    sock = a.bind_udp("127.0.0.1:0")
    pool = BufferPool(4, 64)
    batch = pool.batch(4)
    for _ in range(2):
        with pytest.raises(BlockingIOError):
            sock.recv_batch(batch)
        assert pool.counts()[SlotState.FREE] == 4
        assert len(batch) == 0
    with pytest.raises(BlockingIOError):
        sock.recv_from(bytearray(10))
    assert sock.stats.would_block == 3
    sock.send_to(b"now", sock.local_address)
    assert sock.recv_batch(batch) == 1


def test_recv_from_recv_into_send_and_connect() -> None:
    net, a, b = two_hosts()
    server = b.bind_udp("10.0.0.2:53")
    client = a.bind_udp("0.0.0.0:0")
    stranger = a.bind_udp("0.0.0.0:0")
    client.connect("10.0.0.2:53")
    assert client.local_address.host == ipaddress.ip_address("10.0.0.1")
    client.send(b"query")
    buf = bytearray(3)
    n, sender = server.recv_from(buf)
    assert (n, bytes(buf), sender) == (3, b"que", client.local_address)
    # A connected socket only hears its peer.
    stranger.send_to(b"spoof", client.local_address)
    server.send_to(b"answer", client.local_address)
    assert client.recv_into(buf) == 3
    assert bytes(buf) == b"ans"
    with pytest.raises(BlockingIOError):
        client.recv_into(buf)
    assert net.ledger.dropped == {DropReason.NO_SUCH_PORT: 1}
    with pytest.raises(OSError) as info:
        stranger.send(b"nobody")
    assert info.value.errno == errno.EDESTADDRREQ


def test_icmp_port_unreachable_reaches_only_connected_sockets() -> None:
    net, a, _ = two_hosts()
    connected = a.bind_udp("0.0.0.0:0")
    connected.connect("10.0.0.2:9")
    loose = a.bind_udp("0.0.0.0:0")
    loose.send_to(b"x", "10.0.0.2:9")
    loose.send_to(b"x", "10.0.0.2:9")  # unconnected: ICMP errors are ignored (no IP_RECVERR)
    connected.send(b"x")
    with pytest.raises(ConnectionRefusedError):
        connected.recv_into(bytearray(4))
    with pytest.raises(BlockingIOError):  # the error is reported once
        connected.recv_into(bytearray(4))
    connected.send(b"x")
    with pytest.raises(ConnectionRefusedError):
        connected.send(b"x")
    assert net.ledger.icmp_errors == 4
    assert net.ledger.dropped[DropReason.NO_SUCH_PORT] == 4


def test_injected_port_unreachable_and_unknown_hosts() -> None:
    net = SimNetwork(faults=FaultPlan(port_unreachable=1.0))
    a = net.add_host("10.0.0.1")
    sock = a.bind_udp("10.0.0.1:0")
    listener = a.bind_udp("10.0.0.1:4000")
    sock.connect(listener.local_address)
    sock.send(b"x")
    with pytest.raises(ConnectionRefusedError):
        sock.send(b"y")
    sock.send_to(b"z", "10.9.9.9:1")
    assert net.ledger.dropped == {
        DropReason.PORT_UNREACHABLE: 1,
        DropReason.NO_SUCH_HOST: 1,
    }
    net.check_invariants()


@SMALL
@given(st.lists(st.integers(0, 400), max_size=30), st.integers(1, 2000), st.booleans())
def test_receive_buffer_is_bounded_and_overflow_counted(
    sizes: list[int], recv_buf: int, counter: bool
) -> None:
    net, a, _ = two_hosts()
    rx = a.bind_udp("127.0.0.1:0", NetConfig(recv_buf=recv_buf, rx_drop_counter=counter))
    tx = a.bind_udp("127.0.0.1:0")
    held = 0
    kept: list[int] = []
    for size in sizes:
        tx.send_to(bytes(size), rx.local_address)
        if held + size <= recv_buf:
            held += size
            kept.append(size)
    dropped = len(sizes) - len(kept)
    assert [len(p) for p, _ in drain(rx)] == kept
    assert rx.stats.kernel_drops == (dropped if counter else None)
    assert net.ledger.dropped.get(DropReason.RECEIVE_BUFFER_FULL, 0) == dropped
    net.check_invariants()


def test_size_limits_and_families() -> None:
    _, a, _ = two_hosts()
    v4 = a.bind_udp("10.0.0.1:0")
    v6only = a.bind_udp("[::]:0", NetConfig(ipv6_only=True))
    with pytest.raises(OSError) as info:
        v4.send_to(bytes(65508), "10.0.0.2:1")
    assert info.value.errno == errno.EMSGSIZE
    with pytest.raises(OSError) as info:
        v4.send_to(b"x", "[fd00::2]:1")
    assert info.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(OSError) as info:
        v6only.send_to(b"x", "10.0.0.2:1")
    assert info.value.errno == errno.ENETUNREACH
    assert v4.stats.errors == 2


def test_gso_segment_splits_sends() -> None:
    _, a, _ = two_hosts()
    rx = a.bind_udp("127.0.0.1:0")
    tx = a.bind_udp("127.0.0.1:0", NetConfig(udp_gso_segment=100))
    tx.send_to(bytes(range(250)), rx.local_address)
    assert [p for p, _ in drain(rx)] == [bytes(range(100)), bytes(range(100, 200)), bytes(range(200, 250))]


def test_ports_ephemeral_in_use_and_reuse_port() -> None:
    _, a, _ = two_hosts()
    exclusive = NetConfig(reuse_port=False)
    first = a.bind_udp("0.0.0.0:5000", exclusive)
    with pytest.raises(OSError) as info:
        a.bind_udp("10.0.0.1:5000", exclusive)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError):
        a.bind_udp_dual_stack(5000, exclusive)  # [::] dual-stack covers 0.0.0.0
    a.bind_udp("[::]:5000", NetConfig(reuse_port=False, ipv6_only=True))  # v6 only: no overlap
    first.close()
    a.bind_udp("10.0.0.1:5000", exclusive)  # the port came back
    shared = [a.bind_udp("127.0.0.1:6000") for _ in range(3)]  # reuse_port=True by default
    assert {s.local_address.port for s in shared} == {6000}
    ports = [a.bind_udp("127.0.0.1:0").local_address.port for _ in range(3)]
    assert ports == sorted(ports)
    assert len(set(ports)) == 3
    assert ports[0] >= 32768
    with pytest.raises(OSError) as info:
        a.bind_udp("10.0.0.2:0")
    assert info.value.errno == errno.EADDRNOTAVAIL


def test_reuse_port_group_balances_by_flow() -> None:
    _, a, b = two_hosts()
    group = [b.bind_udp("10.0.0.2:6000") for _ in range(4)]
    senders = [a.bind_udp("10.0.0.1:0") for _ in range(20)]
    for sender in senders:
        sender.send_to(b"a", "10.0.0.2:6000")
        sender.send_to(b"b", "10.0.0.2:6000")
    per_socket = [drain(s) for s in group]
    assert sum(map(len, per_socket)) == 40
    for got in per_socket:  # one flow always lands on one socket
        sources = [addr for _, addr in got]
        assert all(sources.count(addr) == 2 for addr in sources)
    assert sum(1 for got in per_socket if got) >= 2


@settings(max_examples=60, deadline=None)
@given(net_configs())
def test_any_valid_config_reads_back_as_reported(config: NetConfig) -> None:
    _, a, _ = two_hosts()
    for sock in (a.bind_udp("127.0.0.1:0", config), a.bind_udp("[::]:0", config)):
        for outcome in sock.options.outcomes:
            assert outcome.status in (OptionStatus.APPLIED, OptionStatus.SKIPPED)
            if outcome.status is OptionStatus.APPLIED:
                assert outcome.effective == outcome.requested
                assert "effective == requested" in outcome.reason
        assert not sock.options.refused_required()


@settings(max_examples=30, deadline=None)
@given(invalid_config_kwargs())
def test_invalid_configs_never_reach_a_socket(case: tuple[dict[str, object], frozenset[str]]) -> None:
    kwargs, fields = case
    with pytest.raises(ConfigError) as info:
        NetConfig(**kwargs)  # type: ignore[arg-type]
    assert set(info.value.fields) == set(fields)
    _, a, _ = two_hosts()
    with pytest.raises(TypeError):
        a.bind_udp("127.0.0.1:5555", kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        a.bind_tcp("127.0.0.1:5555", kwargs)  # type: ignore[arg-type]
    assert not a.ports.bindings("udp", 5555)
    assert not a.ports.bindings("tcp", 5555)


def test_every_operation_on_a_closed_socket_raises_socket_closed() -> None:
    _, a, _ = two_hosts()
    sock = a.bind_udp("127.0.0.1:0")
    sock.send_to(b"queued", sock.local_address)
    address = sock.local_address
    sock.close()
    sock.close()  # idempotent
    assert sock.closed
    assert sock.local_address == address
    batch = BufferPool(2, 64).batch(2)
    calls: list[Callable[[], object]] = [
        lambda: sock.recv_batch(batch),
        lambda: sock.send_batch([(b"x", address)]),
        lambda: sock.send_to(b"x", address),
        lambda: sock.recv_from(bytearray(4)),
        lambda: sock.connect(address),
        lambda: sock.send(b"x"),
        lambda: sock.recv_into(bytearray(4)),
    ]
    for call in calls:
        with pytest.raises(SocketClosedError) as info:
            call()
        assert info.value.errno == errno.EBADF
    assert len(batch) == 0
    assert sock.fileno() == -1
    assert a.network.ledger.dropped == {DropReason.SOCKET_CLOSED: 1}


def test_send_batch_partial_and_from_a_batch() -> None:
    net = SimNetwork(seed=4)
    a = net.add_host()
    rx = a.bind_udp("127.0.0.1:0")
    tx = a.bind_udp("127.0.0.1:0")
    pool = BufferPool(8, 32)
    out = pool.batch(4)
    for i in range(4):
        out.append(bytes([i]) * (i + 1), rx.local_address)
    assert tx.send_batch(out, start=1) == 3
    assert [p for p, _ in drain(rx)] == [b"\x01\x01", b"\x02\x02\x02", b"\x03" * 4]
    net.faults = FaultPlan(send_eagain=1.0)
    with pytest.raises(BlockingIOError):
        tx.send_batch(out)
    net.faults = attrs.evolve(FaultPlan(), send_enobufs=1.0)
    with pytest.raises(OSError) as info:
        tx.send_to(b"x", rx.local_address)
    assert info.value.errno == errno.ENOBUFS
    assert tx.stats.would_block == 1
    assert tx.stats.errors == 1


def test_a_datagram_to_the_other_family_is_an_eafnosupport_oserror() -> None:
    host = sim.driver()
    with host.bind_udp("127.0.0.1:0") as a, host.bind_udp("127.0.0.1:0") as b:
        with pytest.raises(OSError, match=r"\[::1\]:9.*IPv4") as info:
            a.send_to(b"x", "[::1]:9")
        assert info.value.errno == errno.EAFNOSUPPORT
        assert a.send_batch([(b"1", b.local_address), (b"2", "[::1]:9"), (b"3", b.local_address)]) == 1
