"""The contract suite's fixture: one parametrization per driver the registry knows.

A driver that cannot run here (wrong platform, extension not built, package not written yet) is
skipped with the registry's reason, so ``-ra`` shows exactly what was not tested and why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.drivers_under_test import DRIVER_IDS, DriverUnderTest, load_driver


@pytest.fixture(scope="session", params=DRIVER_IDS)
def dut(request: pytest.FixtureRequest) -> Iterator[DriverUnderTest]:
    """The driver under test (session-scoped: drivers are stateless or make a fresh net per use)."""
    driver = load_driver(request.param)
    try:
        yield driver
    finally:
        driver.close()
