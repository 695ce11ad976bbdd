"""The portable Runtime beyond the contract suite: descriptor reuse, duplicates, waking, stopping,
spinning and the config's poll timeout."""

from __future__ import annotations

import selectors
import threading
import time

import pytest

from horizon_core.config import NetConfig
from horizon_core.errors import SocketClosedError, StaleTokenError
from horizon_core.events import Event, Interest, Readiness
from horizon_drivers import portable
from horizon_drivers.portable import Runtime


def test_a_reused_descriptor_never_reaches_the_old_token() -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as sender:
        old = portable.bind_udp("127.0.0.1:0")
        fd = old.fileno()
        old_token = rt.register(old, Interest.READABLE)
        old.close()
        new = portable.bind_udp("127.0.0.1:0")
        try:
            if new.fileno() != fd:  # POSIX hands out the lowest free number, unless a thread won
                pytest.skip("the descriptor number was not reused")
            new_token = rt.register(new, Interest.READABLE)
            with pytest.raises(OSError):
                rt.reregister(old_token, Interest.WRITABLE)  # its source is closed
            rt.deregister(old_token)  # must not unregister the new socket's descriptor
            sender.send_to(b"x", new.local_address)
            assert [e.token for e in rt.poll_once(2.0)] == [new_token]
        finally:
            new.close()


def test_registering_twice_is_refused() -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as sock:
        token = rt.register(sock, Interest.READABLE)
        with pytest.raises(ValueError, match="reregister"):
            rt.register(sock, Interest.WRITABLE)
        assert len(rt) == 1
        rt.deregister(token)
        with pytest.raises(StaleTokenError):
            rt.deregister(token)


@pytest.mark.parametrize("interest", [0, 4, Interest.READABLE | 8])
def test_bad_interest_is_refused(interest: int) -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as sock:
        with pytest.raises(ValueError, match="interest"):
            rt.register(sock, interest)  # type: ignore[arg-type]
        assert len(rt) == 0


def test_negative_timeout_is_refused() -> None:
    with portable.runtime() as rt, pytest.raises(ValueError, match="timeout"):
        rt.poll_once(-1)


def test_writable_and_readable_are_reported_together() -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as sock:
        token = rt.register(sock, Interest.READABLE | Interest.WRITABLE)
        assert rt.poll_once(1.0) == [Event(token, Readiness.WRITABLE)]
        sock.send_to(b"x", sock.local_address)
        time.sleep(0.01)
        assert rt.poll_once(1.0) == [Event(token, Readiness.READABLE | Readiness.WRITABLE)]


def test_wake_from_another_thread_and_pending_wakes_coalesce() -> None:
    with portable.runtime() as rt:
        for _ in range(100_000 // 100):
            rt.wake()  # a full waker pipe is not an error
        assert rt.poll_once(0) == []  # the wakes were drained, not reported
        timer = threading.Timer(0.05, rt.wake)
        start = time.monotonic()
        timer.start()
        assert rt.poll_once(10.0) == []
        assert time.monotonic() - start < 5.0


def test_stop_from_another_thread_ends_run() -> None:
    with portable.runtime() as rt:
        threading.Timer(0.05, rt.stop).start()
        start = time.monotonic()
        rt.run(lambda event: None)
        assert time.monotonic() - start < 5.0


def test_stop_before_run_returns_at_once_and_is_consumed() -> None:
    with portable.runtime() as rt:
        rt.stop()
        rt.run(lambda event: None, timeout=10.0)
        rt.wake()
        assert rt.poll_once(0) == []


def test_a_token_deregistered_by_a_handler_is_not_delivered_in_the_same_step() -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as a, portable.bind_udp(
        "127.0.0.1:0"
    ) as b:
        tokens = [rt.register(s, Interest.WRITABLE) for s in (a, b)]
        delivered: list[int] = []

        def handler(event: Event) -> None:
            delivered.append(event.token)
            other = tokens[1] if event.token == tokens[0] else tokens[0]
            rt.deregister(other)
            rt.stop()

        rt.run(handler, timeout=1.0)
        assert len(delivered) == 1


def test_closing_from_a_handler_ends_run() -> None:
    rt = portable.runtime()
    with portable.bind_udp("127.0.0.1:0") as sock:
        rt.register(sock, Interest.WRITABLE)
        rt.run(lambda event: rt.close(), timeout=1.0)
    assert rt.closed


def test_config_poll_timeout_is_the_default_wait() -> None:
    with Runtime(NetConfig(poll_timeout=0.05)) as rt:
        start = time.monotonic()
        assert rt.poll_once() == []
        assert time.monotonic() - start < 2.0


def test_spin_budget_polls_before_blocking() -> None:
    with Runtime(NetConfig(spin_budget=2000)) as rt, portable.bind_udp("127.0.0.1:0") as sock:
        token = rt.register(sock, Interest.READABLE)
        start = time.monotonic()
        assert rt.poll_once(0.05) == []
        assert time.monotonic() - start >= 0.04  # spun 2 ms, then waited the rest
        sock.send_to(b"x", sock.local_address)
        assert [e.token for e in rt.poll_once(1.0)] == [token]


def test_config_must_be_a_netconfig() -> None:
    with pytest.raises(TypeError):
        Runtime({"poll_timeout": 1})  # type: ignore[arg-type]


def test_registering_a_closed_socket_is_a_closed_error() -> None:
    with portable.runtime() as rt:
        sock = portable.bind_udp("127.0.0.1:0")
        sock.close()
        with pytest.raises(SocketClosedError):
            rt.register(sock, Interest.READABLE)


def test_select_based_waiting_survives_a_socket_closed_while_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Windows' selector is select(): one closed descriptor fails the whole call (EBADF here).
    monkeypatch.setattr(selectors, "DefaultSelector", selectors.SelectSelector)
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as live:
        doomed = portable.bind_udp("127.0.0.1:0")
        doomed_token = rt.register(doomed, Interest.READABLE)
        live_token = rt.register(live, Interest.READABLE)
        doomed.close()
        live.send_to(b"x", live.local_address)
        assert [e.token for e in rt.poll_once(1.0)] == [live_token]
        rt.deregister(doomed_token)


def test_stop_on_a_closed_runtime_does_nothing() -> None:
    rt = portable.runtime()
    rt.close()
    rt.stop()  # a shutdown path may call stop and close in either order
    with pytest.raises(SocketClosedError):
        rt.run(lambda event: None)


def test_a_token_is_in_the_runtime_while_registered() -> None:
    with portable.runtime() as rt, portable.bind_udp("127.0.0.1:0") as sock:
        token = rt.register(sock, Interest.READABLE)
        assert token in rt
        rt.deregister(token)
        assert token not in rt
