"""TCP on the iocp driver: AcceptEx, ConnectEx, overlapped WSASend/WSARecv.

Windows only (run ``.ci/wine/run`` on Linux).
"""

from __future__ import annotations

import contextlib

import pytest

from horizon_core.events import Interest
from tests.drivers.iocp.iocp_helpers import WAIT, iocp, retry, until, windows_only

pytestmark = windows_only


def pair(listener: iocp.TcpListener) -> tuple[iocp.TcpStream, iocp.TcpStream]:
    client = iocp.connect_tcp(listener.local_address)
    server, peer = retry(listener.accept_nonblocking, "accept")
    until(client.finish_connect, "finish_connect")
    assert peer == client.local_address == server.peer_address
    assert client.peer_address == server.local_address == listener.local_address
    return client, server


def read_all(stream: iocp.TcpStream, size: int) -> bytes:
    got = bytearray()
    buf = bytearray(65536)
    while len(got) < size:
        n = retry(lambda: stream.recv_into(buf), "recv_into")
        assert n > 0, "end of stream before all bytes"
        got += buf[:n]
    return bytes(got)


@pytest.mark.parametrize("address", ["127.0.0.1:0", "[::1]:0"])
def test_accept_connect_echo_and_half_close(address: str) -> None:
    with iocp.bind_tcp(address) as listener:
        client, server = pair(listener)
        with client, server:
            payload = bytes(range(256)) * 4096  # 1 MiB: several buffer-fulls
            sent = 0
            received = bytearray()
            buf = bytearray(65536)
            while sent < len(payload) or len(received) < len(payload):
                if sent < len(payload):
                    with contextlib.suppress(BlockingIOError):
                        sent += client.send(memoryview(payload)[sent:])
                try:
                    n = server.recv_into(buf)
                    received += buf[:n]
                except BlockingIOError:
                    iocp.harvest(0.01)
            assert bytes(received) == payload
            assert client.send_vectored([b"ab", b"", b"cd"]) == 4
            client.shutdown_write()
            assert read_all(server, 4) == b"abcd"
            assert retry(lambda: server.recv_into(buf), "end of stream") == 0
            assert server.recv_into(buf) == 0  # sticky
            server.send(b"after your FIN")
            assert read_all(client, 14) == b"after your FIN"
            with pytest.raises(BrokenPipeError):
                client.send(b"x")


def test_closing_with_unread_bytes_resets_the_peer() -> None:
    """Bytes the driver already took off the wire still count as unread: close() resets (RST)."""
    with iocp.bind_tcp("127.0.0.1:0") as listener:
        client, server = pair(listener)
        client.send(b"unread")
        until(lambda: server.recv_into is not None and _has_bytes(server), "bytes at the server")
        server.close()
        with pytest.raises(ConnectionResetError):
            retry(lambda: client.recv_into(bytearray(8)), "reset")
        with pytest.raises(ConnectionResetError):
            client.recv_into(bytearray(8))
        client.close()


def _has_bytes(stream: iocp.TcpStream) -> bool:
    with iocp.runtime() as rt:
        token = rt.register(stream, Interest.READABLE)
        return any(e.token == token and e.readable for e in rt.poll_once(0))


def test_connect_refused() -> None:
    listener = iocp.bind_tcp("127.0.0.1:0")
    address = listener.local_address
    listener.close()
    with iocp.connect_tcp(address) as stream:
        with pytest.raises(ConnectionRefusedError):
            until(stream.finish_connect, "refused connect")
        with pytest.raises(ConnectionRefusedError):
            stream.finish_connect()  # sticky


def test_full_send_buffer_would_block_then_becomes_writable() -> None:
    with iocp.runtime() as rt, iocp.bind_tcp("127.0.0.1:0") as listener:
        client, server = pair(listener)
        with client, server:
            token = rt.register(client, Interest.WRITABLE)
            chunk = b"z" * 65536
            total = 0
            for _ in range(10_000):
                try:
                    total += client.send(chunk)
                except BlockingIOError:
                    break
            else:
                pytest.fail("the send buffer never filled")
            assert total >= iocp.STREAM_BUFFER
            buf = bytearray(65536)
            drained = 0
            writable = False
            for _ in range(10_000):
                with contextlib.suppress(BlockingIOError):
                    drained += server.recv_into(buf)
                events = rt.poll_once(0.01)
                if any(e.token == token and e.writable for e in events):
                    writable = True
                    break
            assert writable, "the client never became writable again"
            assert drained > 0


def test_accept_with_nothing_pending_would_block_and_listener_closes_cleanly() -> None:
    listener = iocp.bind_tcp("127.0.0.1:0")
    with pytest.raises(BlockingIOError):
        listener.accept_nonblocking()
    listener.close()
    listener.close()
    assert listener.closed
    assert listener.fileno() == -1


def test_accepted_stream_carries_the_listeners_config() -> None:
    from horizon_core.config import NetConfig

    config = NetConfig(tcp_nodelay=False, recv_buf=128 * 1024)
    with iocp.bind_tcp("127.0.0.1:0", config) as listener:
        client = iocp.connect_tcp(listener.local_address, config)
        server, _ = retry(listener.accept_nonblocking, "accept")
        with client, server:
            assert server.options["tcp_nodelay"].effective == 0
            assert server.options["recv_buf"].effective == 128 * 1024
            assert server.config is listener.config
    assert WAIT > 0
