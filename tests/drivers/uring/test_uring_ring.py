"""The io_uring driver's ring: buffer exhaustion, CQ overflow, cancellation, slot accounting.

Every test runs on loopback, bounds each wait, and asserts behaviour, never speed.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from tests.drivers.uring.uring_helpers import WAIT, in_flight, receive_all  # skips if unavailable

# isort: split
from horizon_core.buffers import BufferPool, SlotState
from horizon_core.config import NetConfig
from horizon_core.events import Interest
from horizon_drivers import uring


def _send(sender: uring.UdpSocket, target: object, payloads: list[bytes]) -> None:
    start = 0
    for _ in range(len(payloads) + 100):
        if start >= len(payloads):
            return
        start += sender.send_batch([(p, target) for p in payloads[start:]])  # type: ignore[misc]
    raise AssertionError(f"sent only {start} of {len(payloads)}")


def _run_fresh(script: str, **ring_env: str) -> list[str]:
    """Run ``script`` in a new process whose ring is made with ``ring_env`` (the ring-mode
    variables are read once, when the process's ring is made); return its output's words."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HORIZON_URING_")}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **ring_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_more_datagrams_than_slots_all_arrive_and_the_receive_re_arms() -> None:
    config = NetConfig(recv_buf=4 * 1024 * 1024)
    with (
        uring.runtime() as rt,
        uring.UdpSocket.bind("127.0.0.1:0", config, ring_slots=4) as server,
        uring.bind_udp("127.0.0.1:0") as client,
    ):
        rt.register(server, Interest.READABLE)
        payloads = [i.to_bytes(4, "big") for i in range(200)]
        _send(client, server.local_address, payloads)
        got = receive_all(server, rt, len(payloads), capacity=3)
        drops = server.stats.kernel_drops or 0
        assert len(got) + drops == len(payloads)
        assert got == [p for p in payloads if p in set(got)]  # in order, none duplicated
        assert drops == 0, "a 4 MiB receive buffer holds 200 small datagrams"
        counters = server.ring_counters
        assert counters["enobufs"] >= 1, "4 slots for 200 datagrams must run out"
        assert counters["arms"] >= 2
        assert counters["armed"]
        pool = server.receive_pool
        assert pool.counts()[SlotState.POSTED] == 4  # every slot back with the kernel
        pool.check_invariants()


def test_a_datagram_longer_than_a_ring_slot_is_flagged_with_its_true_length() -> None:
    with (
        uring.runtime() as rt,
        uring.UdpSocket.bind("127.0.0.1:0", ring_payload=100) as server,
        uring.bind_udp("127.0.0.1:0") as client,
    ):
        rt.register(server, Interest.READABLE)
        client.send_to(b"x" * 1000, server.local_address)
        batch = BufferPool(4, 2048).batch(4)
        for _ in range(100):
            if server.queued:
                break
            rt.poll_once(WAIT / 100)
        assert server.recv_batch(batch) == 1
        assert batch.is_truncated(0)
        assert batch.original_length(0) == 1000
        assert bytes(batch.payload(0)) == b"x" * 100


def test_closing_cancels_the_receive_and_returns_every_slot_to_free() -> None:
    baseline = in_flight()
    with uring.runtime() as rt, uring.bind_udp("127.0.0.1:0") as client:
        server = uring.UdpSocket.bind("127.0.0.1:0", ring_slots=8)
        rt.register(server, Interest.READABLE)
        _send(client, server.local_address, [b"queued"] * 5)
        for _ in range(100):
            if server.queued >= 5:
                break
            rt.poll_once(WAIT / 100)
        pool = server.receive_pool
        assert pool.counts()[SlotState.FILLED] == 5
        server.close()
        assert pool.counts() == {SlotState.FREE: 8, SlotState.POSTED: 0, SlotState.FILLED: 0}
        pool.check_invariants()
        assert server.ring_counters["cancelled"] == 1
        assert not server.ring_counters["armed"]
        assert server.fileno() == -1
    assert in_flight() == baseline


