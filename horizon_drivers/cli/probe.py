"""``horizon probe``: what a NetConfig really does on this host.

For each address family (IPv4 on 127.0.0.1, IPv6 on ::1) it opens a real UDP socket, TCP
listener and TCP stream with the config, and prints every planned option: requested,
effective, and why they differ (doubled by the kernel, clamped by ``net.core.rmem_max``, needs
CAP_NET_ADMIN, not on this platform). Then the kernel limits that bound those options, CPUs and
NUMA nodes, io_uring availability and which drivers run here. ``--json`` prints the same as one
JSON document.

A required option the kernel refuses would make opening fail; probe opens with every field
best-effort so it can still show the outcome, and marks such rows ``REQUIRED: opening fails``.

Example:
    >>> io_uring_status().detail != ""
    True
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from horizon_core.config import NetConfig
from horizon_core.options import Feature, OptionReport, OptionStatus
from horizon_drivers import registry
from horizon_drivers.cli.endpoints import load_config
from horizon_drivers.cli.machine import describe_machine
from horizon_drivers.cli.tables import format_table
from horizon_drivers.opening import NATIVE_FEATURES, open_tcp_listener, open_tcp_stream, open_udp
from horizon_drivers.tuning import current_affinity, numa_nodes, usable_cpu_count

__all__ = [
    "KERNEL_SETTINGS",
    "IoUringStatus",
    "SocketProbe",
    "add_parser",
    "io_uring_status",
    "probe_sockets",
    "read_kernel_settings",
    "run",
]

#: The sysctls that bound what the options can do (name -> why it matters).
KERNEL_SETTINGS = {
    "net.core.rmem_max": "largest SO_RCVBUF without CAP_NET_ADMIN",
    "net.core.wmem_max": "largest SO_SNDBUF without CAP_NET_ADMIN",
    "net.core.somaxconn": "caps the listen() backlog (tcp_backlog)",
    "net.core.busy_poll": "default busy-poll µs for poll/epoll (0: off)",
    "net.core.busy_read": "default busy-read µs for blocking reads (0: off)",
    "net.core.netdev_max_backlog": "packets queued per CPU before the stack drops them",
}

_PROC_SYS = Path("/proc/sys")
# io_uring_setup is syscall 425 on every architecture that has it (it was added after the
# syscall tables were unified in 5.1); alpha is the exception and has no io_uring.
_SYS_IO_URING_SETUP = 425
_PROBE_FAMILIES = (("ipv4", "127.0.0.1:0"), ("ipv6", "[::1]:0"))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``probe`` subcommand to ``subparsers``."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "probe",
        help="show what a NetConfig really does on this host",
        description="Open real sockets with the config and report each option, the kernel "
        "limits, CPUs, NUMA nodes, io_uring and drivers.",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="NetConfig fields in a TOML file")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.set_defaults(command=run)
    return parser


# -- sockets ------------------------------------------------------------------------------------


@attrs.frozen
class SocketProbe:
    """The option report of one real socket, or why it could not be opened.

    Example:
        >>> SocketProbe("ipv6", "udp", None, None, "IPv6 is disabled").error
        'IPv6 is disabled'
    """

    family: str
    kind: str
    address: str | None
    report: OptionReport | None
    error: str | None = None


def _all_best_effort(config: NetConfig) -> NetConfig:
    names = frozenset(f.name for f in attrs.fields(NetConfig) if f.name != "best_effort")
    return attrs.evolve(config, best_effort=names)


def _default_features() -> frozenset[Feature]:
    # The probe shows what the default driver would do: native where it is available, so an
    # option only native applies (SO_ZEROCOPY) is read back rather than reported skipped.
    from horizon_drivers import registry

    return NATIVE_FEATURES if registry.driver_status("native").available else frozenset()


def probe_sockets(
    config: NetConfig, features: frozenset[Feature] | None = None
) -> list[SocketProbe]:
    """Open a UDP socket, a TCP listener and a TCP stream per family with ``config``.

    ``features`` are the driver features the sockets are planned with (None: the native
    driver's where it is available, else none), so the report matches what that driver applies.

    Example:
        >>> probes = probe_sockets(NetConfig())
        >>> [(p.family, p.kind) for p in probes][:3]
        [('ipv4', 'udp'), ('ipv4', 'tcp_listener'), ('ipv4', 'tcp_stream')]
    """
    lenient = _all_best_effort(config)
    if features is None:
        features = _default_features()
    probes: list[SocketProbe] = []
    for family, address in _PROBE_FAMILIES:
        opened: list[socket.socket] = []
        try:
            for kind, opener in (("udp", open_udp), ("tcp_listener", open_tcp_listener)):
                try:
                    sock, report = opener(address, lenient, features)
                except OSError as exc:
                    probes.append(SocketProbe(family, kind, None, None, _os_error(exc)))
                    continue
                opened.append(sock)
                probes.append(SocketProbe(family, kind, _name(sock), report))
            listener = next((s for s in opened if s.type == socket.SOCK_STREAM), None)
            if listener is None:
                probes.append(SocketProbe(family, "tcp_stream", None, None, "no listener"))
                continue
            try:
                stream, report = open_tcp_stream(listener.getsockname(), lenient, features)
            except OSError as exc:
                probes.append(SocketProbe(family, "tcp_stream", None, None, _os_error(exc)))
                continue
            opened.append(stream)
            probes.append(SocketProbe(family, "tcp_stream", _name(stream), report))
        finally:
            for sock in opened:
                sock.close()
    return probes


def _name(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _os_error(exc: OSError) -> str:
    return f"{errno.errorcode.get(exc.errno or 0, 'error')}: {exc.strerror or exc}"


# -- kernel, CPUs, io_uring ---------------------------------------------------------------------


def read_kernel_settings(root: Path = _PROC_SYS) -> dict[str, int | None]:
    """The :data:`KERNEL_SETTINGS` sysctls (None where unreadable, e.g. not Linux).

    Example:
        >>> sorted(read_kernel_settings(Path("/nonexistent")).values(), key=str)[0] is None
        True
    """
    values: dict[str, int | None] = {}
    for name in KERNEL_SETTINGS:
        try:
            values[name] = int((root / name.replace(".", "/")).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            values[name] = None
    return values


@attrs.frozen
class IoUringStatus:
    """Whether io_uring can be used here, and the evidence.

    Example:
        >>> IoUringStatus(False, "not in this kernel (ENOSYS)", None).available
        False
    """

    available: bool
    detail: str
    disabled_sysctl: int | None


def io_uring_status(
    root: Path = _PROC_SYS, syscall: Callable[[], int] | None = None
) -> IoUringStatus:
    """Check ``kernel.io_uring_disabled`` and call ``io_uring_setup`` with invalid arguments.

    The call can only fail: with EFAULT/EINVAL the syscall exists and is allowed; ENOSYS means the
    kernel lacks it; EPERM means a sysctl or seccomp filter (containers) forbids it. ``syscall``
    returns an errno and replaces the real call in tests.

    Example:
        >>> io_uring_status(syscall=lambda: errno.ENOSYS).detail
        'not in this kernel (io_uring_setup: ENOSYS)'
    """
    try:
        disabled: int | None = int((root / "kernel/io_uring_disabled").read_text().strip())
    except (OSError, ValueError):
        disabled = None
    if not sys.platform.startswith("linux"):
        return IoUringStatus(False, f"Linux only (this is {sys.platform})", disabled)
    code = (syscall or _io_uring_setup_errno)()
    name = errno.errorcode.get(code, str(code))
    if code in (errno.EFAULT, errno.EINVAL):
        if disabled == 1:
            return IoUringStatus(
                True, "available to the io_uring group only (kernel.io_uring_disabled=1)", disabled
            )
        return IoUringStatus(True, f"available (io_uring_setup answered {name})", disabled)
    if code == errno.ENOSYS:
        return IoUringStatus(False, f"not in this kernel (io_uring_setup: {name})", disabled)
    if code == errno.EPERM:
        why = (
            "kernel.io_uring_disabled=2" if disabled == 2
            else "kernel.io_uring_disabled=1 and not in the io_uring group" if disabled == 1
            else "a seccomp filter (containers often block it)"
        )
        return IoUringStatus(False, f"blocked by {why} (io_uring_setup: EPERM)", disabled)
    return IoUringStatus(False, f"unexpected answer from io_uring_setup: {name}", disabled)


def io_uring_features() -> dict[str, Any]:
    """The io_uring features this kernel has and which the ``uring`` driver uses.

    ``features`` maps each feature (multishot recvmsg, provided-buffer rings, SEND_ZC, bundles...)
    to whether the kernel has it; ``used`` lists those the driver uses. Both are empty where the
    driver cannot run (its reason is then in the driver list).

    Example:
        >>> sorted(io_uring_features())
        ['features', 'used']
    """
    status = registry.driver_status("uring")
    if not status.available:
        return {"features": {}, "used": []}
    report = registry.driver_module("uring").probe()
    return {"features": dict(report["features"]), "used": list(report["used"])}


def _io_uring_setup_errno() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    # entries=1 with a NULL params pointer: never creates a ring (EFAULT where supported).
    result = libc.syscall(
        ctypes.c_long(_SYS_IO_URING_SETUP), ctypes.c_uint(1), ctypes.c_void_p(None)
    )
    if result >= 0:  # cannot happen with NULL params, but never leak a descriptor
        os.close(result)
        return 0
    return ctypes.get_errno()


# -- the command --------------------------------------------------------------------------------


def _row_note(config: NetConfig, field: str, status: OptionStatus) -> str:
    failed = status in (OptionStatus.REFUSED, OptionStatus.UNSUPPORTED)
    if failed and config.is_required(field):
        return "REQUIRED: opening fails"
    return "required" if config.is_required(field) else "best-effort"


def collect(config: NetConfig) -> dict[str, Any]:
    """Everything probe reports, as a JSON-ready dict.

    Example:
        >>> sorted(collect(NetConfig()))
        ['config', 'cpus', 'drivers', 'io_uring', 'kernel', 'machine', 'numa_nodes', 'sockets']
    """
    sockets = []
    for probe in probe_sockets(config):
        options = []
        if probe.report is not None:
            for outcome in probe.report.outcomes:
                entry = outcome.to_dict()
                entry["necessity"] = _row_note(config, outcome.field, outcome.status)
                options.append(entry)
        sockets.append(
            {
                "family": probe.family,
                "kind": probe.kind,
                "address": probe.address,
                "error": probe.error,
                "options": options,
            }
        )
    uring = io_uring_status()
    return {
        "machine": describe_machine().to_dict(),
        # JSON has null: None stays None here (to_mapping writes "none" for TOML, which has not).
        "config": {
            name: sorted(value) if isinstance(value, frozenset) else value
            for name, value in attrs.asdict(config, recurse=False).items()
        },
        "sockets": sockets,
        "kernel": read_kernel_settings(),
        "cpus": {
            "count": os.cpu_count() or 1,
            "usable": usable_cpu_count(),
            "affinity": list(current_affinity()),
        },
        "numa_nodes": [{"node": n.node, "cpus": list(n.cpus)} for n in numa_nodes()],
        "io_uring": {**attrs.asdict(uring), **io_uring_features()},
        "drivers": [
            {"name": s.name, "available": s.available, "reason": s.reason}
            for s in registry.all_driver_statuses()
        ],
    }


def _show(value: object) -> str:
    return "-" if value is None else str(value)


def summarize(data: dict[str, Any]) -> list[str]:
    """What the config did not get as asked, one line per (field, status, reason) and its sockets.

    Example:
        >>> option = {"field": "tos", "name": "IP_TOS", "status": "refused",
        ...           "reason": "not permitted", "necessity": "best-effort"}
        >>> sockets = [{"family": f, "kind": "udp", "error": None, "options": [option]}
        ...            for f in ("IPv4", "IPv6")]
        >>> summarize({"sockets": sockets})
        ['  tos (IP_TOS) refused on every socket: not permitted [best-effort]']
    """
    grouped: dict[tuple[str, str, str, str, str], list[str]] = {}
    opened = [sock for sock in data["sockets"] if not sock["error"]]
    for sock in opened:
        for o in sock["options"]:
            if o["status"] == "applied":
                continue
            key = (o["field"], o["name"], o["status"], o["reason"], o["necessity"])
            grouped.setdefault(key, []).append(f"{sock['family']} {sock['kind']}")
    order = {"refused": 0, "unsupported": 1, "adjusted": 2, "skipped": 3}
    return [
        f"  {field} ({name}) {status} on "
        f"{'every socket' if len(where) == len(opened) > 1 else ', '.join(where)}: {reason} [{need}]"
        for (field, name, status, reason, need), where in sorted(
            grouped.items(), key=lambda item: (order.get(item[0][2], 9), item[0][0])
        )
    ]


def render(data: dict[str, Any]) -> str:
    """The human-readable report of :func:`collect`'s dict: a summary first, then the details."""
    machine = data["machine"]
    lines = [
        f"horizon probe: {machine['cpu_model']}, {machine['kernel']}, {machine['python']}",
        "",
    ]
    failed = [f"{s['family']} {s['kind']}: {s['error']}" for s in data["sockets"] if s["error"]]
    summary = summarize(data)
    lines.append("not as asked (refused, unsupported, adjusted, skipped), and why:")
    lines += [*(f"  could not open {f}" for f in failed), *summary] if failed or summary else [
        "  nothing: every option applied as asked"
    ]
    lines += ["", "per socket:"]
    for sock in data["sockets"]:
        title = f"{sock['family']} {sock['kind']}"
        if sock["error"]:
            lines += [f"{title}: could not open ({sock['error']})", ""]
            continue
        lines.append(f"{title} ({sock['address']})")
        rows = [
            [o["field"], o["name"], _show(o["requested"]), _show(o["effective"]), o["status"],
             o["necessity"], o["reason"]]
            for o in sock["options"]
        ]
        table = format_table(
            ["field", "option", "requested", "effective", "status", "need", "why"], rows
        )
        lines += ["  " + line for line in table.splitlines()] + [""]
    lines.append("kernel limits")
    rows = [[name, _show(value), KERNEL_SETTINGS[name]] for name, value in data["kernel"].items()]
    lines += ["  " + line for line in format_table(["sysctl", "value", "meaning"], rows).splitlines()]
    cpus = data["cpus"]
    nodes = ", ".join(
        f"node {n['node']}: CPUs {','.join(map(str, n['cpus']))}" for n in data["numa_nodes"]
    )
    uring = data["io_uring"]
    lines += [
        "",
        f"CPUs: {cpus['count']} ({cpus['usable']} usable: "
        f"{','.join(map(str, cpus['affinity']))})",
        f"NUMA: {nodes}",
        f"io_uring: {uring['detail']}",
        *(
            [
                "io_uring features: "
                + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in uring["features"].items()),
                "io_uring features the uring driver uses: " + ", ".join(uring["used"]),
            ]
            if uring.get("features") else []
        ),
        "drivers: "
        + ", ".join(
            d["name"] if d["available"] else f"{d['name']} (unavailable: {d['reason']})"
            for d in data["drivers"]
        ),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Probe with ``--config`` (default NetConfig()) and print the report or JSON."""
    data = collect(load_config(args.config))
    print(json.dumps(data, indent=2) if args.json else render(data))
    return 0
