"""Portable TCP beyond the contract suite: IOV_MAX, sticky connect errors, quick-ack re-arming."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest

from horizon_core.config import NetConfig
from horizon_core.events import Interest
from horizon_drivers import portable
from horizon_drivers.portable import TcpStream


def connected(config: NetConfig | None = None) -> Iterator[tuple[TcpStream, TcpStream]]:
    with portable.bind_tcp("127.0.0.1:0", config) as listener, portable.runtime() as rt:
        client = portable.connect_tcp(listener.local_address, config)
        rt.register(listener, Interest.READABLE)
        assert rt.poll_once(2.0)
        server, peer = listener.accept_nonblocking()
        assert peer == client.local_address
        for _ in range(100):
            if client.finish_connect():
                break
            time.sleep(0.01)
        with client, server:
            yield client, server


@pytest.fixture
def pair() -> Iterator[tuple[TcpStream, TcpStream]]:
    yield from connected()


def test_send_vectored_takes_more_buffers_than_iov_max(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    pieces = [bytes([i % 256]) for i in range(5000)]
    sent = client.send_vectored(pieces)
    assert 1 <= sent <= 5000
    time.sleep(0.05)
    buf = bytearray(8192)
    n = server.recv_into(buf)
    assert bytes(buf[:n]) == b"".join(pieces)[:n]
    assert client.send_vectored([]) == 0


def test_a_failed_connect_raises_the_same_error_every_time() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connects are refused
        with portable.connect_tcp(f"127.0.0.1:{port}") as stream:
            errors = []
            for _ in range(200):
                try:
                    if stream.finish_connect():
                        break
                except ConnectionRefusedError as exc:
                    errors.append(exc)
                    if len(errors) == 2:
                        break
                time.sleep(0.005)
            assert len(errors) == 2
            assert errors[0] is errors[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_QUICKACK is Linux only")
def test_quickack_is_rearmed_after_reads() -> None:
    for client, server in connected(NetConfig(tcp_quickack=True)):
        assert server._quickack  # the report shows it applied
        client.send(b"data")
        time.sleep(0.02)
        assert server.recv_into(bytearray(16)) == 4
        assert server.fileno() >= 0
        assert server.options["TCP_QUICKACK"].status.value == "applied"


def test_streams_report_addresses_and_close_cleanly(pair: tuple[TcpStream, TcpStream]) -> None:
    client, server = pair
    assert client.peer_address == server.local_address
    assert "127.0.0.1" in repr(client)
    client.close()
    assert "closed" in repr(client)
    with pytest.raises(OSError):
        _ = client.local_address
