"""``HOST:PORT`` arguments and ``--config`` files, turned into core values or one-line errors.

Addresses are IP literals (``127.0.0.1:9000``, ``[::1]:9000``), as everywhere in Horizon; the
command line adds two conveniences: a bare ``PORT`` (or ``:PORT``) means loopback, and
``localhost`` means ``127.0.0.1``. Nothing is resolved through DNS, and nothing binds all
interfaces unless ``0.0.0.0`` or ``[::]`` is written out.

Example:
    >>> str(parse_endpoint("9000", "--udp"))
    '127.0.0.1:9000'
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from horizon_core.addresses import SocketAddress
from horizon_core.config import NetConfig
from horizon_core.errors import ConfigError
from horizon_drivers.cli.failures import CommandError

__all__ = ["LOOPBACK", "load_config", "parse_endpoint"]

#: The host every command uses when none is given: never all interfaces by default.
LOOPBACK = "127.0.0.1"

# Config files may start from a preset; the key is not a NetConfig field, so it is taken out
# before the rest goes to NetConfig.from_mapping (which rejects unknown keys).
_PRESETS = {
    "default": NetConfig,
    "low_latency": NetConfig.low_latency,
    "high_throughput": NetConfig.high_throughput,
    "power_efficient": NetConfig.power_efficient,
}


def parse_endpoint(text: str, option: str) -> SocketAddress:
    """Parse a ``HOST:PORT`` argument; ``CommandError`` naming ``option`` when it is not one.

    Example:
        >>> str(parse_endpoint("localhost:7", "--tcp")), str(parse_endpoint("[::1]:0", "--udp"))
        ('127.0.0.1:7', '[::1]:0')
        >>> parse_endpoint("nowhere:1", "--udp")
        Traceback (most recent call last):
        ...
        horizon_drivers.cli.failures.CommandError: bad address for --udp: expected an IP literal such as 127.0.0.1 or ::1, got 'nowhere' (names are not resolved)
    """  # noqa: E501
    value = text.strip()
    if value.isdigit():
        value = f"{LOOPBACK}:{value}"
    elif value.startswith(":") and value[1:].isdigit():
        value = f"{LOOPBACK}{value}"
    elif value.lower().startswith("localhost:"):
        value = f"{LOOPBACK}:{value.partition(':')[2]}"
    try:
        return SocketAddress.parse(value)
    except ValueError as exc:
        raise CommandError(f"bad address for {option}: {exc}") from None


def load_config(path: str | None) -> NetConfig:
    """Read a TOML ``--config`` file into a NetConfig (``NetConfig()`` when ``path`` is None).

    Top-level keys are NetConfig fields, as ``NetConfig.from_mapping`` reads them
    (``recv_buf = "4MiB"``, ``busy_poll = "50us"``); an optional ``preset`` key
    (``low_latency``, ``high_throughput``, ``power_efficient``) picks the starting point.
    A ``[net]`` table is read the same way, for files that hold other settings too.

    Example:
        >>> load_config(None) == NetConfig()
        True
    """
    if path is None:
        return NetConfig()
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise CommandError(f"config file not found: {path}") from None
    except OSError as exc:
        raise CommandError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition; tomllib lets the decoding error through.
        raise CommandError(
            f"config file {path} is not UTF-8 (byte {exc.start} is {exc.object[exc.start]:#04x}); "
            "TOML files must be UTF-8"
        ) from None
    table = document.get("net", document)
    if not isinstance(table, dict):
        raise CommandError(f"config file {path}: [net] must be a table")
    settings = dict(table)
    preset_name = settings.pop("preset", "default")
    preset = _PRESETS.get(str(preset_name).replace("-", "_").lower())
    if preset is None:
        raise CommandError(
            f"config file {path}: preset={preset_name!r}: expected one of {', '.join(_PRESETS)}"
        )
    try:
        return NetConfig.from_mapping(settings, base=preset())
    except ConfigError as exc:
        raise CommandError(f"config file {path}: {exc}") from None
