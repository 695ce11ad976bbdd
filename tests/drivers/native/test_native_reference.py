"""The C reference echo server behind ``horizon bench``'s peer ``c``: byte-exact UDP and TCP
echo on loopback, the spin mode, stopping (by its pipe and by SIGTERM), refused arguments.
Bounded loops only, never speed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.drivers.native.native_helpers import LOOPBACKS, WAIT  # first: skips off Linux

# isort: split
from horizon_core.config import NetConfig
from horizon_drivers.bench import _reference
from horizon_drivers.bench.reference import ReferenceServer, reference_status
from tests.cli.cli_helpers import ROOT, horizon_env


class Running:
    """A :class:`ReferenceServer` serving on a thread; ``finish()`` stops it and returns counts."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server
        self.counts: dict[str, Any] = {}
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.counts = self.server.serve()
        except BaseException as exc:  # handed to the test thread by finish()
            self.failure = exc

    def finish(self) -> dict[str, Any]:
        self.server.stop()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the C loop did not stop"
        if self.failure is not None:
            raise self.failure
        return self.counts


@pytest.fixture
def start() -> Iterator[Any]:
    """A factory: start a reference server thread (protocol, host, spin_us); all stopped after."""
    running: list[Running] = []

    def go(protocol: str, host: str = "127.0.0.1", spin_us: int = 0, batch: int = 64) -> Running:
        server = ReferenceServer(protocol,  # type: ignore[arg-type]
                                 f"[{host}]:0" if ":" in host else f"{host}:0",
                                 NetConfig(), spin_us=spin_us, batch=batch)
        running.append(Running(server))
        return running[-1]

    try:
        yield go
    finally:
        for r in running:
            if r.thread.is_alive():
                r.server.stop()
                r.thread.join(WAIT)
            r.server.close()


def test_it_is_built_here() -> None:
    assert reference_status() == (True, "")


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize(("spin_us", "batch"), [(0, 64), (200, 1)])
def test_udp_echo_is_byte_exact_to_each_sender(
    start: Any, host: str, spin_us: int, batch: int
) -> None:
    running = start("udp", host, spin_us, batch)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(2)]
    sizes = [0, 1, 64, 1472, 9000, 65507 if family == socket.AF_INET else 65527]
    sent = 0
    try:
        for client in clients:
            client.settimeout(WAIT)
        for size in sizes:
            for index, client in enumerate(clients):
                payload = bytes([index + 1]) * size if size else b""
                payload = os.urandom(size) if size > 1 else payload
                client.sendto(payload, running.server.address.to_sockaddr())
                assert client.recv(70000) == payload
                sent += 1
        # A burst: every datagram back, in order, to the socket that sent it.
        burst = [i.to_bytes(4, "big") * 8 for i in range(200)]
        for payload in burst:
            clients[0].sendto(payload, running.server.address.to_sockaddr())
        assert [clients[0].recv(100) for _ in burst] == burst
        sent += len(burst)
    finally:
        for client in clients:
            client.close()
    counts = running.finish()
    assert counts["received"] == counts["sent"] == sent
    assert counts["dropped"] == counts["transient_errors"] == 0
    assert counts["protocol"] == "udp"
    assert (counts["batch"], counts["spin_us"]) == (batch, spin_us)
    if spin_us:
        assert counts["spins"] > 0


def _echo_stream(address: Any, payload: bytes) -> bytes:
    """Send ``payload`` from one thread while reading the echo in this one (bounded)."""
    with socket.create_connection(address.to_sockaddr()[:2], timeout=WAIT) as conn:
        writer = threading.Thread(target=conn.sendall, args=(payload,))
        writer.start()
        got = bytearray()
        while len(got) < len(payload):
            chunk = conn.recv(1 << 20)
            assert chunk, "the server closed the connection early"
            got += chunk
        writer.join(WAIT)
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(1) == b""  # the server closes its side on our EOF
        return bytes(got)


