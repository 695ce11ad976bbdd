"""Driver discovery: which drivers this host can run, and why the others cannot.

Rules this module obeys:

* Every known driver is listed, available or not; an unavailable one carries the reason (``"Linux
  only"``, ``"Windows only"``, or the text of the ImportError that stopped it), never a silent gap.
* A driver module is imported on first use and the answer is cached: asking is cheap, and a driver
  that is never asked for is never imported.
* A sync driver module exposes ``DRIVER`` (a :class:`horizon_core.contract.Driver`). The anyio
  driver (``aio``) is async: it is listed here, but ``get_driver`` refuses it with a message
  pointing at the module, because it does not implement the sync contract.

Example:
    >>> from horizon_drivers.registry import driver_status, get_driver
    >>> driver_status("portable").available
    True
    >>> get_driver("portable").name
    'portable'
"""

from __future__ import annotations

import difflib
import importlib
import sys
from types import ModuleType

import attrs

from horizon_core.contract import Driver
from horizon_core.errors import HorizonError

__all__ = [
    "DRIVER_NAMES",
    "DriverStatus",
    "DriverUnavailableError",
    "all_driver_statuses",
    "available_drivers",
    "driver_module",
    "driver_status",
    "get_driver",
]

# name -> (module, platform prefix it needs or None, whether it implements the sync contract)
_KNOWN: dict[str, tuple[str, str | None, bool]] = {
    "native": ("horizon_drivers.native", "linux", True),
    "portable": ("horizon_drivers.portable", None, True),
    "aio": ("horizon_drivers.aio", None, False),
    "iocp": ("horizon_drivers.iocp", "win32", True),
    "sim": ("horizon_drivers.sim", None, True),
    "uring": ("horizon_drivers.uring", "linux", True),
}
_PLATFORM_NAMES = {"linux": "Linux", "win32": "Windows"}

#: Every driver the project knows, in the order tools list them.
DRIVER_NAMES: tuple[str, ...] = tuple(_KNOWN)


@attrs.frozen
class DriverStatus:
    """Whether one driver can run on this host, and why not when it cannot.

    ``sync`` is True for drivers implementing :class:`horizon_core.contract.Driver`; the anyio
    driver is async and False.

    Example:
        >>> from horizon_drivers.registry import driver_status
        >>> status = driver_status("iocp")
        >>> status.available or status.reason == "Windows only"
        True
    """

    name: str
    module: str
    sync: bool
    available: bool
    reason: str = ""

    def describe(self) -> str:
        """One line for listings: ``portable: available`` or ``iocp: unavailable (Windows only)``.

        Example:
            >>> DriverStatus("x", "m", True, False, "Windows only").describe()
            'x: unavailable (Windows only)'
        """
        return f"{self.name}: available" if self.available else (
            f"{self.name}: unavailable ({self.reason})"
        )


class DriverUnavailableError(HorizonError, RuntimeError):
    """A known driver cannot run on this host; ``status.reason`` says why."""

    def __init__(self, status: DriverStatus) -> None:
        super().__init__(f"driver {status.name!r} is unavailable on this host: {status.reason}")
        self.status = status


_modules: dict[str, ModuleType] = {}
_statuses: dict[str, DriverStatus] = {}


def _check_name(name: str) -> tuple[str, str | None, bool]:
    try:
        return _KNOWN[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), DRIVER_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown driver {name!r}{hint}; known drivers: {', '.join(DRIVER_NAMES)}"
        ) from None


def _import_failure(exc: ImportError) -> str:
    """Why a driver did not import; a missing compiled extension says how to get one."""
    missing = exc if isinstance(exc, ModuleNotFoundError) else exc.__cause__
    if isinstance(missing, ModuleNotFoundError) and (missing.name or "").startswith(
        "horizon_drivers.native."
    ):
        return (
            f"import failed: its compiled extension {missing.name} is not built (this install had "
            "no working C compiler, or skipped the build); install a wheel, or reinstall with a C "
            "compiler (from a checkout: `pip install -e .`). The portable, aio and sim drivers "
            "work without it"
        )
    return f"import failed: {exc}"


def _probe(name: str) -> DriverStatus:
    module_name, platform, sync = _check_name(name)
    if platform is not None and not sys.platform.startswith(platform):
        return DriverStatus(name, module_name, sync, False, f"{_PLATFORM_NAMES[platform]} only")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return DriverStatus(name, module_name, sync, False, _import_failure(exc))
    if sync and not isinstance(getattr(module, "DRIVER", None), Driver):
        return DriverStatus(
            name, module_name, sync, False, f"{module_name} has no DRIVER implementing the contract"
        )
    if getattr(module, "__file__", None) is None:
        # A directory without __init__.py imports as a namespace package: nothing is there yet.
        return DriverStatus(name, module_name, sync, False, f"{module_name} is not a package yet")
    _modules[name] = module
    return DriverStatus(name, module_name, sync, True)


def driver_status(name: str) -> DriverStatus:
    """Whether driver ``name`` runs here (imports it on first call). ValueError for unknown names.

    Example:
        >>> driver_status("sim").name
        'sim'
    """
    status = _statuses.get(name)
    if status is None:
        status = _statuses[name] = _probe(name)
    return status


def all_driver_statuses() -> tuple[DriverStatus, ...]:
    """The status of every known driver, available or not, in :data:`DRIVER_NAMES` order.

    Example:
        >>> [s.name for s in all_driver_statuses()] == list(DRIVER_NAMES)
        True
    """
    return tuple(driver_status(name) for name in DRIVER_NAMES)


def available_drivers(*, sync_only: bool = False) -> tuple[str, ...]:
    """Names of the drivers that run on this host (only sync ones with ``sync_only``).

    Example:
        >>> "portable" in available_drivers(sync_only=True)
        True
    """
    return tuple(
        s.name for s in all_driver_statuses() if s.available and (s.sync or not sync_only)
    )


def driver_module(name: str) -> ModuleType:
    """The imported module of an available driver (sync or async).

    Raises ValueError for unknown names and :class:`DriverUnavailableError` with the reason otherwise.

    Example:
        >>> driver_module("portable").NAME
        'portable'
    """
    status = driver_status(name)
    if not status.available:
        raise DriverUnavailableError(status)
    return _modules[name]


def get_driver(name: str) -> Driver:
    """The ``DRIVER`` object of sync driver ``name``.

    Raises ValueError for an unknown name (listing the known ones) or for the async ``aio`` driver,
    and :class:`DriverUnavailableError` (with the reason) for a driver this host cannot run.

    Example:
        >>> get_driver("portble")
        Traceback (most recent call last):
        ...
        ValueError: unknown driver 'portble' (did you mean 'portable'?); known drivers: native, portable, aio, iocp, sim, uring
    """  # noqa: E501
    _, _, sync = _check_name(name)
    if not sync:
        raise ValueError(
            f"driver {name!r} is async and has no sync DRIVER; use {driver_status(name).module}"
            " directly (sync drivers: "
            + ", ".join(n for n, (_, _, s) in _KNOWN.items() if s)
            + ")"
        )
    driver: Driver = driver_module(name).DRIVER
    return driver
