"""The native driver's epoll Runtime: tokens, level/edge triggering, waker, spin budget, close."""

from __future__ import annotations

import gc
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.drivers.native.native_helpers import WAIT, wait_readable  # first: it skips this module off Linux

# isort: split
from horizon_core.buffers import BufferPool
from horizon_core.config import NetConfig
from horizon_core.contract import Runtime as RuntimeProtocol
from horizon_core.errors import SocketClosedError, StaleTokenError
from horizon_core.events import Event, Interest, Readiness
from horizon_core.slab import Token
from horizon_drivers.native import Runtime, UdpSocket


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    with Runtime() as rt:
        yield rt


def _poll_until(rt: Runtime, predicate: object, *, steps: int = 50) -> list[Event]:
    """Poll (each wait bounded) until ``predicate(events)`` holds; return those events."""
    assert callable(predicate)
    for _ in range(steps):
        events = rt.poll_once(WAIT / steps)
        if predicate(events):
            return events
    raise AssertionError("the expected events never arrived")


def test_satisfies_the_contract_protocol(runtime: Runtime) -> None:
    assert isinstance(runtime, RuntimeProtocol)
    assert runtime.edge_triggered is False


def test_readable_event_carries_the_token(runtime: Runtime) -> None:
    with UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
        token = runtime.register(rx, Interest.READABLE)
        assert token in runtime
        assert len(runtime) == 1
        assert runtime.source(token) is rx
        assert runtime.poll_once(0) == []
        tx.send_to(b"x", rx.local_address)
        events = _poll_until(runtime, bool)
        assert events == [Event(token, Readiness.READABLE)]
        assert events[0].readable
        assert not events[0].writable


def test_level_triggered_reports_until_drained(runtime: Runtime) -> None:
    with UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
        token = runtime.register(rx, Interest.READABLE)
        tx.send_to(b"1", rx.local_address)
        tx.send_to(b"2", rx.local_address)
        _poll_until(runtime, bool)
        rx.recv_from(bytearray(4))  # one of two read: still readable
        assert [e.token for e in runtime.poll_once(0)] == [token]
        rx.recv_from(bytearray(4))
        assert runtime.poll_once(0) == []


def test_edge_triggered_reports_each_change_once() -> None:
    with (
        Runtime(edge_triggered=True) as rt,
        UdpSocket.bind("127.0.0.1:0") as rx,
        UdpSocket.bind("127.0.0.1:0") as tx,
    ):
        assert rt.edge_triggered
        token = rt.register(rx, Interest.READABLE)
        tx.send_to(b"1", rx.local_address)
        assert [e.token for e in _poll_until(rt, bool)] == [token]
        assert rt.poll_once(0) == []  # not drained, but nothing new
        tx.send_to(b"2", rx.local_address)
        assert [e.token for e in _poll_until(rt, bool)] == [token]


def test_reregister_changes_interest(runtime: Runtime) -> None:
    with UdpSocket.bind("127.0.0.1:0") as sock:
        token = runtime.register(sock, Interest.READABLE)
        assert runtime.poll_once(0) == []
        runtime.reregister(token, Interest.READABLE | Interest.WRITABLE)
        assert runtime.poll_once(0) == [Event(token, Readiness.WRITABLE)]
        runtime.reregister(token, Interest.READABLE)
        assert runtime.poll_once(0) == []


def test_many_sockets_and_no_event_for_a_deregistered_token(runtime: Runtime) -> None:
    with ExitStack() as stack:
        socks = [stack.enter_context(UdpSocket.bind("127.0.0.1:0")) for _ in range(200)]
        sender = stack.enter_context(UdpSocket.bind("127.0.0.1:0"))
        tokens = [runtime.register(s, Interest.READABLE) for s in socks]
        assert len(set(tokens)) == 200
        for s in socks:
            sender.send_to(b"ping", s.local_address)
        dropped = set(tokens[::2])
        for token in dropped:
            runtime.deregister(token)
        live = set(tokens) - dropped
        seen: set[Token] = set()
        for _ in range(50):
            events = runtime.poll_once(WAIT / 50)
            got = {e.token for e in events}
            assert not got & dropped
            seen |= got
            if seen == live:
                break
        assert seen == live
        with pytest.raises(StaleTokenError):
            runtime.deregister(tokens[0])
        with pytest.raises(StaleTokenError):
            runtime.reregister(tokens[0], Interest.WRITABLE)


def test_run_filters_tokens_deregistered_by_a_handler(runtime: Runtime) -> None:
    with UdpSocket.bind("127.0.0.1:0") as a, UdpSocket.bind("127.0.0.1:0") as b:
        ta = runtime.register(a, Interest.WRITABLE)
        tb = runtime.register(b, Interest.WRITABLE)
        handled: list[Token] = []

        def handler(event: Event) -> None:
            handled.append(event.token)
            other = tb if event.token == ta else ta
            runtime.deregister(other)  # the other's event is already in this poll's list
            runtime.stop()

        runtime.run(handler, timeout=WAIT)
        assert len(handled) == 1


