"""Behaviour every driver must share, pinned where drivers once drifted apart.

Each case here is one that two drivers answered differently before the driver layer was given its
shared pieces (one run loop, one config check, one address codec), so that the next driver cannot
drift the same way:

* ``stop()`` on a closed runtime does nothing (it raised on some drivers and not on others);
  ``run()`` on a closed runtime raises SocketClosedError; a ``stop()`` before ``run()`` makes that
  ``run()`` return at once.
* A config that is not a NetConfig (a dict, a string) is a TypeError that says a NetConfig was
  expected, from every factory, before any socket exists (it was an AttributeError on one driver).
* ``token in runtime`` says whether a token is registered (one driver had no ``__contains__``).
* A datagram to an address of the other family is an OSError with errno EAFNOSUPPORT from
  ``send_to`` and from ``send_batch``, with pairs or with a composed batch (one driver raised a raw
  TypeError); datagrams before it in the same batch are sent and counted.
"""

from __future__ import annotations

import errno
import sys
import threading
from collections.abc import Callable

import pytest

from horizon_core.addresses import as_socket_address
from horizon_core.buffers import BufferPool
from horizon_core.config import NetConfig
from horizon_core.contract import AddressLike
from horizon_core.errors import SocketClosedError
from horizon_core.events import Event, Interest
from tests.contract.drivers_under_test import FAMILIES, DriverUnderTest

#: What an IPv4 socket cannot reach, and an address an IPv4 socket can.
OTHER_FAMILY = "[2001:db8::1]:9"
#: errno values that mean "address family not supported": POSIX's, and Winsock's on Windows.
AFNOSUPPORT = {errno.EAFNOSUPPORT, getattr(errno, "WSAEAFNOSUPPORT", errno.EAFNOSUPPORT)}

BAD_CONFIGS = [{"recv_buf": "4MiB"}, "low_latency"]


def needs_own_runtime(dut: DriverUnderTest) -> None:
    if not dut.own_runtime:
        pytest.skip(f"{dut.id}: no Runtime of its own (its event loop is anyio's)")


