"""The native driver's TCP listener and streams, on loopback."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.drivers.native.native_helpers import (  # first: it skips this module off Linux
    LOOPBACKS,
    WAIT,
    bracket,
    wait_readable,
    wait_writable,
)

# isort: split
import contextlib

from horizon_core.config import NetConfig
from horizon_core.contract import TcpListener as TcpListenerProtocol
from horizon_core.contract import TcpStream as TcpStreamProtocol
from horizon_core.errors import SocketClosedError
from horizon_core.options import OptionStatus
from horizon_drivers.native import TcpListener, TcpStream


def _connected_pair(
    listener: TcpListener, config: NetConfig | None = None
) -> tuple[TcpStream, TcpStream]:
    client = TcpStream.connect(listener.local_address, config)
    wait_readable(listener)
    server, peer = listener.accept_nonblocking()
    assert peer == client.local_address
    for _ in range(100):
        wait_writable(client)
        if client.finish_connect():
            break
    else:  # pragma: no cover
        raise AssertionError("connect never completed")
    return client, server


@pytest.fixture
def listener() -> Iterator[TcpListener]:
    with TcpListener.bind("127.0.0.1:0") as sock:
        yield sock


@pytest.fixture
def pair(listener: TcpListener) -> Iterator[tuple[TcpStream, TcpStream]]:
    client, server = _connected_pair(listener)
    with client, server:
        yield client, server


def _read_exactly(stream: TcpStream, count: int, chunk: int = 65536) -> bytes:
    out = bytearray()
    buf = bytearray(chunk)
    while len(out) < count:
        wait_readable(stream)
        n = stream.recv_into(buf)
        assert n > 0, "unexpected end of stream"
        out += buf[:n]
    return bytes(out)


def test_satisfy_the_contract_protocols(
    listener: TcpListener, pair: tuple[TcpStream, TcpStream]
) -> None:
    assert isinstance(listener, TcpListenerProtocol)
    assert all(isinstance(s, TcpStreamProtocol) for s in pair)


@pytest.mark.parametrize("host", [*LOOPBACKS, pytest.param("127.0.0.2", id="127.0.0.2")])
def test_connect_and_accept(host: str) -> None:
    with TcpListener.bind(bracket(host)) as listener:
        assert str(listener.local_address.host) == host
        client, server = _connected_pair(listener)
        with client, server:
            assert client.peer_address == listener.local_address
            assert server.peer_address == client.local_address
            assert client.send(b"hello") == 5
            assert _read_exactly(server, 5) == b"hello"


def test_accepted_streams_are_nonblocking_and_configured(listener: TcpListener) -> None:
    config = NetConfig(tcp_nodelay=True, recv_buf=256 * 1024, tos=0x10)
    with TcpListener.bind("127.0.0.1:0", config) as configured:
        client, server = _connected_pair(configured)
        with client, server:
            flags = fcntl.fcntl(server.fileno(), fcntl.F_GETFL)
            assert flags & os.O_NONBLOCK
            assert os.get_inheritable(server.fileno()) is False
            report = server.options
            assert report["tcp_nodelay"].effective == 1
            assert report["tcp_quickack"].status is OptionStatus.APPLIED
            with socket.socket(fileno=os.dup(server.fileno())) as view:
                assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                assert (
                    view.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
                    == report["recv_buf"].effective
                )
                tos = view.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)
                assert tos & ~0x3 == 0x10  # the kernel keeps ECN bits of its own
            with pytest.raises(BlockingIOError):
                server.recv_into(bytearray(8))


def test_accept_would_block(listener: TcpListener) -> None:
    with pytest.raises(BlockingIOError):
        listener.accept_nonblocking()


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss(8) to read the backlog")
def test_backlog_comes_from_the_config() -> None:
    # For a listening socket, ss(8) shows the accept backlog as Send-Q.
    with TcpListener.bind("127.0.0.1:0", NetConfig(tcp_backlog=7)) as listener:
        port = listener.local_address.port
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert out[0] == "LISTEN"
        assert out[2] == "7"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(min_size=1, max_size=200_000),
    send_chunks=st.lists(st.integers(1, 70_000), min_size=1, max_size=20),
    recv_chunk=st.integers(1, 70_000),
    vectored=st.booleans(),
)
def test_bytes_survive_any_chunking(
    pair: tuple[TcpStream, TcpStream],
    data: bytes,
    send_chunks: list[int],
    recv_chunk: int,
    vectored: bool,
) -> None:
    client, server = pair
    view = memoryview(data)
    sent = 0
    received = bytearray()
    buf = bytearray(recv_chunk)
    chunk_index = 0
    for _ in range(100_000):  # bounded: each step moves bytes or waits (bounded) for the kernel
        if sent < len(data):
            size = send_chunks[chunk_index % len(send_chunks)]
            chunk_index += 1
            piece = view[sent : sent + size]
            try:
                if vectored:
                    half = len(piece) // 2
                    sent += client.send_vectored([piece[:half], piece[half:]])
                else:
                    sent += client.send(piece)
            except BlockingIOError:
                pass
        try:
            n = server.recv_into(buf)
        except BlockingIOError:
            if sent < len(data):
                wait_writable(client)
            else:
                wait_readable(server)
            continue
        received += buf[:n]
        if len(received) == len(data):
            break
    assert bytes(received) == data


def test_half_close(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    client.send(b"request")
    client.shutdown_write()
    assert _read_exactly(server, 7) == b"request"
    wait_readable(server)
    assert server.recv_into(bytearray(8)) == 0  # end of stream
    assert server.send(b"response") == 8  # the other direction still works
    assert _read_exactly(client, 8) == b"response"
    with pytest.raises(BrokenPipeError):
        client.send(b"more")  # MSG_NOSIGNAL: an error, never SIGPIPE


def test_peer_reset(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    # SO_LINGER {on, 0}: close() sends RST instead of FIN.
    with socket.socket(fileno=os.dup(client.fileno())) as view:
        view.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    wait_readable(server)
    with pytest.raises(ConnectionResetError):
        server.recv_into(bytearray(8))


def test_connect_to_a_closed_port_fails_every_time() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with TcpStream.connect(f"127.0.0.1:{port}") as stream:
        wait_writable(stream)
        with pytest.raises(ConnectionRefusedError):
            stream.finish_connect()
        with pytest.raises(ConnectionRefusedError):
            stream.finish_connect()


def test_quickack_is_rearmed_after_reads(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    for _ in range(3):
        client.send(b"x" * 100)
        _read_exactly(server, 100)
        with socket.socket(fileno=os.dup(server.fileno())) as view:
            assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1


def test_closed_stream_and_listener_raise_clear_errors(listener: TcpListener) -> None:
    client, server = _connected_pair(listener)
    server.close()
    client.close()
    client.close()
    for operation in (
        lambda: client.send(b"x"),
        lambda: client.recv_into(bytearray(4)),
        lambda: client.send_vectored([b"x"]),
        client.shutdown_write,
        client.finish_connect,
        lambda: client.local_address,
        lambda: client.peer_address,
    ):
        with pytest.raises(SocketClosedError) as info:
            operation()
        assert info.value.errno == errno.EBADF
    assert client.fileno() == -1
    assert "closed" in repr(client)
    listener.close()
    with pytest.raises(SocketClosedError):
        listener.accept_nonblocking()
    with pytest.raises(SocketClosedError):
        _ = listener.local_address


def test_send_vectored_and_shutdown_arguments(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    assert client.send_vectored([]) == 0
    assert client.send_vectored([b"ab", bytearray(b"cd"), memoryview(b"ef")]) == 6
    assert _read_exactly(server, 6) == b"abcdef"
    with pytest.raises(ValueError):
        client.shutdown(99)
    assert WAIT > 0


def test_accept_many_raises_would_block_when_none_waits(listener: TcpListener) -> None:
    with pytest.raises(BlockingIOError):
        listener.accept_many()
    with pytest.raises(ValueError, match="max_count"):
        listener.accept_many(0)


def test_accept_many_returns_configured_nonblocking_streams() -> None:
    config = NetConfig(tcp_nodelay=True)
    with TcpListener.bind("127.0.0.1:0", config) as listener:
        clients = [TcpStream.connect(listener.local_address) for _ in range(5)]
        try:
            accepted: list[tuple[TcpStream, object]] = []
            for _ in range(100):  # bounded: each round waits (bounded) for the next connect
                wait_readable(listener)
                accepted += listener.accept_many(3)
                if len(accepted) == 5:
                    break
            assert len(accepted) == 5
            assert {peer for _, peer in accepted} == {c.local_address for c in clients}
            for stream, _ in accepted:
                with stream:
                    assert isinstance(stream, TcpStream)
                    assert fcntl.fcntl(stream.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK
                    assert stream.options["tcp_nodelay"].effective == 1
                    assert stream.config is listener.config
                    with pytest.raises(BlockingIOError):
                        stream.recv_into(bytearray(8))
            with pytest.raises(BlockingIOError):
                listener.accept_many()
        finally:
            for client in clients:
                client.close()


def test_accept_many_takes_at_most_max_count(listener: TcpListener) -> None:
    clients = [TcpStream.connect(listener.local_address) for _ in range(4)]
    try:
        got = []
        for _ in range(100):
            wait_readable(listener)
            batch = listener.accept_many(2)
            assert 1 <= len(batch) <= 2
            got += batch
            if len(got) == 4:
                break
        for stream, _ in got:
            stream.close()
        assert len(got) == 4
    finally:
        for client in clients:
            client.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(min_size=1, max_size=100_000),
    pieces=st.lists(st.integers(0, 5_000), min_size=0, max_size=40),
)
def test_bytes_survive_send_vectored_of_many_buffers(
    pair: tuple[TcpStream, TcpStream], data: bytes, pieces: list[int]
) -> None:
    # More than 16 buffers takes the heap iovec path; fewer, the stack one.
    client, server = pair
    view = memoryview(data)
    sent = 0
    received = bytearray()
    buf = bytearray(65536)
    for _ in range(100_000):  # bounded: each step moves bytes or waits (bounded) for the kernel
        if sent < len(data):
            buffers, at = [], sent
            for size in pieces:
                buffers.append(view[at : at + size])
                at += size
            buffers.append(view[at:])  # the rest: every call offers every byte not yet sent
            with contextlib.suppress(BlockingIOError):
                sent += client.send_vectored(buffers)
        try:
            n = server.recv_into(buf)
        except BlockingIOError:
            if sent < len(data):
                wait_writable(client)
            else:
                wait_readable(server)
            continue
        received += buf[:n]
        if len(received) == len(data):
            break
    assert bytes(received) == data


def test_quickack_is_rearmed_after_a_pause_in_a_conversation(
    pair: tuple[TcpStream, TcpStream],
) -> None:
    # Replies make the kernel leave quick-ack mode (interactive traffic); a read after a pause
    # longer than the re-arm interval (1 ms, on a coarse clock of at most a few ms) re-arms it.
    client, server = pair
    for _ in range(5):
        client.send(b"q" * 100)
        _read_exactly(server, 100)
        server.send(b"r" * 100)
        _read_exactly(client, 100)
    time.sleep(0.02)
    client.send(b"q" * 100)
    _read_exactly(server, 100)
    with socket.socket(fileno=os.dup(server.fileno())) as view:
        assert view.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
