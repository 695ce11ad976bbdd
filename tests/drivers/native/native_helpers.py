"""Helpers for the native driver's tests: loopback only, every wait bounded.

Importing this module skips the importing test module off Linux (the driver is Linux-only). Test
modules import it before ``horizon_drivers.native``; isort keeps it there, since it sorts as a
third-party module ahead of the first-party ``horizon_*`` packages.
"""

from __future__ import annotations

import select
import socket
import sys
from pathlib import Path

import pytest

from horizon_core.contract import Pollable

if not sys.platform.startswith("linux"):
    pytest.skip("the native driver is Linux-only", allow_module_level=True)

#: Upper bound on any wait for the kernel in these tests; loopback answers in microseconds.
WAIT = 5.0


def wait_readable(*sources: Pollable, timeout: float = WAIT) -> None:
    """Block until one of ``sources`` is readable; fail the test after ``timeout`` seconds."""
    ready, _, _ = select.select(list(sources), [], [], timeout)
    assert ready, f"nothing became readable within {timeout}s"


def wait_writable(*sources: Pollable, timeout: float = WAIT) -> None:
    """Block until one of ``sources`` is writable; fail the test after ``timeout`` seconds."""
    _, ready, _ = select.select([], list(sources), [], timeout)
    assert ready, f"nothing became writable within {timeout}s"


def has_ipv6() -> bool:
    """Whether the loopback has ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def link_local_address() -> tuple[str, int] | None:
    """A link-local IPv6 address of this host and its interface index, or None."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[3] == "20":  # scope 0x20: link
            raw = bytes.fromhex(fields[0])
            return socket.inet_ntop(socket.AF_INET6, raw), int(fields[1], 16)
    return None


def bracket(host: str, port: int = 0) -> str:
    """``host:port`` text, bracketing IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: Loopback hosts of each family, for ``@pytest.mark.parametrize("host", LOOPBACKS)``.
LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param(
        "::1", id="ipv6", marks=pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")
    ),
]
