"""Interest, Readiness and Event."""

from __future__ import annotations

import pytest

from horizon_core.events import Event, Interest, Readiness
from horizon_core.slab import Token

TOKEN = Token((1 << 32) | 7)


@pytest.mark.parametrize("bits", range(16))
def test_event_properties_follow_the_bits(bits: int) -> None:
    event = Event(TOKEN, Readiness(bits))
    assert event.readable == bool(bits & 1)
    assert event.writable == bool(bits & 2)
    assert event.error == bool(bits & 4)
    assert event.hangup == bool(bits & 8)


def test_event_is_a_plain_tuple() -> None:
    event = Event(TOKEN, Readiness.READABLE)
    token, readiness = event
    assert (token, readiness) == (TOKEN, Readiness.READABLE)
    assert isinstance(event, tuple)
    assert event == (TOKEN, Readiness.READABLE)
    assert event._replace(readiness=Readiness.WRITABLE).writable


def test_interest_and_readiness_share_bits() -> None:
    assert int(Interest.READABLE) == int(Readiness.READABLE) == 1
    assert int(Interest.WRITABLE) == int(Readiness.WRITABLE) == 2
    both = Interest.READABLE | Interest.WRITABLE
    assert Readiness.WRITABLE & both == Readiness.WRITABLE
    assert {m.name for m in Readiness} == {"READABLE", "WRITABLE", "ERROR", "HANGUP"}
    assert {m.name for m in Interest} == {"READABLE", "WRITABLE"}
