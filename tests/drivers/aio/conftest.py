"""Fixtures for the anyio driver's tests: every test runs on asyncio, asyncio+uvloop and trio.

Loopback only. Every wait in these tests is bounded with ``anyio.fail_after`` so a regression
fails fast instead of hanging the suite.
"""

from __future__ import annotations

import importlib.util
import socket
from typing import Any

import pytest

from horizon_drivers.aio import native_available

_BACKENDS = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="asyncio+uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
    pytest.param(
        ("trio", {}),
        id="trio",
        marks=pytest.mark.skipif(importlib.util.find_spec("trio") is None, reason="trio is not installed"),
    ),
]

# The batch engines a test can ask for; native only where it is built (Linux).
_ENGINES = [
    pytest.param(
        "native",
        marks=pytest.mark.skipif(not native_available(), reason="native driver not built / not Linux"),
    ),
    "portable",
]


@pytest.fixture(params=_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio, asyncio with uvloop, and trio."""
    return request.param


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


_HAS_IPV6 = _has_ipv6_loopback()


@pytest.fixture(params=_ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """The batch engine under test: ``"native"`` (recvmmsg, Linux) and ``"portable"``."""
    value: str = request.param
    return value


@pytest.fixture
def ipv6() -> None:
    """Skip the test when this host has no IPv6 loopback."""
    if not _HAS_IPV6:
        pytest.skip("no IPv6 loopback on this host")
