"""Importing the iocp driver: it works on Windows, and says why not everywhere else."""

from __future__ import annotations

import importlib
import sys

import pytest

from horizon_drivers import registry
from tests.drivers.iocp.iocp_helpers import WINDOWS


@pytest.mark.skipif(WINDOWS, reason="checks the refusal off Windows")
def test_import_off_windows_raises_import_error_with_the_reason() -> None:
    sys.modules.pop("horizon_drivers.iocp", None)
    with pytest.raises(ImportError, match=r"Windows driver \(I/O completion ports\).*\.ci/wine/run"):
        importlib.import_module("horizon_drivers.iocp")
    status = registry.driver_status("iocp")
    assert not status.available
    assert status.reason == "Windows only"


@pytest.mark.skipif(not WINDOWS, reason="Windows only (run .ci/wine/run)")
def test_import_on_windows_gives_a_driver_the_registry_lists() -> None:
    module = importlib.import_module("horizon_drivers.iocp")
    assert module.NAME == "iocp"
    assert registry.driver_status("iocp").available
    assert registry.get_driver("iocp") is module.DRIVER