def test_deregistering_a_closed_socket_spares_the_reused_descriptor(runtime: Runtime) -> None:
    first = UdpSocket.bind("127.0.0.1:0")
    old = runtime.register(first, Interest.WRITABLE)
    fd = first.fileno()
    first.close()
    with UdpSocket.bind("127.0.0.1:0") as second:
        assert second.fileno() == fd  # the kernel reuses the lowest free number
        new = runtime.register(second, Interest.WRITABLE)
        runtime.deregister(old)
        assert runtime.poll_once(0) == [Event(new, Readiness.WRITABLE)]


def test_no_event_for_a_closed_source_whose_descriptor_lives_on_in_a_dup(runtime: Runtime) -> None:
    # epoll keys an entry on the open file, not the number: closing the socket while a dup of
    # its descriptor lives keeps the entry (and its token) in the kernel's interest set, where
    # deregister() can no longer reach it. Its events must still never surface.
    sock = UdpSocket.bind("127.0.0.1:0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        token = runtime.register(sock, Interest.READABLE)
        dup = os.dup(sock.fileno())
        try:
            address = sock.local_address
            sock.close()
            runtime.deregister(token)
            sender.sendto(b"x", (str(address.host), address.port))
            assert select.select([dup], [], [], WAIT)[0], "the datagram never arrived"
            for _ in range(3):
                assert runtime.poll_once(0) == []
        finally:
            os.close(dup)


@pytest.mark.timeout(30)
def test_wake_interrupts_a_blocking_poll(runtime: Runtime) -> None:
    timer = threading.Timer(0.05, runtime.wake)
    timer.start()
    try:
        assert runtime.poll_once(None) == []  # blocks until woken (the test timeout bounds it)
    finally:
        timer.join()


@pytest.mark.timeout(30)
def test_stop_from_another_thread_ends_run(runtime: Runtime) -> None:
    timer = threading.Timer(0.05, runtime.stop)
    timer.start()
    try:
        runtime.run(lambda event: None)
    finally:
        timer.join()


def test_stop_before_run_makes_it_return_after_one_step(runtime: Runtime) -> None:
    runtime.stop()
    runtime.run(lambda event: None, timeout=0)  # one step, then the pending stop ends it
    with UdpSocket.bind("127.0.0.1:0") as sock:
        runtime.register(sock, Interest.WRITABLE)
        steps: list[Event] = []

        def handler(event: Event) -> None:
            steps.append(event)
            if len(steps) == 3:
                runtime.stop()

        runtime.run(handler, timeout=0)  # the earlier request was consumed: runs three steps
        assert len(steps) == 3


@pytest.mark.timeout(30)
def test_poll_timeout_from_config_bounds_poll_once() -> None:
    # The reference never read its poll-timeout setting.
    with Runtime(NetConfig(poll_timeout=0.01)) as rt:
        assert rt.poll_once() == []


def test_spin_budget_still_delivers_events() -> None:
    config = NetConfig(spin_budget=200)
    with Runtime(config) as rt, UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
        assert rt.spin_budget == 200
        token = rt.register(rx, Interest.READABLE)
        assert rt.poll_once(0) == []
        assert rt.poll_once(0.001) == []  # spins, then blocks the rest, then times out
        tx.send_to(b"x", rx.local_address)
        assert [e.token for e in _poll_until(rt, bool)] == [token]


@pytest.mark.timeout(30)
def test_signals_run_during_a_wait_and_the_wait_resumes(runtime: Runtime) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        with UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
            token = runtime.register(rx, Interest.READABLE)
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            sender = threading.Timer(0.3, tx.send_to, (b"x", rx.local_address))
            sender.start()
            try:
                events = runtime.poll_once(None)  # EINTR in the middle: retried, not raised
            finally:
                sender.join()
            assert fired == [signal.SIGALRM]
            assert [e.token for e in events] == [token]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.timeout(30)
def test_an_exception_from_a_signal_handler_ends_the_wait(runtime: Runtime) -> None:
    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02)
        with pytest.raises(Interrupted):
            runtime.poll_once(None)
        assert runtime.poll_once(0) == []  # still usable
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.timeout(30)
def test_close_while_another_thread_polls() -> None:
    rt = Runtime()
    result: list[object] = []

    def poll() -> None:
        try:
            result.append(rt.poll_once(None))
        except BaseException as exc:  # pragma: no cover - reported below
            result.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.05)  # let it block (correctness does not depend on it)
    rt.close()
    thread.join()
    assert result == [[]]
    assert rt.closed
    assert rt.fileno() == -1
    with pytest.raises(SocketClosedError):
        rt.poll_once(0)


def test_closed_runtime_raises_a_clear_error() -> None:
    rt = Runtime()
    with UdpSocket.bind("127.0.0.1:0") as sock:
        token = rt.register(sock, Interest.READABLE)
        rt.close()
        rt.close()
        for operation in (
            lambda: rt.register(sock, Interest.READABLE),
            lambda: rt.reregister(token, Interest.WRITABLE),
            lambda: rt.deregister(token),
            lambda: rt.poll_once(0),
            lambda: rt.run(lambda event: None),
            rt.wake,
        ):
            with pytest.raises(SocketClosedError):
                operation()
        assert "closed" in repr(rt)