def test_a_socket_dropped_without_close_releases_its_request() -> None:
    baseline = in_flight()
    sock = uring.bind_udp("127.0.0.1:0")
    pool = sock.receive_pool
    del sock
    gc.collect()
    assert in_flight() == baseline
    assert pool.counts()[SlotState.FREE] == pool.slot_count


def test_closing_the_runtime_with_requests_in_flight_neither_leaks_nor_crashes() -> None:
    baseline = in_flight()
    with uring.bind_udp("127.0.0.1:0") as udp, uring.bind_tcp("127.0.0.1:0") as listener:
        rt = uring.runtime()
        rt.register(listener, Interest.READABLE)
        rt.register(udp, Interest.READABLE | Interest.WRITABLE)  # a poll in flight
        with uring.connect_tcp(listener.local_address) as stream:
            rt.register(stream, Interest.READABLE)  # a poll in flight: nothing is sent
            rt.poll_once(0)
            rt.close()
        # Only the open sockets' own requests remain: the UDP receive and the multishot accept.
        assert in_flight() == baseline + 2
        with uring.runtime() as again:  # the sockets stay usable
            token = again.register(udp, Interest.WRITABLE)
            assert any(ev.token == token for ev in again.poll_once(WAIT))


@pytest.mark.skipif(
    os.environ.get("HORIZON_URING_SINGLE_THREAD") == "1",
    reason="a single-threaded ring is polled from the thread that made it only",
)
def test_wake_from_another_thread_ends_a_blocking_poll() -> None:
    with uring.runtime() as rt:
        returned = threading.Event()

        def poll() -> None:
            rt.poll_once(None)  # no timeout: only the wake ends it
            returned.set()

        worker = threading.Thread(target=poll, daemon=True)
        worker.start()
        for _ in range(200):
            if returned.is_set():
                break
            rt.wake()
            returned.wait(WAIT / 200)
        worker.join(WAIT)
        assert returned.is_set()
        assert not worker.is_alive()


def test_a_completion_queue_flood_loses_nothing() -> None:
    # A fresh process with an 8-entry completion queue: 300 completions overflow it.
    script = textwrap.dedent(
        """
        from horizon_core.config import NetConfig
        from horizon_core.events import Interest
        from horizon_drivers import uring
        from tests.drivers.uring.uring_helpers import receive_all

        config = NetConfig(recv_buf=4 * 1024 * 1024)
        with uring.runtime() as rt, uring.bind_udp("127.0.0.1:0") as client:
            server = uring.UdpSocket.bind("127.0.0.1:0", config, ring_slots=512, ring_payload=64)
            rt.register(server, Interest.READABLE)
            payloads = [i.to_bytes(4, "big") for i in range(300)]
            for p in payloads:
                client.send_to(p, server.local_address)
            got = receive_all(server, rt, len(payloads))
            stats = uring.ring_stats()
            drops = server.stats.kernel_drops or 0
            print(len(got), drops, stats["overflow_flushes"], stats["cq_overflow_dropped"],
                  stats["cq_entries"], sorted(got) == sorted(set(got)))
            server.close()
        """
    )
    output = _run_fresh(script, HORIZON_URING_ENTRIES="4", HORIZON_URING_CQ_ENTRIES="8")
    received, drops, flushes, lost, cq_entries, unique = output
    assert int(cq_entries) == 8
    assert int(received) + int(drops) == 300
    assert int(drops) == 0
    assert int(flushes) >= 1, "300 completions into 8 CQ entries must overflow"
    assert int(lost) == 0
    assert unique == "True"


def test_probe_lists_features_and_what_the_driver_uses() -> None:
    report = uring.probe()
    used, features = report["used"], report["features"]
    assert isinstance(used, tuple)
    assert isinstance(features, dict)
    assert set(used) <= set(uring.USED_FEATURES)
    assert features["multishot_recvmsg"]
    assert features["provided_buffer_rings"]
    for name in ("send_zc", "bundles", "multishot_accept"):
        assert isinstance(features[name], bool)