def test_stop_on_a_closed_runtime_does_nothing_and_run_raises(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    with dut.net() as net:
        rt = net.driver.runtime()
        rt.close()
        rt.stop()
        rt.stop()
        with pytest.raises(SocketClosedError):
            rt.run(lambda event: None)
        rt.close()


def test_stop_before_run_makes_run_return_at_once_and_is_consumed(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    with dut.net() as net:
        rt = net.runtime
        seen: list[Event] = []
        rt.stop()
        rt.run(seen.append, timeout=0.0)
        assert seen == []
        # The request was consumed: a second run needs its own stop, here from a handler.
        sock = net.udp()
        token = rt.register(sock, Interest.WRITABLE)

        def stop_on_first(event: Event) -> None:
            seen.append(event)
            rt.stop()

        rt.run(stop_on_first, timeout=0.05)
        assert [e.token for e in seen] == [token]


def test_stop_from_another_thread_ends_a_blocked_run(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    if dut.id == "sim":
        pytest.skip("sim: virtual time; its runtime never blocks for real")
    with dut.net() as net:
        rt = net.runtime
        stopper = threading.Timer(0.05, rt.stop)
        stopper.start()
        try:
            rt.run(lambda event: None, timeout=5.0)
        finally:
            stopper.cancel()
            stopper.join(5.0)


def test_runtime_contains_exactly_the_registered_tokens(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    with dut.net() as net:
        rt = net.runtime
        sock = net.udp()
        token = rt.register(sock, Interest.READABLE)
        assert token in rt
        rt.deregister(token)
        assert token not in rt
        assert "not a token" not in rt


@pytest.mark.parametrize("bad", BAD_CONFIGS, ids=type)
def test_a_config_that_is_not_a_netconfig_is_a_type_error_everywhere(
    dut: DriverUnderTest, bad: object
) -> None:
    with dut.net() as net:
        driver = net.driver
        listener = net.listener()
        factories: dict[str, Callable[[], object]] = {
            "bind_udp": lambda: driver.bind_udp("127.0.0.1:0", bad),  # type: ignore[arg-type]
            "bind_udp_dual_stack": lambda: driver.bind_udp_dual_stack(0, bad),  # type: ignore[arg-type]
            "bind_tcp": lambda: driver.bind_tcp("127.0.0.1:0", bad),  # type: ignore[arg-type]
            "connect_tcp": lambda: driver.connect_tcp(listener.local_address, bad),  # type: ignore[arg-type]
        }
        if dut.own_runtime:
            factories["runtime"] = lambda: driver.runtime(bad)  # type: ignore[arg-type]
        for name, factory in factories.items():
            with pytest.raises(TypeError, match="NetConfig") as caught:
                factory()  # raises before anything is opened, so nothing is left to close
            assert type(bad).__name__ in str(caught.value), name


def check_afnosupport(exc: OSError) -> None:
    assert exc.errno in AFNOSUPPORT, f"expected EAFNOSUPPORT, got {exc!r}"


def test_send_to_an_address_of_the_other_family_is_eafnosupport(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        sock = net.udp("127.0.0.1:0")
        with pytest.raises(OSError) as caught:
            sock.send_to(b"x", OTHER_FAMILY)
        check_afnosupport(caught.value)


def outgoing(mode: str, messages: list[tuple[bytes, AddressLike]]) -> object:
    """``messages`` as ``send_batch`` takes them: (payload, address) pairs or a composed Batch."""
    if mode == "pairs":
        return messages
    batch = BufferPool(len(messages), 64).batch(len(messages))
    for payload, address in messages:
        batch.append(payload, as_socket_address(address))
    return batch


@pytest.mark.parametrize("mode", ["pairs", "batch"])
def test_send_batch_to_the_other_family_sends_what_precedes_it_then_raises(
    dut: DriverUnderTest, mode: str
) -> None:
    with dut.net() as net:
        sock = net.udp("127.0.0.1:0")
        receiver = net.udp("127.0.0.1:0")

        with pytest.raises(OSError) as caught:
            sock.send_batch(outgoing(mode, [(b"bad", OTHER_FAMILY)]))  # type: ignore[arg-type]
        check_afnosupport(caught.value)

        mixed = outgoing(mode, [(b"first", receiver.local_address), (b"bad", OTHER_FAMILY)])
        sent = sock.send_batch(mixed)  # type: ignore[arg-type]
        assert sent == 1, f"expected the datagram before the bad one to be sent alone, sent {sent}"
        got = net.receive(receiver, BufferPool(4, 64).batch(4), expected=1)
        assert [r.payload for r in got] == [b"first"]
        with pytest.raises(OSError) as caught:
            sock.send_batch(mixed, 1)  # type: ignore[arg-type]
        check_afnosupport(caught.value)


def test_ipv6_sockets_reach_ipv4_peers_as_v4_mapped_addresses(dut: DriverUnderTest) -> None:
    if 6 not in FAMILIES:
        pytest.skip("no IPv6 loopback on this host")
    with dut.net() as net:
        receiver = net.udp("127.0.0.1:0")
        sender = net.own(net.driver.bind_udp_dual_stack(0))
        assert sender.send_to(b"mapped", receiver.local_address) == len(b"mapped")
        got = net.receive(receiver, BufferPool(4, 64).batch(4), expected=1)
        assert [r.payload for r in got] == [b"mapped"]


def test_ipv4_sockets_send_to_v4_mapped_addresses_as_ipv4(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        receiver = net.udp("127.0.0.1:0")
        sender = net.udp("127.0.0.1:0")
        mapped = f"[::ffff:127.0.0.1]:{receiver.local_address.port}"
        assert sender.send_to(b"mapped", mapped) == len(b"mapped")
        assert sender.send_batch([(b"batched", mapped)]) == 1
        got = net.receive(receiver, BufferPool(4, 64).batch(4), expected=2)
        assert sorted(r.payload for r in got) == [b"batched", b"mapped"]


def test_batch_arguments_that_are_wrong_are_type_errors_not_attribute_errors(
    dut: DriverUnderTest,
) -> None:
    with dut.net() as net:
        sock = net.udp("127.0.0.1:0")
        for wrong in (None, BufferPool(2, 64)):
            with pytest.raises(TypeError, match="Batch"):
                sock.recv_batch(wrong)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "error"),
    [(2**70, IndexError), (-1, IndexError), (2, IndexError), (True, TypeError), (1.0, TypeError)],
    ids=["huge", "negative", "past-the-end", "bool", "float"],
)
@pytest.mark.parametrize("mode", ["pairs", "batch"])
def test_send_batch_start_is_checked_the_same_everywhere(
    dut: DriverUnderTest, mode: str, start: object, error: type[Exception]
) -> None:
    with dut.net() as net:
        sock = net.udp("127.0.0.1:0")
        receiver = net.udp("127.0.0.1:0")
        with pytest.raises(error, match="start"):
            sock.send_batch(outgoing(mode, [(b"x", receiver.local_address)]), start)  # type: ignore[arg-type]


def test_a_freed_batch_is_refused_by_send_and_receive_alike(dut: DriverUnderTest) -> None:
    with dut.net() as net:
        sock = net.udp("127.0.0.1:0")
        pool = BufferPool(2, 64)
        freed = pool.batch(2)
        pool.free_batch(freed)
        with pytest.raises(ValueError, match="freed"):
            sock.send_batch(freed)
        with pytest.raises(ValueError, match="freed"):
            sock.recv_batch(freed)


@pytest.mark.parametrize(
    ("interest", "error"), [(Interest(0), ValueError), (8, ValueError), ("r", TypeError)]
)
def test_register_refuses_an_interest_that_can_never_fire(
    dut: DriverUnderTest, interest: object, error: type[Exception]
) -> None:
    needs_own_runtime(dut)
    with dut.net() as net:
        sock = net.udp()
        with pytest.raises(error, match="interest"):
            net.runtime.register(sock, interest)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(True, TypeError), ("1", TypeError), (-1, ValueError), (float("nan"), ValueError)],
    ids=["bool", "str", "negative", "nan"],
)
def test_poll_once_refuses_what_is_not_a_timeout(
    dut: DriverUnderTest, timeout: object, error: type[Exception]
) -> None:
    needs_own_runtime(dut)
    with dut.net() as net, pytest.raises(error, match="timeout"):
        net.runtime.poll_once(timeout)  # type: ignore[arg-type]


def test_kernel_drops_are_exact_whenever_stats_are_read(dut: DriverUnderTest) -> None:
    """Every datagram sent on loopback is received or counted as dropped, and drops that came
    after the last datagram received are counted at once (SO_RXQ_OVFL alone reports them only
    with the next datagram)."""
    with dut.net() as net:
        receiver = net.udp("127.0.0.1:0", NetConfig(recv_buf=4096, rx_drop_counter=True))
        sender = net.udp("127.0.0.1:0")
        if sys.platform == "win32" and dut.id != "sim":
            # Windows has no per-socket receive-queue drop count (no SO_RXQ_OVFL, no
            # SO_MEMINFO): every OS-backed driver says "unknown", never a made-up 0.
            assert receiver.stats.kernel_drops is None
            return
        batch = BufferPool(64, 2048).batch(64)

        def flood() -> int:
            sent = 0
            for _ in range(64):  # far more than a 4 KiB (doubled: 8 KiB) receive buffer holds
                try:
                    sent += sender.send_batch([(bytes(1000), receiver.local_address)] * 8)
                except BlockingIOError:
                    net.settle()
            net.settle()
            return sent

        def drain() -> int:
            received = 0
            for _ in range(100):  # bounded: nothing more is coming once the queue is empty
                try:
                    received += receiver.recv_batch(batch)
                except BlockingIOError:
                    break
                finally:
                    batch.release()
            return received

        sent = flood()
        received = drain()
        sent += flood()  # these drops come after the last datagram received
        drops_before_receiving = receiver.stats.kernel_drops
        received += drain()
        drops = receiver.stats.kernel_drops
        assert drops is not None
        assert drops > 0, "the receive buffer overflowed"
        assert drops_before_receiving == drops
        assert received + drops == sent, (received, drops, sent)
