"""The benchmark's C load generator: windowed UDP echo traffic, TCP streaming and ping-pong, RTT
sampling and quantiles, loss and dead servers without hanging."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.drivers.native.native_helpers import LOOPBACKS, WAIT, bracket  # first: skips off Linux

# isort: split
from horizon_drivers.bench.loadgen import (
    MAX_CONNECTIONS,
    MAX_PIPELINE,
    MAX_TCP_SIZE,
    MAX_WINDOW,
    run_tcp_pipelined,
    run_tcp_rtt,
    run_tcp_throughput,
    run_udp_load,
)

# Generous hang bounds, not speed checks: a run must end within its own limits plus this slack.
SLACK = 5.0


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


@pytest.mark.parametrize("gso", [True, False])
def test_gso_bursts_reach_the_server_as_separate_datagrams(gso: bool) -> None:
    # The generator's GSO sends must be invisible to the server: every datagram it reads is
    # one payload_size datagram with its own sequence number.
    sizes: list[int] = []
    sequence: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    data, address = sock.recvfrom(65536)
                except TimeoutError:
                    continue
                sizes.append(len(data))
                sequence.append(data[:8])
                sock.sendto(data, address)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            result = run_udp_load(f"127.0.0.1:{sock.getsockname()[1]}", duration=0.2, warmup=0.0,
                                  window=128, payload_size=100, gso=gso)
        finally:
            stop.set()
            thread.join()
    assert result["gso"] is gso
    assert result["total_received"] > 0
    assert sizes
    assert set(sizes) == {100}
    assert len(set(sequence)) == len(sequence)  # no datagram twice, none merged


def test_window_of_one_never_uses_gso(echo_server: str) -> None:
    result = run_udp_load(echo_server, duration=0.05, warmup=0.0, window=1)
    assert result["gso"] is False


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


def test_udp_quantiles_are_the_percentiles_in_order(echo_server: str) -> None:
    wanted = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0]
    result = run_udp_load(echo_server, duration=0.2, warmup=0.0, window=4, sample_rtt=True,
                          quantiles=wanted)
    rtt = result["rtt_ns"]
    assert rtt["samples"] > 0
    _check_quantiles(rtt, wanted)
    plain = run_udp_load(echo_server, duration=0.05, warmup=0.0, window=1, sample_rtt=True)
    assert "quantiles" not in plain["rtt_ns"]  # the old result shape, unless asked


def _check_quantiles(rtt: dict[str, object], wanted: list[float]) -> None:
    pairs = rtt["quantiles"]
    assert isinstance(pairs, list)
    assert [q for q, _ in pairs] == wanted
    values = [ns for _, ns in pairs]
    assert values == sorted(values)
    by_q = dict(pairs)
    assert by_q[0.0] == rtt["min"]
    assert by_q[0.5] == rtt["p50"]
    assert by_q[0.99] == rtt["p99"]
    assert by_q[1.0] == rtt["max"]


# -- TCP ------------------------------------------------------------------------------------------


class TcpEchoServer:
    """A thread-per-connection TCP server on loopback that counts what it echoes.

    ``behavior`` is ``echo``, ``close`` (accept, then close at once) or ``silent`` (accept,
    never read). Every wait is bounded; ``stop`` ends all threads.
    """

    def __init__(self, host: str, behavior: str = "echo") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.address = bracket(host, self.listener.getsockname()[1])
        self.behavior = behavior
        self.echoed = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._accept)]
        self.held: list[socket.socket] = []
        self.threads[0].start()

    def _accept(self) -> None:
        while not self.halt.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self.lock:
                self.connections += 1
            if self.behavior == "close":
                conn.close()
            elif self.behavior == "silent":
                self.held.append(conn)
            else:
                thread = threading.Thread(target=self._echo, args=(conn,))
                self.threads.append(thread)
                thread.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not self.halt.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    conn.sendall(data)
                except OSError:
                    return
                with self.lock:
                    self.echoed += len(data)

    def wait_echoed(self, count: int) -> int:
        """The echoed count once it reaches ``count`` (it trails the client by a sendall)."""
        deadline = time.monotonic() + WAIT
        while self.echoed < count and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.echoed

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(WAIT)
        for conn in self.held:
            conn.close()
        self.listener.close()


@pytest.fixture
def tcp_server() -> Iterator[Callable[..., TcpEchoServer]]:
    """A factory of :class:`TcpEchoServer` (host, behavior), all stopped after the test."""
    servers: list[TcpEchoServer] = []

    def start(host: str = "127.0.0.1", behavior: str = "echo") -> TcpEchoServer:
        servers.append(TcpEchoServer(host, behavior))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize(("connections", "size"), [(1, 65536), (3, 1000)])
def test_tcp_throughput_counts_every_byte_echoed(
    tcp_server: Callable[..., TcpEchoServer], host: str, connections: int, size: int
) -> None:
    server = tcp_server(host)
    started = time.monotonic()
    result = run_tcp_throughput(server.address, duration=0.2, warmup=0.05,
                                connections=connections, size=size, timeout=2.0)
    assert time.monotonic() - started < 0.25 + 2 * 2.0 + SLACK
    assert result["drained"]
    assert result["total_received"] == result["total_sent"] > 0
    assert server.wait_echoed(result["total_sent"]) == result["total_received"]
    assert server.connections == connections == result["connections"]
    assert 0 < result["bytes"] <= result["total_received"]
    assert result["seconds"] == pytest.approx(0.2, abs=0.1)
    assert result["bytes_per_s"] == pytest.approx(result["bytes"] / result["seconds"])
    assert result["send_calls"] > 0
    assert result["recv_calls"] > 0


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize("busy_wait", [False, True])
def test_tcp_round_trips_give_ordered_percentiles(
    tcp_server: Callable[..., TcpEchoServer], host: str, busy_wait: bool
) -> None:
    server = tcp_server(host)
    wanted = [0.0, 0.1, 0.5, 0.9, 0.99, 1.0]
    result = run_tcp_rtt(server.address, duration=0.2, warmup=0.05, size=100,
                         busy_wait=busy_wait, timeout=2.0, quantiles=wanted)
    rtt = result["rtt_ns"]
    assert result["round_trips"] == rtt["samples"] > 0
    assert result["total_round_trips"] >= result["round_trips"]
    assert result["total_sent"] == result["total_received"] == 100 * result["total_round_trips"]
    assert server.wait_echoed(result["total_sent"]) == result["total_sent"]
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p90"] <= rtt["p99"] <= rtt["p999"] <= rtt["max"]
    assert rtt["min"] <= rtt["mean"] <= rtt["max"]
    assert result["rate"] > 0
    _check_quantiles(rtt, wanted)


def test_tcp_round_trip_samples_stop_at_the_preallocated_array(
    tcp_server: Callable[..., TcpEchoServer],
) -> None:
    server = tcp_server()
    result = run_tcp_rtt(server.address, duration=0.1, warmup=0.0, size=1, max_samples=5)
    assert result["rtt_ns"]["samples"] == 5 < result["round_trips"]
    assert run_tcp_rtt(server.address, duration=0.05, warmup=0.0,
                       max_samples=0)["rtt_ns"] == {"samples": 0}


@pytest.mark.parametrize("host", LOOPBACKS)
@pytest.mark.parametrize(("size", "pipeline"), [(64, 256), (1, 1), (3000, 5)])
def test_tcp_pipelined_counts_messages_and_times_each(
    tcp_server: Callable[..., TcpEchoServer], host: str, size: int, pipeline: int
) -> None:
    server = tcp_server(host)
    started = time.monotonic()
    wanted = [0.0, 0.5, 0.99, 1.0]
    cap = 1_000_000  # round-trip samples stop at the preallocated array; counting goes on
    result = run_tcp_pipelined(server.address, duration=0.2, warmup=0.05, size=size,
                               pipeline=pipeline, timeout=2.0, quantiles=wanted, max_samples=cap)
    assert time.monotonic() - started < 0.25 + 2.0 + SLACK
    rtt = result["rtt_ns"]
    assert (result["size"], result["pipeline"]) == (size, pipeline)
    assert 0 < result["messages"] <= result["total_messages"]
    assert rtt["samples"] == min(result["messages"], cap)
    # Every completed message came back whole; no more than `pipeline` were ever outstanding.
    assert result["total_messages"] == result["total_received"] // size
    assert result["total_received"] <= result["total_sent"]
    assert result["total_sent"] <= (result["total_messages"] + pipeline) * size
    assert result["seconds"] == pytest.approx(0.2, abs=0.1)
    assert result["rate"] == pytest.approx(result["messages"] / result["seconds"])
    assert 0 < rtt["min"] <= rtt["p50"] <= rtt["p99"] <= rtt["max"]
    _check_quantiles(rtt, wanted)


def test_tcp_pipelined_samples_stop_at_the_preallocated_array(
    tcp_server: Callable[..., TcpEchoServer],
) -> None:
    server = tcp_server()
    result = run_tcp_pipelined(server.address, duration=0.1, warmup=0.0, max_samples=5)
    assert result["rtt_ns"]["samples"] == 5 < result["messages"]


def test_tcp_pipelined_refuses_an_echo_out_of_order() -> None:
    # A server that answers every message with message 1's bytes: the 2nd echo is wrong.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        stop = threading.Event()

        def serve() -> None:
            listener.settimeout(WAIT)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(0.05)
                while not stop.is_set():
                    try:
                        data = conn.recv(65536)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    reply = (1).to_bytes(8, "little") + bytes(56)
                    try:
                        conn.sendall(reply * (len(data) // 64 + 1))
                    except OSError:
                        return

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with pytest.raises(OSError) as info:
                run_tcp_pipelined(f"127.0.0.1:{listener.getsockname()[1]}", duration=2.0,
                                  warmup=0.0, timeout=1.0)
            assert info.value.errno == errno.EBADMSG
        finally:
            stop.set()
            thread.join(WAIT)


TCP_MODES: dict[str, Callable[..., dict[str, Any]]] = {
    "throughput": run_tcp_throughput,
    "rtt": run_tcp_rtt,
    "pipelined": run_tcp_pipelined,
}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_tcp_refused_connect_is_an_oserror_with_errno() -> None:
    target = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ConnectionRefusedError, match="connect to") as info:
        run_tcp_throughput(target, duration=0.1, timeout=1.0)
    assert info.value.errno == errno.ECONNREFUSED
    with pytest.raises(ConnectionRefusedError) as info:
        run_tcp_rtt(target, duration=0.1, timeout=1.0)
    assert info.value.errno == errno.ECONNREFUSED


@pytest.mark.parametrize("mode", sorted(TCP_MODES))
def test_tcp_server_closing_is_an_oserror_not_a_hang(
    tcp_server: Callable[..., TcpEchoServer], mode: str
) -> None:
    server = tcp_server(behavior="close")
    started = time.monotonic()
    with pytest.raises(OSError) as info:
        TCP_MODES[mode](server.address, duration=2.0, warmup=0.0, timeout=1.0)
    assert info.value.errno in (errno.ECONNRESET, errno.EPIPE)
    assert time.monotonic() - started < 1.0 + SLACK


@pytest.mark.parametrize("mode", sorted(TCP_MODES))
def test_tcp_silent_server_times_out_within_the_bound(
    tcp_server: Callable[..., TcpEchoServer], mode: str
) -> None:
    server = tcp_server(behavior="silent")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="no progress") as info:
        TCP_MODES[mode](server.address, duration=30.0, warmup=0.0, timeout=0.2)
    assert info.value.errno == errno.ETIMEDOUT
    assert time.monotonic() - started < 0.2 + SLACK  # not the 30 s duration


def test_tcp_bad_arguments_are_refused() -> None:
    target = "127.0.0.1:9"
    with pytest.raises(ValueError):
        run_tcp_throughput(target, connections=0)
    with pytest.raises(ValueError):
        run_tcp_throughput(target, connections=MAX_CONNECTIONS + 1)
    with pytest.raises(ValueError):
        run_tcp_throughput(target, size=0)
    with pytest.raises(ValueError):
        run_tcp_rtt(target, size=MAX_TCP_SIZE + 1)
    with pytest.raises(ValueError):
        run_tcp_rtt(target, duration=0)
    with pytest.raises(ValueError):
        run_tcp_rtt(target, timeout=0)
    with pytest.raises(ValueError):
        run_tcp_rtt(target, quantiles=[0.5, 1.5])
    with pytest.raises(ValueError):
        run_udp_load(target, quantiles=[-0.1])
    with pytest.raises(ValueError):
        run_tcp_rtt("localhost:9")
    with pytest.raises(ValueError, match="pipeline must be"):
        run_tcp_pipelined(target, pipeline=0)
    with pytest.raises(ValueError, match="pipeline must be"):
        run_tcp_pipelined(target, pipeline=MAX_PIPELINE + 1)
    with pytest.raises(ValueError, match="pipeline x size"):
        run_tcp_pipelined(target, pipeline=MAX_PIPELINE, size=MAX_TCP_SIZE // 2)
