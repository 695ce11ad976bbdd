"""Helpers for the iocp driver's tests: bounded waits, and what Wine can and cannot show.

The tests run on Windows and under Wine (``.ci/wine/run``); on Linux every test module is
skipped with the reason "Windows only (run .ci/wine/run)". Where Wine differs from Windows
(docs/windows.md), a test checks Windows' behaviour on Windows and, under Wine,
checks what Wine shows instead and says so in its assertion messages and docstring.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import pytest

# A plain variable, not sys.platform itself, so type checkers on Linux still see the tests.
_PLATFORM: str = sys.platform
WINDOWS = _PLATFORM == "win32"

#: Applied to every test module of this folder.
windows_only = pytest.mark.skipif(not WINDOWS, reason="Windows only (run .ci/wine/run)")

if TYPE_CHECKING or WINDOWS:
    from horizon_drivers import iocp as iocp
else:
    # Off Windows the driver does not import; the test modules still must (to be skipped).
    iocp = types.ModuleType("horizon_drivers.iocp", "unavailable here: Windows only")

T = TypeVar("T")

#: Upper bound on any wait; Wine's loopback is slow (~20k datagrams/s) but never this slow.
WAIT = 5.0


def wine() -> bool:
    """True under Wine (its ntdll exports wine_get_version)."""
    return WINDOWS and iocp.under_wine()


def retry(operation: Callable[[], T], what: str, timeout: float = WAIT) -> T:
    """Call ``operation`` until it stops raising BlockingIOError, harvesting completions between."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return operation()
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} still would block after {timeout} s") from None
            iocp.harvest(0.02)


def until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Harvest completions until ``predicate()`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        iocp.harvest(0.02)
