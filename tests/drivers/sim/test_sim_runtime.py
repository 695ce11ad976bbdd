"""The sim runtime: generational tokens, level-triggered readiness, and virtual time."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from horizon_core.config import NetConfig
from horizon_core.contract import Runtime
from horizon_core.errors import SocketClosedError, StaleTokenError
from horizon_core.events import Event, Interest, Readiness
from horizon_core.faults import FaultPlan
from horizon_core.slab import Token
from horizon_drivers.sim import SimDeadlockError, SimNetwork, SimRuntime, SimUdpSocket


class RuntimeMachine(RuleBasedStateMachine):
    """Any order of open/send/register/reregister/deregister/close/poll: events name only live
    tokens, a readable socket is always reported, and stale tokens stay stale."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.net = SimNetwork(seed=1)
        self.host = self.net.add_host()
        self.runtime = self.host.runtime()
        self.sockets: list[SimUdpSocket] = []
        self.live: dict[Token, tuple[SimUdpSocket, Interest]] = {}
        self.dead: set[Token] = set()

    @rule()
    def open_socket(self) -> None:
        if len(self.sockets) < 6:
            self.sockets.append(self.host.bind_udp("127.0.0.1:0"))

    @rule(index=st.integers(0, 5), target_index=st.integers(0, 5))
    def send(self, index: int, target_index: int) -> None:
        if self.sockets:
            source = self.sockets[index % len(self.sockets)]
            target = self.sockets[target_index % len(self.sockets)]
            if not source.closed:
                source.send_to(b"x", target.local_address)

    @rule(target=tokens, index=st.integers(0, 5), interest=st.sampled_from(list(Interest)))
    def register(self, index: int, interest: Interest) -> Token:
        open_sockets = [s for s in self.sockets if not s.closed]
        registered = {id(s) for s, _ in self.live.values()}
        candidates = [s for s in open_sockets if id(s) not in registered]
        if not candidates:
            return Token(0)
        sock = candidates[index % len(candidates)]
        token = self.runtime.register(sock, interest)
        assert token not in self.live
        assert token not in self.dead
        self.live[token] = (sock, interest)
        return token

    @rule(token=consumes(tokens))
    def deregister(self, token: Token) -> None:
        if token in self.live:
            self.runtime.deregister(token)
            del self.live[token]
            self.dead.add(token)
        else:
            with pytest.raises(StaleTokenError):
                self.runtime.deregister(token)

    @rule(token=tokens, interest=st.sampled_from(list(Interest)))
    def reregister(self, token: Token, interest: Interest) -> None:
        if token in self.live:
            self.runtime.reregister(token, interest)
            self.live[token] = (self.live[token][0], interest)
        else:
            with pytest.raises(StaleTokenError):
                self.runtime.reregister(token, interest)

    @rule(index=st.integers(0, 5))
    def close_socket(self, index: int) -> None:
        if self.sockets:
            self.sockets[index % len(self.sockets)].close()

    @rule(index=st.integers(0, 5))
    def read(self, index: int) -> None:
        if self.sockets:
            sock = self.sockets[index % len(self.sockets)]
            if not sock.closed:
                with contextlib.suppress(BlockingIOError):
                    sock.recv_from(bytearray(4))

    @rule()
    def poll(self) -> None:
        events = self.runtime.poll_once(0)
        assert len({e.token for e in events}) == len(events)
        reported = {e.token: e for e in events}
        for event in events:
            assert event.token in self.live, f"event for a dead token {event.token:#x}"
        for token, (sock, interest) in self.live.items():
            if sock.closed:
                assert token not in reported
                continue
            readable = bool(sock.queue_state()[0])
            wants_read = bool(interest & Interest.READABLE)
            assert (token in reported and reported[token].readable) == (readable and wants_read)
            if interest & Interest.WRITABLE:
                assert reported[token].writable

    @invariant()
    def accounting_holds(self) -> None:
        self.net.check_invariants()


RuntimeMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_runtime_state_machine = RuntimeMachine.TestCase


def make() -> tuple[SimNetwork, SimRuntime, SimUdpSocket, SimUdpSocket]:
    net = SimNetwork(faults=FaultPlan(latency=(0.25, 0.25)))
    host = net.add_host()
    return net, host.runtime(), host.bind_udp("127.0.0.1:0"), host.bind_udp("127.0.0.1:0")


