"""The benchmark's C load generator: windowed echo traffic, RTT sampling, loss without hanging."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.drivers.native.native_helpers import LOOPBACKS, bracket  # first: it skips this module off Linux

# isort: split
from horizon_drivers.native._linux_loadgen import MAX_WINDOW, run_udp_load


@pytest.fixture(params=LOOPBACKS)
def echo_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A stdlib echo server thread on loopback; yields its address text."""
    host: str = request.param
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, address = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(data, address)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield bracket(host, sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_windowed_echo_with_rtt_samples(echo_server: str) -> None:
    result = run_udp_load(echo_server, duration=0.2, warmup=0.05, window=8, sample_rtt=True)
    assert result["received"] > 0
    assert result["total_received"] >= result["received"]
    assert result["total_sent"] >= result["total_received"]
    assert result["rate"] > 0
    rtt = result["rtt_ns"]
    assert rtt["samples"] > 0
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p99"] <= rtt["max"]


def test_busy_wait_window_of_one(echo_server: str) -> None:
    result = run_udp_load(echo_server, duration=0.1, warmup=0.0, window=1, busy_wait=True)
    assert result["received"] > 0
    assert "rtt_ns" not in result


def test_no_server_counts_losses_instead_of_hanging() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_udp_load(f"127.0.0.1:{port}", duration=0.1, warmup=0.0, window=4,
                          loss_timeout=0.01)
    assert result["total_received"] == 0
    assert result["timeouts"] > 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        run_udp_load("127.0.0.1:9", window=0)
    with pytest.raises(ValueError):
        run_udp_load("127.0.0.1:9", window=MAX_WINDOW + 1)
    with pytest.raises(ValueError):
        run_udp_load("127.0.0.1:9", duration=0)
    with pytest.raises(ValueError):
        run_udp_load("localhost:9")