def test_closing_from_a_handler_ends_run_quietly() -> None:
    rt = Runtime()
    with UdpSocket.bind("127.0.0.1:0") as sock:
        rt.register(sock, Interest.WRITABLE)
        rt.run(lambda event: rt.close(), timeout=WAIT)
        assert rt.closed


def test_registering_a_closed_socket_is_refused(runtime: Runtime) -> None:
    sock = UdpSocket.bind("127.0.0.1:0")
    sock.close()
    with pytest.raises(SocketClosedError):
        runtime.register(sock, Interest.READABLE)
    assert len(runtime) == 0


def test_bad_arguments_are_refused(runtime: Runtime) -> None:
    with pytest.raises(ValueError):
        runtime.poll_once(-1)
    with pytest.raises(ValueError):
        runtime.poll_once(float("nan"))
    with pytest.raises(ValueError):
        Runtime(max_events=0)
    with UdpSocket.bind("127.0.0.1:0") as sock, pytest.raises(ValueError):
        runtime.register(sock, 16)  # type: ignore[arg-type]
    assert len(runtime) == 0


def test_max_events_bounds_one_poll() -> None:
    with Runtime(max_events=3) as rt, ExitStack() as stack:
        socks = [stack.enter_context(UdpSocket.bind("127.0.0.1:0")) for _ in range(5)]
        for s in socks:
            rt.register(s, Interest.WRITABLE)
        assert len(rt.poll_once(0)) == 3


class RegistrationMachine(RuleBasedStateMachine):
    """Random register/deregister/send/drain/poll sequences: events only for live, ready tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.rt = self.stack.enter_context(Runtime())
        self.sender = self.stack.enter_context(UdpSocket.bind("127.0.0.1:0"))
        self.socks = [self.stack.enter_context(UdpSocket.bind("127.0.0.1:0")) for _ in range(4)]
        self.tokens: dict[int, Token] = {}  # socket index -> live token
        self.pending = [0] * len(self.socks)
        self.dead: set[Token] = set()
        self.batch = BufferPool(16, 16).batch(16)

    @rule(index=st.integers(0, 3))
    def register(self, index: int) -> None:
        if index not in self.tokens:
            self.tokens[index] = self.rt.register(self.socks[index], Interest.READABLE)

    @precondition(lambda self: bool(self.tokens))
    @rule(data=st.data())
    def deregister(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(sorted(self.tokens)))
        token = self.tokens.pop(index)
        self.rt.deregister(token)
        self.dead.add(token)

    @rule(index=st.integers(0, 3))
    def send(self, index: int) -> None:
        self.sender.send_to(b"x", self.socks[index].local_address)
        wait_readable(self.socks[index])
        self.pending[index] += 1

    @rule(index=st.integers(0, 3))
    def drain(self, index: int) -> None:
        while self.pending[index]:
            self.pending[index] -= self.socks[index].recv_batch(self.batch)
            self.batch.release()

    @invariant()
    def events_match_the_model(self) -> None:
        got = {e.token for e in self.rt.poll_once(0)}
        assert not got & self.dead
        # Level-triggered: exactly the registered sockets with data waiting are reported.
        assert got == {t for i, t in self.tokens.items() if self.pending[i]}

    def teardown(self) -> None:
        self.stack.close()


TestRegistrationMachine = RegistrationMachine.TestCase
TestRegistrationMachine.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_repeated_polls_report_the_current_readiness(runtime: Runtime) -> None:
    # poll_once reuses the Event it returned last for a token while the readiness is the same:
    # each poll must still say what holds now.
    with UdpSocket.bind("127.0.0.1:0") as rx, UdpSocket.bind("127.0.0.1:0") as tx:
        token = runtime.register(rx, Interest.READABLE | Interest.WRITABLE)
        assert runtime.poll_once(0) == [Event(token, Readiness.WRITABLE)]
        assert runtime.poll_once(0) == [Event(token, Readiness.WRITABLE)]
        tx.send_to(b"x", rx.local_address)
        both = _poll_until(runtime, lambda events: events and events[0].readable)
        assert both == [Event(token, Readiness.READABLE | Readiness.WRITABLE)]
        assert type(both[0]) is Event
        rx.recv_from(bytearray(4))
        assert runtime.poll_once(0) == [Event(token, Readiness.WRITABLE)]
        runtime.reregister(token, Interest.READABLE)
        assert runtime.poll_once(0) == []


def test_registering_polling_and_deregistering_keeps_nothing_behind(runtime: Runtime) -> None:
    # Every registration's events leave with it: 2,000 short-lived sockets that each got an
    # event cost the runtime no memory afterwards.
    def cycle(count: int) -> None:
        for _ in range(count):
            with UdpSocket.bind("127.0.0.1:0") as sock:
                token = runtime.register(sock, Interest.WRITABLE)
                assert runtime.poll_once(0) == [Event(token, Readiness.WRITABLE)]
                runtime.deregister(token)

    cycle(100)  # warm up free lists and caches
    gc.collect()
    before = sys.getallocatedblocks()
    cycle(2_000)
    gc.collect()
    assert sys.getallocatedblocks() - before < 200
