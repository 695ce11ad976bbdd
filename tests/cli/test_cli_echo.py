"""``horizon echo`` end to end: started, answered over loopback (UDP and TCP), stopped by a
signal with a one-line summary."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from horizon_drivers.cli.echo import served_drivers
from horizon_drivers.tuning import usable_cpu_count
from tests.cli.cli_helpers import Server, echo_server

BANNER = re.compile(r"serving udp (?P<udp>\S+), tcp (?P<tcp>\S+) with the (?P<driver>\w+) driver")


def _addresses(server: Server) -> tuple[tuple[str, int], tuple[str, int]]:
    match = BANNER.search(server.banner)
    assert match, server.banner
    udp_host, _, udp_port = match["udp"].rpartition(":")
    tcp_host, _, tcp_port = match["tcp"].rpartition(":")
    return (udp_host, int(udp_port)), (tcp_host, int(tcp_port))


def _udp_round_trip(address: tuple[str, int], payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(payload, address)
        return sock.recv(65536)


def _tcp_round_trip(address: tuple[str, int], payload: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("driver", served_drivers())
def test_echo_answers_udp_and_tcp_then_stops_on_sigterm(driver: str) -> None:
    with echo_server("--driver", driver, "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0") as server:
        _answers_then_stops(server, driver)


def _answers_then_stops(server: Server, driver: str) -> None:
    assert f"with the {driver} driver" in server.banner
    udp, tcp = _addresses(server)
    assert udp[1] > 0
    assert tcp[1] > 0

    for i in range(3):
        payload = bytes([i]) * (100 + i)
        assert _udp_round_trip(udp, payload) == payload
    big = bytes(range(256)) * 1024  # 256 KiB: more than one read and one write
    assert _tcp_round_trip(tcp, big) == big

    status, out, err = server.stop(signal.SIGTERM)
    assert status == 0, err
    assert "Traceback" not in err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("horizon echo: stopped after"), summary
    assert "udp 3 datagrams echoed of 3 received" in summary
    assert "tcp 1 connections, 256.0 KiB echoed" in summary


def test_echo_stops_on_sigint_and_defaults_to_loopback() -> None:
    with echo_server("--udp", "0") as server:  # a bare port means 127.0.0.1
        _stops_on_sigint(server)


def _stops_on_sigint(server: Server) -> None:
    assert "serving udp 127.0.0.1:" in server.banner
    assert "tcp" not in server.banner.split("with the")[0]
    status, out, _ = server.stop(signal.SIGINT)
    assert status == 0
    assert "udp 0 datagrams echoed of 0 received" in out


@pytest.mark.skipif(usable_cpu_count() < 2, reason="needs 2 usable CPUs")
def test_echo_workers_share_the_port() -> None:
    with echo_server("--workers", "2", "--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0") as server:
        _workers_answer_then_stop(server)


def _workers_answer_then_stop(server: Server) -> None:
    assert "2 workers on CPUs" in server.banner
    udp, tcp = _addresses(server)
    # Many sources: SO_REUSEPORT hashes each to a worker; every one is answered.
    for i in range(20):
        assert _udp_round_trip(udp, b"w%d" % i) == b"w%d" % i
    for _ in range(4):
        assert _tcp_round_trip(tcp, b"tcp") == b"tcp"
    # Ctrl-C at a terminal: SIGINT reaches the command and every worker at once.
    status, out, err = server.stop(signal.SIGINT, group=True)
    assert status == 0, err
    summary = out.strip().splitlines()[-1]
    assert "udp 20 datagrams echoed of 20 received" in summary
    assert "tcp 4 connections" in summary
    assert summary.endswith("(2 workers)")


def _served_with_reuseport(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen(1)
    return sock


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
def test_share_port_serves_a_port_another_process_serves() -> None:
    # Without --share-port this is refused (tests/cli/test_cli_errors.py); with it, both serve.
    with _served_with_reuseport(socket.SOCK_DGRAM) as other:
        port = other.getsockname()[1]
        with echo_server("--driver", "portable", "--udp", f"127.0.0.1:{port}", "--share-port") as server:
            assert f"serving udp 127.0.0.1:{port}" in server.banner
            server.stop(signal.SIGTERM)
