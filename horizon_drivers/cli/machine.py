"""The machine a benchmark or probe ran on, as numbers are meaningless without it.

Example:
    >>> description = describe_machine()
    >>> description.usable_cpus >= 1
    True
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import attrs

from horizon_drivers.tuning import usable_cpu_count

__all__ = ["MachineDescription", "cpu_model", "describe_machine"]

# Keys /proc/cpuinfo uses for the CPU's name: x86 ("model name"), arm64 ("Hardware",
# "CPU part" is only a number), POWER ("cpu"), s390 ("processor 0").
_CPUINFO_KEYS = ("model name", "hardware", "cpu model", "cpu")


@attrs.frozen
class MachineDescription:
    """CPU model, kernel, Python and CPU counts.

    Example:
        >>> d = MachineDescription("x", "Linux 6.1", "CPython 3.11.7", 2, 2)
        >>> d.summary()
        'x, 2 CPUs (2 usable), Linux 6.1, CPython 3.11.7'
    """

    cpu_model: str
    kernel: str
    python: str
    cpu_count: int
    usable_cpus: int

    def summary(self) -> str:
        """One line for a table's heading."""
        return (
            f"{self.cpu_model}, {self.cpu_count} CPUs ({self.usable_cpus} usable), "
            f"{self.kernel}, {self.python}"
        )

    def to_dict(self) -> dict[str, object]:
        """The fields as a JSON-ready dict."""
        return attrs.asdict(self)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from ``/proc/cpuinfo``, else what ``platform`` knows, else "unknown".

    Example:
        >>> isinstance(cpu_model(), str)
        True
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in _CPUINFO_KEYS and value.strip() and key not in found:
            found[key] = value.strip()
    for key in _CPUINFO_KEYS:
        if key in found:
            return found[key]
    return platform.processor() or platform.machine() or "unknown"


def describe_machine() -> MachineDescription:
    """Describe this machine (reads /proc/cpuinfo on Linux).

    Example:
        >>> describe_machine().cpu_count >= describe_machine().usable_cpus
        True
    """
    return MachineDescription(
        cpu_model=cpu_model(),
        kernel=f"{platform.system()} {platform.release()}",
        python=f"{platform.python_implementation()} {platform.python_version()}",
        cpu_count=os.cpu_count() or 1,
        usable_cpus=usable_cpu_count(),
    )
