"""The iocp Runtime: tokens, level-triggered readiness, PostQueuedCompletionStatus wake-ups.

Windows only (run ``.ci/wine/run`` on Linux).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from horizon_core.errors import SocketClosedError, StaleTokenError
from horizon_core.events import Event, Interest
from tests.drivers.iocp.iocp_helpers import WAIT, iocp, windows_only

pytestmark = windows_only


def test_tokens_of_removed_sockets_never_fire() -> None:
    with iocp.runtime() as rt, iocp.bind_udp("127.0.0.1:0") as sender:
        old = iocp.bind_udp("127.0.0.1:0")
        old_token = rt.register(old, Interest.READABLE)
        sender.send_to(b"1", old.local_address)
        assert [e.token for e in rt.poll_once(WAIT)] == [old_token]
        rt.deregister(old_token)
        old.close()
        with pytest.raises(StaleTokenError):
            rt.deregister(old_token)
        new = iocp.bind_udp("127.0.0.1:0")
        new_token = rt.register(new, Interest.READABLE)
        assert new_token != old_token
        sender.send_to(b"2", new.local_address)
        assert [e.token for e in rt.poll_once(WAIT)] == [new_token]
        rt.reregister(new_token, Interest.WRITABLE)
        assert [(e.token, e.writable, e.readable) for e in rt.poll_once(0)] == [(new_token, True, False)]
        new.close()
        assert rt.poll_once(0) == []  # a closed source reports nothing, like epoll


def test_wake_from_another_thread_interrupts_a_blocked_poll() -> None:
    with iocp.runtime() as rt:
        timer = threading.Timer(0.1, rt.wake)
        start = time.monotonic()
        timer.start()
        try:
            assert rt.poll_once(10.0) == []
        finally:
            timer.cancel()
        assert time.monotonic() - start < 5.0


def test_wake_for_one_runtime_is_not_lost_when_another_harvests_it() -> None:
    with iocp.runtime() as a, iocp.runtime() as b:
        a.wake()
        assert b.poll_once(0) == []  # b dequeues a's packet and hands it on
        start = time.monotonic()
        assert a.poll_once(5.0) == []
        assert time.monotonic() - start < 2.5


def test_run_delivers_events_until_stop() -> None:
    with iocp.runtime() as rt, iocp.bind_udp("127.0.0.1:0") as a, iocp.bind_udp("127.0.0.1:0") as b:
        token = rt.register(b, Interest.READABLE)
        seen: list[Event] = []

        def handler(event: Event) -> None:
            seen.append(event)
            rt.stop()

        a.send_to(b"x", b.local_address)
        rt.run(handler, timeout=0.05)
        assert [e.token for e in seen] == [token]


def test_only_iocp_sockets_can_be_registered_and_closed_runtime_refuses() -> None:
    rt = iocp.runtime()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain, pytest.raises(TypeError):
        rt.register(plain, Interest.READABLE)
    rt.close()
    rt.close()
    for call in (lambda: rt.poll_once(0), rt.wake, lambda: rt.run(print, timeout=0)):
        with pytest.raises(SocketClosedError):
            call()