def test_bad_ring_sizes_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="ring_slots must be an int from 1 to 32768"):
        uring.UdpSocket.bind("127.0.0.1:0", ring_slots=0)
    with pytest.raises(ValueError, match="ring_payload must be an int"):
        uring.UdpSocket.bind("127.0.0.1:0", ring_payload="big")  # type: ignore[arg-type]


def test_the_multishot_accept_queues_configured_streams_and_close_frees_the_rest() -> None:
    config = NetConfig(tcp_nodelay=True)
    with uring.runtime() as rt:
        baseline = in_flight()
        listener = uring.bind_tcp("127.0.0.1:0", config)
        token = rt.register(listener, Interest.READABLE)
        clients = [uring.connect_tcp(listener.local_address) for _ in range(3)]
        for _ in range(100):
            if listener.queued >= 3:
                break
            rt.poll_once(WAIT / 100)
        assert listener.queued == 3
        assert any(ev.token == token for ev in rt.poll_once(0))  # level-triggered while queued
        stream, peer = listener.accept_nonblocking()
        with stream:
            assert stream.options["tcp_nodelay"].effective == 1
            assert peer == stream.peer_address
        rt.deregister(token)
        listener.close()  # two connections accepted but never taken: closed with it
        assert in_flight() == baseline
        for client in clients:
            client.close()


def test_sqpoll_rings_echo_and_say_so() -> None:
    # HORIZON_URING_SQPOLL=1 is read when the process's ring is made: a fresh process.
    script = textwrap.dedent(
        """
        from horizon_core.events import Interest
        from horizon_drivers import uring
        from tests.drivers.uring.uring_helpers import receive_all

        with uring.runtime() as rt, uring.bind_udp("127.0.0.1:0") as server:
            with uring.bind_udp("127.0.0.1:0") as client:
                rt.register(server, Interest.READABLE)
                for i in range(50):
                    client.send_to(i.to_bytes(2, "big"), server.local_address)
                got = receive_all(server, rt, 50)
                print(uring.ring_stats()["sqpoll"], len(got))
        """
    )
    assert _run_fresh(script, HORIZON_URING_SQPOLL="1") == ["True", "50"]


def test_a_single_threaded_ring_echoes_and_refuses_waits_from_other_threads() -> None:
    script = textwrap.dedent(
        """
        import threading
        from horizon_core.events import Interest
        from horizon_drivers import uring
        from tests.drivers.uring.uring_helpers import receive_all

        with uring.runtime() as rt, uring.bind_udp("127.0.0.1:0") as server:
            with uring.bind_udp("127.0.0.1:0") as client:
                rt.register(server, Interest.READABLE)
                for i in range(50):
                    client.send_to(i.to_bytes(2, "big"), server.local_address)
                got = receive_all(server, rt, 50)
                refused = []

                def poll_elsewhere():
                    try:
                        rt.poll_once(1.0)
                    except RuntimeError as exc:
                        refused.append("single-threaded" in str(exc))

                worker = threading.Thread(target=poll_elsewhere)
                worker.start()
                worker.join(10)
                print(uring.ring_stats()["single_thread"], len(got), refused)
        """
    )
    assert _run_fresh(script, HORIZON_URING_SINGLE_THREAD="1") == ["True", "50", "[True]"]


def test_a_gro_buffer_is_split_into_its_datagrams() -> None:
    # The sender coalesces equal datagrams into one UDP GSO message; a UDP_GRO receiver on
    # loopback gets them as one buffer with its segment size, which recv_batch splits again.
    payloads = [bytes([i]) * 100 for i in range(10)]
    with (
        uring.runtime() as rt,
        uring.bind_udp("127.0.0.1:0", NetConfig(udp_gro=True)) as server,
        uring.bind_udp("127.0.0.1:0") as client,
    ):
        rt.register(server, Interest.READABLE)
        _send(client, server.local_address, payloads)
        got = receive_all(server, rt, len(payloads))
        assert got == payloads
        assert server.stats.datagrams_received == len(payloads)
