"""Simulated TCP: bytes survive any chunking; half close, reset and refusal are reported."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horizon_core.config import NetConfig
from horizon_core.contract import TcpListener, TcpStream
from horizon_core.errors import SocketClosedError
from horizon_core.faults import FaultPlan
from horizon_drivers.sim import SimNetwork, SimTcpStream, StreamState

chunk_sizes = st.lists(st.integers(1, 700), min_size=1, max_size=8)


def connected(net: SimNetwork, config: NetConfig | None = None) -> tuple[SimTcpStream, SimTcpStream]:
    a = net.add_host("10.0.0.1", "fd00::1")
    b = net.add_host("10.0.0.2", "fd00::2")
    listener = b.bind_tcp("[::]:8080", config)
    client = a.connect_tcp("10.0.0.2:8080", config)
    net.run_until_idle(max_time=10)
    assert client.finish_connect()
    server, peer = listener.accept_nonblocking()
    assert peer == client.local_address.to_v4_mapped()
    return client, server


def pump(
    net: SimNetwork,
    writer: SimTcpStream,
    reader: SimTcpStream,
    data: bytes,
    writes: list[int],
    reads: list[int],
) -> bytes:
    """Write ``data`` in chunks of ``writes`` (cycled), read with ``reads``; return what arrived."""
    sent = 0
    received = bytearray()
    step = 0
    eof = False
    if not data:
        writer.shutdown_write()
    while not eof:
        step += 1
        assert step < 20_000, "no progress"
        progressed = False
        if sent < len(data):
            chunk = data[sent : sent + writes[step % len(writes)]]
            try:
                n = writer.send(chunk) if step % 3 else writer.send_vectored([chunk[:1], chunk[1:]])
            except BlockingIOError:
                n = 0
            assert 0 <= n <= len(chunk)
            sent += n
            progressed = n > 0
            if sent == len(data):
                writer.shutdown_write()
        buf = bytearray(reads[step % len(reads)])
        try:
            n = reader.recv_into(buf)
            if n == 0:
                eof = True
            received += buf[:n]
            progressed = progressed or n > 0
        except BlockingIOError:
            pass
        if not progressed:
            when = net.next_event_time()
            net.advance(0.001 if when is None else max(when - net.now, 0.0))
        net.check_invariants()
    return bytes(received)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), chunk_sizes, chunk_sizes)
def test_bytes_survive_any_chunking(data: bytes, writes: list[int], reads: list[int]) -> None:
    net = SimNetwork()
    client, server = connected(net)
    assert pump(net, client, server, data, writes, reads) == data
    ledger = net.ledger
    assert ledger.tcp_bytes_written == ledger.tcp_bytes_read == len(data)


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=5000),
    chunk_sizes,
    chunk_sizes,
    st.integers(0, 2**16),
    st.floats(0, 1),
    st.floats(0, 0.5),
    st.integers(1, 3000),
)
def test_bytes_survive_partial_writes_eagain_latency_and_small_windows(
    data: bytes,
    writes: list[int],
    reads: list[int],
    seed: int,
    partial: float,
    eagain: float,
    buf: int,
) -> None:
    plan = FaultPlan(partial_write=partial, send_eagain=eagain, recv_eagain=eagain, latency=(0.001, 0.01))
    net = SimNetwork(seed=seed, faults=plan)
    client, server = connected(net, NetConfig(send_buf=buf, recv_buf=buf))
    assert pump(net, server, client, data, writes, reads) == data
    net.run_until_idle()
    net.check_invariants()


def test_half_close_keeps_the_other_direction() -> None:
    net = SimNetwork()
    client, server = connected(net)
    client.send(b"request")
    client.shutdown_write()
    client.shutdown_write()  # idempotent
    buf = bytearray(64)
    assert server.recv_into(buf) == 7
    assert server.recv_into(buf) == 0
    assert server.recv_into(buf) == 0  # end of stream stays end of stream
    with pytest.raises(BrokenPipeError):
        client.send(b"more")
    assert server.send(b"response") == 8
    server.close()
    assert client.recv_into(buf) == 8
    assert bytes(buf[:8]) == b"response"
    assert client.recv_into(buf) == 0
    net.check_invariants()


def test_reset_is_reported_after_the_bytes_already_there() -> None:
    net = SimNetwork()
    client, server = connected(net)
    client.send(b"last words")
    client.reset()
    assert client.closed
    buf = bytearray(64)
    assert server.recv_into(buf) == 10
    with pytest.raises(ConnectionResetError):
        server.recv_into(buf)
    assert server.recv_into(buf) == 0
    with pytest.raises(BrokenPipeError):
        server.send(b"anyone?")
    assert net.ledger.tcp_resets == 1


def test_send_after_reset_raises_connection_reset_first() -> None:
    net = SimNetwork()
    client, server = connected(net)
    server.reset()
    with pytest.raises(ConnectionResetError):
        client.send(b"x")
    with pytest.raises(BrokenPipeError):
        client.send(b"x")


def test_close_with_unread_bytes_resets_and_late_data_is_discarded() -> None:
    net = SimNetwork()
    client, server = connected(net)
    client.send(b"unread")
    server.close()  # unread bytes: RST, not FIN (Linux)
    with pytest.raises(ConnectionResetError):
        client.recv_into(bytearray(8))
    assert net.ledger.tcp_bytes_discarded == 6
    net.check_invariants()


def test_data_to_a_closed_end_is_discarded_and_answered_with_reset() -> None:
    net = SimNetwork(faults=FaultPlan(latency=(0.1, 0.1)))
    client, server = connected(net)
    server.close()  # FIN in flight
    client.send(b"crossing")  # sent before the FIN arrives
    net.run_until_idle()
    buf = bytearray(8)
    with pytest.raises(ConnectionResetError):
        client.recv_into(buf)
    assert net.ledger.tcp_bytes_discarded == 8
    net.check_invariants()


def test_refused_and_unreachable_connects() -> None:
    net = SimNetwork(faults=FaultPlan(latency=(0.05, 0.05)))
    a = net.add_host("10.0.0.1")
    net.add_host("10.0.0.2")
    refused = a.connect_tcp("10.0.0.2:1")
    unreachable = a.connect_tcp("10.0.0.99:1")
    assert not refused.finish_connect()
    with pytest.raises(BlockingIOError):
        refused.recv_into(bytearray(1))
    net.run_until_idle()
    for stream, error in ((refused, ConnectionRefusedError), (unreachable, OSError)):
        for _ in range(2):  # the error is remembered
            with pytest.raises(error):
                stream.finish_connect()
    with pytest.raises(OSError) as info:
        unreachable.finish_connect()
    assert info.value.errno == errno.EHOSTUNREACH
    assert net.ledger.tcp_refused == 2


def test_backlog_holds_extra_connections_until_accept() -> None:
    net = SimNetwork()
    host = net.add_host()
    listener = host.bind_tcp("127.0.0.1:0", NetConfig(tcp_backlog=1))
    clients = [host.connect_tcp(listener.local_address) for _ in range(4)]
    assert [c.finish_connect() for c in clients] == [True, True, False, False]
    listener.accept_nonblocking()
    assert [c.finish_connect() for c in clients] == [True, True, True, False]
    listener.close()
    assert isinstance(listener, TcpListener)
    net.run_until_idle()
    with pytest.raises(ConnectionResetError):
        clients[1].recv_into(bytearray(1))
    with pytest.raises(ConnectionRefusedError):
        clients[3].finish_connect()


def test_every_operation_on_a_closed_stream_raises_socket_closed() -> None:
    net = SimNetwork()
    client, server = connected(net)
    assert isinstance(client, TcpStream)
    client.close()
    client.close()
    assert client.closed
    assert client.state is StreamState.CLOSED
    calls: list[Callable[[], object]] = [
        lambda: client.recv_into(bytearray(1)),
        lambda: client.send(b"x"),
        lambda: client.send_vectored([b"x"]),
        lambda: client.shutdown_write(),
        lambda: client.finish_connect(),
        lambda: client.local_address,
        lambda: client.peer_address,
        lambda: client.reset(),
    ]
    for call in calls:
        with pytest.raises(SocketClosedError):
            call()
    assert server.recv_into(bytearray(1)) == 0
    listener = net.hosts[0].bind_tcp("127.0.0.1:0")
    listener.close()
    with pytest.raises(SocketClosedError):
        listener.accept_nonblocking()


def test_listener_ports_and_addresses() -> None:
    net = SimNetwork()
    host = net.add_host("10.0.0.1", "fd00::1")
    listener = host.bind_tcp("[::]:0", NetConfig(reuse_port=False))
    with pytest.raises(OSError) as info:
        host.bind_tcp(f"0.0.0.0:{listener.local_address.port}", NetConfig(reuse_port=False))
    assert info.value.errno == errno.EADDRINUSE
    v6 = host.connect_tcp(f"[fd00::1]:{listener.local_address.port}")
    v4 = host.connect_tcp(f"127.0.0.1:{listener.local_address.port}")
    assert v6.finish_connect()
    assert v4.finish_connect()
    (s6, p6), (s4, p4) = listener.accept_nonblocking(), listener.accept_nonblocking()
    assert p6 == v6.local_address
    assert s6.local_address.port == listener.local_address.port
    assert p4 == v4.local_address.to_v4_mapped()
    assert str(s4.local_address.unmapped()) == f"127.0.0.1:{listener.local_address.port}"
    with pytest.raises(BlockingIOError):
        listener.accept_nonblocking()