@pytest.mark.parametrize("host", LOOPBACKS)
def test_tcp_echo_is_byte_exact_on_several_connections(start: Any, host: str) -> None:
    running = start("tcp", host)
    address = running.server.address
    # 3 MB is more than the socket buffers: the server usually has to wait for EPOLLOUT.
    payloads = [os.urandom(3_000_000), b"x", os.urandom(100_000)]
    results: list[bytes] = [b""] * len(payloads)

    def one(i: int) -> None:
        results[i] = _echo_stream(address, payloads[i])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
    assert results == payloads
    # A client that connects and stays is closed by the server when it stops.
    idle = socket.create_connection(address.to_sockaddr()[:2], timeout=WAIT)
    idle.sendall(b"ping")
    assert idle.recv(4) == b"ping"
    counts = running.finish()
    assert idle.recv(1) == b""
    idle.close()
    total = sum(map(len, payloads)) + 4
    assert counts["bytes_received"] == counts["bytes_sent"] == total
    assert counts["accepted"] == 4
    assert counts["closed"] == 3
    assert counts["open_at_stop"] == 1
    assert counts["resets"] == counts["accept_errors"] == 0


def test_a_spinning_tcp_server_echoes_and_counts_its_spins(start: Any) -> None:
    running = start("tcp", spin_us=1000)
    time.sleep(0.05)  # nothing to do for longer than the budget: the loop blocks
    payload = os.urandom(200_000)
    assert _echo_stream(running.server.address, payload) == payload
    counts = running.finish()
    assert counts["spin_us"] == 1000
    assert counts["bytes_received"] == counts["bytes_sent"] == len(payload)
    assert counts["spins"] >= counts["spin_wins"] >= 1  # a spin found the client's next bytes
    assert counts["waits"] >= 1  # before the client came, the budget ran out and it blocked


def test_a_reset_closes_only_that_connection(start: Any) -> None:
    running = start("tcp")
    address = running.server.address.to_sockaddr()
    rude = socket.create_connection(address, timeout=WAIT)
    rude.sendall(b"hello")
    assert rude.recv(5) == b"hello"
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    rude.close()  # RST
    assert _echo_stream(running.server.address, b"still here") == b"still here"
    counts = running.finish()
    assert counts["accepted"] == 2


def test_stop_before_serve_returns_at_once() -> None:
    with ReferenceServer("udp", "127.0.0.1:0", NetConfig()) as server:
        server.stop()
        server.stop()  # twice is fine
        assert server.serve()["received"] == 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"batch must be 1\.\.256"):
        ReferenceServer("udp", "127.0.0.1:0", NetConfig(), batch=0)
    with pytest.raises(ValueError, match="spin_us must be"):
        ReferenceServer("udp", "127.0.0.1:0", NetConfig(), spin_us=-1)
    with pytest.raises(ValueError, match="protocol must be"):
        ReferenceServer("quic", "127.0.0.1:0", NetConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="descriptors must be open"):
        _reference.serve_tcp(-1, 0)
    with pytest.raises(ValueError, match="spin_us must be"):
        ReferenceServer("tcp", "127.0.0.1:0", NetConfig(), spin_us=_reference.MAX_SPIN_US + 1)
    with pytest.raises(ValueError, match="batch must be"):
        _reference.serve_udp(0, 0, batch=257)
    server = ReferenceServer("tcp", "127.0.0.1:0", NetConfig())
    server.close()
    server.close()
    with pytest.raises(ValueError, match="closed"):
        server.serve()


def test_a_loop_failure_is_an_oserror_not_a_crash() -> None:
    # A descriptor epoll cannot watch (a regular file) as the socket: reported, cleaned up.
    r, w = os.pipe()
    try:
        with open(__file__, "rb") as regular, pytest.raises(OSError):
            _reference.serve_udp(regular.fileno(), r)
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_the_bench_child_stops_on_sigterm_and_reports(protocol: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "horizon_drivers.bench.child", "serve", "c", protocol],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=horizon_env(), cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        host, port = ready["ready"].rsplit(":", 1)
        if protocol == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(WAIT)
                client.sendto(b"abc", (host, int(port)))
                assert client.recv(10) == b"abc"
        else:
            with socket.create_connection((host, int(port)), timeout=WAIT) as client:
                client.sendall(b"abc")
                assert client.recv(10) == b"abc"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    assert proc.returncode == 0, err
    totals = json.loads(out.strip().splitlines()[-1])["totals"]
    assert totals["protocol"] == protocol
    if protocol == "udp":
        assert totals["received"] == totals["sent"] == 1
    else:
        assert totals["bytes_received"] == totals["bytes_sent"] == 3