def test_poll_advances_virtual_time_to_the_next_delivery() -> None:
    net, rt, a, b = make()
    assert isinstance(rt, Runtime)
    token = rt.register(b, Interest.READABLE)
    a.send_to(b"x", b.local_address)
    assert rt.poll_once(0) == []
    assert net.now == 0
    assert rt.poll_once(0.1) == []
    assert net.now == pytest.approx(0.1)
    assert rt.poll_once(10) == [Event(token, Readiness.READABLE)]
    assert net.now == pytest.approx(0.25)
    assert rt.poll_once(0) == [Event(token, Readiness.READABLE)]  # level-triggered
    b.recv_from(bytearray(4))
    assert rt.poll_once(2.0) == []
    assert net.now == pytest.approx(2.25)


def test_waiting_for_ever_on_nothing_is_a_deadlock_not_a_hang() -> None:
    net, rt, a, b = make()
    token = rt.register(b, Interest.READABLE)
    with pytest.raises(SimDeadlockError):
        rt.poll_once()
    net.call_later(5.0, lambda: None)  # a timer that sends nothing cannot make b readable
    with pytest.raises(SimDeadlockError):
        rt.poll_once()
    assert net.now == 5.0
    net.call_later(1.0, lambda: a.send_to(b"late", b.local_address))
    assert rt.poll_once() == [Event(token, Readiness.READABLE)]
    assert net.now == pytest.approx(6.25)


def test_wake_stop_run_and_close() -> None:
    net, rt, a, b = make()
    rt.wake()
    assert rt.poll_once() == []  # woken: returns at once
    token = rt.register(b, Interest.READABLE)
    for i in range(3):
        net.call_later(i, lambda: a.send_to(b"tick", b.local_address))
    seen: list[float] = []

    def handle(event: Event) -> None:
        assert event.token == token
        b.recv_from(bytearray(8))
        seen.append(net.now)
        if len(seen) == 3:
            rt.stop()

    rt.run(handle, timeout=1.0)
    assert seen == pytest.approx([0.25, 1.25, 2.25])
    rt.stop()
    rt.run(handle)  # a stop() before run() returns at once
    rt.close()
    rt.close()
    for call in (
        lambda: rt.poll_once(0),
        lambda: rt.register(a, Interest.READABLE),
        lambda: rt.deregister(token),
        lambda: rt.run(handle),
        rt.wake,
    ):
        with pytest.raises(SocketClosedError):
            call()
    rt.stop()  # closed: nothing to stop, and no error (stop and close may come in any order)


def test_registration_errors() -> None:
    _, rt, a, b = make()
    rt.register(a, Interest.READABLE)
    with pytest.raises(ValueError, match="already registered"):
        rt.register(a, Interest.WRITABLE)
    with pytest.raises(ValueError):
        rt.register(b, Interest(0))
    b.close()
    with pytest.raises(SocketClosedError, match="closed"):
        rt.register(b, Interest.READABLE)
    other = SimNetwork().add_host().bind_udp("127.0.0.1:0")
    with pytest.raises(ValueError, match="another SimNetwork"):
        rt.register(other, Interest.READABLE)


def test_poll_timeout_config_bounds_run_waits() -> None:
    net = SimNetwork()
    host = net.add_host()
    rt = host.runtime(NetConfig(poll_timeout=0.5))
    sock = host.bind_udp("127.0.0.1:0")
    rt.register(sock, Interest.READABLE)
    calls = 0

    def never(event: Event) -> None:
        raise AssertionError(event)

    def stop_soon() -> None:
        nonlocal calls
        calls += 1
        rt.stop()

    net.call_later(1.2, stop_soon)
    rt.run(never)  # waits 0.5 s at a time, never blocks for ever; stop() wakes the wait
    assert calls == 1
    assert net.now == pytest.approx(1.2)


def test_stream_readiness_through_the_runtime() -> None:
    net = SimNetwork()
    host = net.add_host()
    rt = host.runtime()
    listener = host.bind_tcp("127.0.0.1:0")
    lt = rt.register(listener, Interest.READABLE)
    client = host.connect_tcp(listener.local_address)
    assert rt.poll_once(0) == [Event(lt, Readiness.READABLE)]
    server, _ = listener.accept_nonblocking()
    st_token = rt.register(server, Interest.READABLE | Interest.WRITABLE)
    assert rt.poll_once(0) == [Event(st_token, Readiness.WRITABLE)]
    client.shutdown_write()
    assert rt.poll_once(0) == [Event(st_token, Readiness.READABLE | Readiness.WRITABLE)]
    server.shutdown_write()
    hung = rt.poll_once(0)[0]
    assert hung.hangup
    assert hung.readable
    client.close()
    server.close()
    assert rt.poll_once(0) == []  # closed sources report nothing
