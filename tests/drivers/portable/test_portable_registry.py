"""Driver discovery (horizon_drivers.registry): every driver listed, each unavailable one with why."""

from __future__ import annotations

import sys

import pytest

from horizon_core.contract import Driver
from horizon_drivers import registry
from horizon_drivers.registry import DriverUnavailableError


def test_every_known_driver_has_a_status() -> None:
    statuses = registry.all_driver_statuses()
    assert [s.name for s in statuses] == list(registry.DRIVER_NAMES)
    for status in statuses:
        assert status.available or status.reason, status
        assert status.describe().startswith(status.name)


def test_portable_and_sim_are_available_everywhere() -> None:
    assert {"portable", "sim"} <= set(registry.available_drivers(sync_only=True))


def test_platform_bound_drivers_say_which_platform() -> None:
    iocp = registry.driver_status("iocp")
    if sys.platform != "win32":
        assert not iocp.available
        assert iocp.reason == "Windows only"
    native = registry.driver_status("native")
    if not sys.platform.startswith("linux"):
        assert native.reason == "Linux only"
    elif not native.available:
        assert native.reason.startswith("import failed:")


def test_get_driver_returns_contract_drivers() -> None:
    portable = registry.get_driver("portable")
    assert isinstance(portable, Driver)
    assert portable.name == "portable"
    assert isinstance(registry.get_driver("sim"), Driver)


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="did you mean 'native'") as info:
        registry.get_driver("natve")
    assert "portable" in str(info.value)
    assert "sim" in str(info.value)
    with pytest.raises(ValueError, match="known drivers"):
        registry.driver_status("")


def test_the_async_driver_is_listed_but_not_a_sync_driver() -> None:
    status = registry.driver_status("aio")
    assert not status.sync
    with pytest.raises(ValueError, match="async"):
        registry.get_driver("aio")
    if status.available:
        assert registry.driver_module("aio").NAME == "aio"


@pytest.mark.skipif(sys.platform == "win32", reason="iocp is available on Windows")
def test_unavailable_drivers_raise_with_the_reason() -> None:
    with pytest.raises(DriverUnavailableError, match="Windows only") as info:
        registry.get_driver("iocp")
    assert info.value.status.name == "iocp"
