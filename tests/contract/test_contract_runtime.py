"""Runtime properties, for every driver with its own Runtime.

The core one is stateful: whatever the order of open, register, reregister, deregister, close and
poll, a token that was deregistered never appears in an event again, and a token that is live and
watching a socket with data waiting does produce an event. Closing a registered socket and opening
another (which usually gets the same descriptor number) is part of the mix, because a runtime that
keys anything by descriptor number delivers the new socket's events to the old token, or drops the
new registration when the old token is deregistered.
"""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from horizon_core.contract import UdpSocket
from horizon_core.events import Event, Interest
from horizon_core.slab import Token
from tests.contract.contract_profiles import contract_settings
from tests.contract.drivers_under_test import POLL_STEP, DriverUnderTest

MAX_SOCKETS = 5
interests = st.sampled_from([Interest.READABLE, Interest.READABLE | Interest.WRITABLE])


def needs_own_runtime(dut: DriverUnderTest) -> None:
    if not dut.own_runtime:
        pytest.skip(f"{dut.id}: no Runtime of its own (its event loop is anyio's)")


class _Registration:
    def __init__(self, sock: UdpSocket, interest: Interest) -> None:
        self.sock = sock
        self.interest = interest


def test_deregistered_tokens_never_produce_events(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)

    class TokenMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.net = dut.net()
            self.runtime = self.net.runtime
            self.sender = self.net.udp()
            self.open: list[UdpSocket] = []
            self.live: dict[Token, _Registration] = {}
            self.dead: set[Token] = set()
            self.issued: set[Token] = set()

        def teardown(self) -> None:
            self.net.close()

        def _check(self, events: list[Event]) -> None:
            tokens = [e.token for e in events]
            assert len(tokens) == len(set(tokens)), f"one poll reported a token twice: {tokens}"
            for event in events:
                assert event.token not in self.dead, f"deregistered token {event.token:#x} fired"
                assert event.token in self.live, f"token {event.token:#x} was never issued"

        def _registered(self, sock: UdpSocket) -> bool:
            return any(r.sock is sock for r in self.live.values())

        @precondition(lambda self: len(self.open) < MAX_SOCKETS)
        @rule()
        def open_socket(self) -> None:
            self.open.append(self.net.udp())

        @precondition(lambda self: any(not self._registered(s) for s in self.open))
        @rule(data=st.data(), interest=interests)
        def register(self, data: st.DataObject, interest: Interest) -> None:
            sock = data.draw(st.sampled_from([s for s in self.open if not self._registered(s)]))
            token = self.runtime.register(sock, interest)
            assert token not in self.issued, f"token {token:#x} was issued twice"
            self.issued.add(token)
            self.live[token] = _Registration(sock, interest)

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data(), interest=interests)
        def reregister(self, data: st.DataObject, interest: Interest) -> None:
            token = data.draw(st.sampled_from(sorted(self.live)))
            registration = self.live[token]
            if registration.sock.closed:
                return  # reregistering a closed source is an error in some drivers; not a rule
            self.runtime.reregister(token, interest)
            registration.interest = interest

        @precondition(lambda self: bool(self.live))
        @rule(data=st.data())
        def deregister(self, data: st.DataObject) -> None:
            self.deregister_token(data.draw(st.sampled_from(sorted(self.live))))

        @precondition(lambda self: bool(self.dead))
        @rule(data=st.data())
        def deregister_again(self, data: st.DataObject) -> None:
            token = data.draw(st.sampled_from(sorted(self.dead)))
            with pytest.raises(KeyError):  # StaleTokenError
                self.runtime.deregister(token)

        @precondition(lambda self: any(self._registered(s) for s in self.open))
        @rule(data=st.data())
        def close_while_registered(self, data: st.DataObject) -> None:
            # The next open_socket usually gets this descriptor number back.
            sock = data.draw(st.sampled_from([s for s in self.open if self._registered(s)]))
            sock.close()
            self.open.remove(sock)

        @precondition(lambda self: any(self._registered(s) for s in self.open))
        @rule(data=st.data(), interest=interests, old_first=st.booleans())
        def reuse_descriptor(self, data: st.DataObject, interest: Interest, old_first: bool) -> None:
            # Close a registered socket, open one in its place (same descriptor number on POSIX),
            # register it, and deregister the old token before or after: the new token must work.
            old_token = data.draw(
                st.sampled_from(sorted(t for t, r in self.live.items() if not r.sock.closed))
            )
            old = self.live[old_token].sock
            old.close()
            self.open.remove(old)
            if old_first:
                self.deregister_token(old_token)
            new = self.net.udp()
            self.open.append(new)
            token = self.runtime.register(new, interest | Interest.READABLE)
            assert token not in self.issued, f"token {token:#x} was issued twice"
            self.issued.add(token)
            self.live[token] = _Registration(new, interest | Interest.READABLE)
            if not old_first:
                self.deregister_token(old_token)
            self.expect_event(token)

        def deregister_token(self, token: Token) -> None:
            self.runtime.deregister(token)
            del self.live[token]
            self.dead.add(token)

        def expect_event(self, token: Token) -> None:
            self.sender.send_to(b"ping", self.live[token].sock.local_address)
            deadline = time.monotonic() + 5.0
            seen = False
            while not seen and time.monotonic() < deadline:
                events = self.runtime.poll_once(POLL_STEP)
                self._check(events)
                seen = any(e.token == token and e.readable for e in events)
            assert seen, f"live token {token:#x} with a datagram waiting produced no event"

        @precondition(lambda self: bool(self.open))
        @rule(data=st.data(), count=st.integers(1, 3))
        def send(self, data: st.DataObject, count: int) -> None:
            sock = data.draw(st.sampled_from(self.open))
            for _ in range(count):
                self.sender.send_to(b"x", sock.local_address)

        @precondition(lambda self: bool(self.open))
        @rule(data=st.data())
        def drain(self, data: st.DataObject) -> None:
            sock = data.draw(st.sampled_from(self.open))
            buf = bytearray(16)
            for _ in range(100):
                try:
                    sock.recv_from(buf)
                except BlockingIOError:
                    break

        @rule(timeout=st.sampled_from([0.0, 0.001]))
        def poll(self, timeout: float) -> None:
            self._check(self.runtime.poll_once(timeout))

        @precondition(
            lambda self: any(
                r.interest & Interest.READABLE and not r.sock.closed for r in self.live.values()
            )
        )
        @rule(data=st.data())
        def live_token_fires(self, data: st.DataObject) -> None:
            candidates = sorted(
                t for t, r in self.live.items() if not r.sock.closed and r.interest & Interest.READABLE
            )
            self.expect_event(data.draw(st.sampled_from(candidates)))

        @invariant()
        def live_and_dead_are_disjoint(self) -> None:
            assert not (set(self.live) & self.dead)

    run_state_machine_as_test(  # type: ignore[no-untyped-call,unused-ignore]
        TokenMachine,
        settings=contract_settings(examples=40, stateful_step_count=40),
    )


def test_wake_interrupts_a_blocked_poll_from_another_thread(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    if dut.virtual_time:
        pytest.skip(f"{dut.id}: virtual time; a poll with nothing scheduled never blocks for real")
    with dut.net() as net:
        net.udp()  # something registered-able exists; nothing is registered
        timer = threading.Timer(0.05, net.runtime.wake)
        start = time.monotonic()
        timer.start()
        try:
            net.runtime.poll_once(5.0)
        finally:
            timer.cancel()
        assert time.monotonic() - start < 2.5, "wake() did not interrupt poll_once"


def test_run_delivers_events_until_stop(dut: DriverUnderTest) -> None:
    needs_own_runtime(dut)
    with dut.net() as net:
        receiver, sender = net.udp(), net.udp()
        token = net.runtime.register(receiver, Interest.READABLE)
        seen: list[Event] = []

        def handler(event: Event) -> None:
            seen.append(event)
            net.runtime.stop()

        sender.send_to(b"x", receiver.local_address)
        net.runtime.run(handler, timeout=POLL_STEP)
        assert [e.token for e in seen] == [token]
        net.runtime.deregister(token)
