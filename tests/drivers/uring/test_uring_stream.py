"""The io_uring driver's TCP streams: a multishot poll for readiness, reads into the caller's buffer.

What these pin down: readiness stays level-triggered although the poll reports edges (only a read
that proves the socket empty clears it), bytes survive any chunking whether reads follow the
runtime's events or not, end of stream stays readable, and close (with bytes unread, with the poll
in flight, or by dropping the stream) leaves no request behind. Loopback only; every loop is
bounded in rounds and time; nothing asserts speed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.drivers.uring.uring_helpers import MAX_ROUNDS, WAIT, in_flight  # skips if unavailable

# isort: split
from horizon_core.events import Interest
from horizon_drivers import uring


@contextlib.contextmanager
def _pair(rt: uring.Runtime) -> Iterator[tuple[uring.TcpStream, uring.TcpStream]]:
    """A connected (client, server) pair of uring streams on loopback, both closed afterwards."""
    with uring.bind_tcp("127.0.0.1:0") as listener:
        client = uring.connect_tcp(listener.local_address)
        token = rt.register(listener, Interest.READABLE)
        server = None
        deadline = time.monotonic() + WAIT
        for _ in range(MAX_ROUNDS):
            try:
                server, _ = listener.accept_nonblocking()
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                rt.poll_once(0.05)
        rt.deregister(token)
        assert server is not None, "no connection accepted"
        for _ in range(MAX_ROUNDS):
            if client.finish_connect() or time.monotonic() > deadline:
                break
            time.sleep(0.001)
        with client, server:
            yield client, server


def _events_for(rt: uring.Runtime, token: object, timeout: float) -> list[object]:
    return [ev for ev in rt.poll_once(timeout) if ev.token == token]


def _wait_readable(rt: uring.Runtime, token: object) -> bool:
    deadline = time.monotonic() + WAIT
    for _ in range(MAX_ROUNDS):
        if any(ev.readable for ev in _events_for(rt, token, 0.05)):  # type: ignore[attr-defined]
            return True
        if time.monotonic() > deadline:
            return False
    return False


def _drain(stream: uring.TcpStream, buffer: bytearray, got: bytearray, reads: int) -> None:
    """Read as an echo loop does: until EAGAIN or a short read (at most ``reads`` reads)."""
    for _ in range(reads):
        try:
            n = stream.recv_into(buffer)
        except BlockingIOError:
            return
        got += buffer[:n]
        if n < len(buffer):
            return


def _send_all(stream: uring.TcpStream, data: bytes, sizes: list[int]) -> None:
    sent = 0
    deadline = time.monotonic() + WAIT
    for i in range(MAX_ROUNDS * 10):
        if sent >= len(data) or time.monotonic() > deadline:
            break
        size = sizes[i % len(sizes)]
        with contextlib.suppress(BlockingIOError):
            sent += stream.send(data[sent : sent + size])
    assert sent == len(data), f"sent {sent} of {len(data)}"


def test_readiness_stays_until_a_read_proves_the_socket_empty() -> None:
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        assert not _events_for(rt, token, 0)
        client.send(b"x" * 100)
        assert _wait_readable(rt, token)
        buffer = bytearray(10)
        assert server.recv_into(buffer) == 10  # a full buffer proves nothing: still readable
        assert _events_for(rt, token, 0), "level-triggered: 90 bytes still wait"
        big = bytearray(1000)
        assert server.recv_into(big) == 90  # short: the socket is empty now
        assert not _events_for(rt, token, 0)
        assert not _events_for(rt, token, 0.01)
        client.send(b"more")
        assert _wait_readable(rt, token), "bytes arriving after a drain wake the poll again"
        assert server.recv_into(big) == 4
        with pytest.raises(BlockingIOError):
            server.recv_into(big)
        assert not _events_for(rt, token, 0)
        counters = server.poll_counters
        assert counters["armed"]
        assert counters["drains"] >= 2
        assert counters["wakeups"] >= 2


def test_a_read_of_exactly_what_waits_leaves_at_most_one_spurious_event() -> None:
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        client.send(b"abcd")
        assert _wait_readable(rt, token)
        buffer = bytearray(4)
        assert server.recv_into(buffer) == 4  # full: the driver cannot know the socket is empty
        for _ in range(3):
            if not _events_for(rt, token, 0):
                break
            with pytest.raises(BlockingIOError):  # the spurious event: EAGAIN clears it
                server.recv_into(buffer)
        assert not _events_for(rt, token, 0)


def test_end_of_stream_stays_readable() -> None:
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        client.send(b"last")
        client.shutdown_write()
        assert _wait_readable(rt, token)
        buffer = bytearray(64)
        got = b""
        for _ in range(100):
            n = server.recv_into(buffer)
            if n == 0:
                break
            got += buffer[:n]
        assert got == b"last"
        for _ in range(3):  # level-triggered: end of stream is reported again and again
            assert any(ev.readable for ev in _events_for(rt, token, 0))  # type: ignore[attr-defined]
            assert server.recv_into(buffer) == 0


def test_a_peer_reset_is_raised_once_then_reads_as_ended() -> None:
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(client, Interest.READABLE)
        watched = rt.register(server, Interest.READABLE)
        client.send(b"unread by the server")
        assert _wait_readable(rt, watched)  # the bytes sit in the server's receive queue
        rt.deregister(watched)
        server.close()  # bytes unread: the kernel resets the connection
        assert _wait_readable(rt, token)
        with pytest.raises(ConnectionResetError):
            client.recv_into(bytearray(64))
        assert client.recv_into(bytearray(64)) == 0
        assert any(ev.readable for ev in _events_for(rt, token, 0))  # type: ignore[attr-defined]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(st.integers(1, 2000), st.integers(1, 600_000)),
    write_sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
    read_sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
    poll_first=st.lists(st.booleans(), min_size=1, max_size=5),
)
def test_bytes_survive_any_chunking_whether_reads_follow_events_or_not(
    size: int, write_sizes: list[int], read_sizes: list[int], poll_first: list[bool]
) -> None:
    # Reads alternate between following the runtime's readable events and reading straight
    # away (a completion may then still be unreaped): no byte is lost, doubled or reordered.
    floor = max(1, size // 100)  # at most about 100 writes and reads each: cheap examples
    write_sizes = [max(floor, n) for n in write_sizes]
    read_sizes = [max(floor, n) for n in read_sizes]
    data = bytes((i * 7 + i // 251) & 0xFF for i in range(size))
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        out = rt.register(client, Interest.WRITABLE)
        sent = 0
        got = bytearray()
        buffers = [bytearray(n) for n in read_sizes]
        deadline = time.monotonic() + WAIT * 4
        for step in range(MAX_ROUNDS):
            if len(got) >= size or time.monotonic() > deadline:
                break
            if sent < size:
                chunk = write_sizes[step % len(write_sizes)]
                with contextlib.suppress(BlockingIOError):
                    sent += client.send(data[sent : sent + chunk])
            if poll_first[step % len(poll_first)]:
                events = rt.poll_once(0.01)
                if not any(ev.token == token for ev in events):
                    continue
            buffer = buffers[step % len(buffers)]
            try:
                n = server.recv_into(buffer)
            except BlockingIOError:
                continue
            assert n > 0
            got += buffer[:n]
        rt.deregister(out)
        assert len(got) == size
        assert bytes(got) == data


def test_more_than_the_socket_buffer_arrives_in_order_through_events() -> None:
    data = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        sent = 0
        got = bytearray()
        buffer = bytearray(100_000)
        deadline = time.monotonic() + WAIT * 4
        for _ in range(MAX_ROUNDS * 10):
            if len(got) >= len(data) or time.monotonic() > deadline:
                break
            if sent < len(data):
                with contextlib.suppress(BlockingIOError):
                    sent += client.send(data[sent:])
            for ev in rt.poll_once(0.01):
                if ev.token != token:
                    continue
                _drain(server, buffer, got, 16)
        assert bytes(got) == data
        assert server.poll_counters["armed"]


def test_closing_with_bytes_unread_and_the_poll_in_flight_leaves_no_request() -> None:
    baseline = in_flight()
    with uring.runtime() as rt, uring.bind_tcp("127.0.0.1:0") as listener:
        client = uring.connect_tcp(listener.local_address)
        rt.register(listener, Interest.READABLE)
        server = None
        for _ in range(200):
            try:
                server, _ = listener.accept_nonblocking()
                break
            except BlockingIOError:
                rt.poll_once(WAIT / 200)
        assert server is not None
        with client:
            token = rt.register(server, Interest.READABLE)
            client.send(b"never read")
            assert _wait_readable(rt, token)
            assert server.poll_counters["armed"]
            server.close()  # registered, poll in flight, bytes unread
            assert not server.poll_counters["armed"]
            assert server.fileno() == -1
            assert not _events_for(rt, token, 0)
            peer = rt.register(client, Interest.READABLE)
            assert _wait_readable(rt, peer)
            with pytest.raises(ConnectionResetError):  # the client sees the kernel's reset
                client.recv_into(bytearray(16))
    assert in_flight() == baseline


def test_a_stream_dropped_without_close_releases_its_poll() -> None:
    baseline = in_flight()
    with uring.runtime() as rt, _pair(rt) as (client, server):
        assert server.poll_counters["armed"]
        del client, server
    gc.collect()
    assert in_flight() == baseline


def test_closing_between_reads_of_a_busy_stream() -> None:
    baseline = in_flight()
    with uring.runtime() as rt:
        for round_ in range(5):
            with _pair(rt) as (client, server):
                token = rt.register(server, Interest.READABLE)
                _send_all(client, b"y" * 200_000, [65536])
                assert _wait_readable(rt, token)
                server.recv_into(bytearray(1000 * (round_ + 1)))
                rt.deregister(token)
                server.close()
    assert in_flight() == baseline


@pytest.mark.skipif(
    os.environ.get("HORIZON_URING_SINGLE_THREAD") == "1",
    reason="a single-threaded ring is polled from the thread that made it only",
)
def test_reads_in_one_thread_while_another_polls_lose_no_readiness() -> None:
    # A poll thread reports readability; the main thread reads each burst until a short read.
    # Readiness the poll thread reaps while a read runs must survive that read's clearing, or a
    # burst would wait for an event that never comes (bounded here by WAIT). The window is a
    # few microseconds: this exercises the path, it does not reproduce that race on demand.
    bursts = [bytes([i]) * (1 + i * 997 % 5000) for i in range(60)]
    with uring.runtime() as rt, _pair(rt) as (client, server):
        token = rt.register(server, Interest.READABLE)
        readable = threading.Event()
        stop = threading.Event()

        def poll() -> None:
            deadline = time.monotonic() + WAIT * 4
            while not stop.is_set() and time.monotonic() < deadline:
                if any(ev.token == token for ev in rt.poll_once(0.01)):
                    readable.set()
                    time.sleep(0.0005)  # let the reader run; the event repeats while readable

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        got = bytearray()
        buffer = bytearray(4096)
        try:
            for burst in bursts:
                _send_all(client, burst, [len(burst)])
                want = sum(map(len, bursts[: bursts.index(burst) + 1]))
                for _ in range(MAX_ROUNDS):
                    if len(got) >= want:
                        break
                    assert readable.wait(WAIT), f"no readiness with {want - len(got)} bytes unread"
                    readable.clear()
                    _drain(server, buffer, got, 100)
        finally:
            stop.set()
            poller.join(WAIT)
        assert not poller.is_alive()
        assert bytes(got) == b"".join(bursts)
