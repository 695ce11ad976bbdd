"""What one ``horizon bench`` run measured, as data: the echo scenario's contenders and the
rounds of the other scenarios. Printing lives in :mod:`horizon_drivers.cli.bench`, figures in
:mod:`horizon_drivers.bench.plot`; both read these.

Example:
    >>> Contender("uvloop", "peer", skipped="uvloop is not installed").udp is None
    True
"""

from __future__ import annotations

import statistics
from typing import Any

import attrs

from horizon_drivers.bench.latency import LatencySummary
from horizon_drivers.bench.reference import REFERENCE
from horizon_drivers.bench.runner import Measurement
from horizon_drivers.bench.scenarios import SPIN_SCENARIOS
from horizon_drivers.cli.machine import MachineDescription

__all__ = ["PROTOCOLS", "BenchReport", "Contender", "RoundsReport", "RoundsRow"]

#: The protocols the echo scenario measures, in table order.
PROTOCOLS = ("udp", "tcp")


@attrs.frozen
class Contender:
    """One server measured (or skipped, with the reason).

    Example:
        >>> Contender("uvloop", "peer", skipped="uvloop is not installed").udp is None
        True
    """

    name: str
    kind: str  # "driver" or "peer"
    udp: Measurement | None = None
    tcp: Measurement | None = None
    skipped: str | None = None

    def value(self, protocol: str, key: str) -> float | None:
        """A number from one protocol's result (None when missing)."""
        measurement = self.udp if protocol == "udp" else self.tcp
        if measurement is None or measurement.result is None:
            return None
        raw = measurement.result.get(key)
        return float(raw) if isinstance(raw, int | float) else None

    def cpu_us_per_datagram(self) -> float | None:
        """Server CPU microseconds per echoed UDP datagram (Linux; None when not measured).

        Over the windowed run when the load generator measured the server there
        (``server_cpu_windowed_s``, divided by the datagrams echoed in that run): every server
        faces the same offered load in it, while in the window-1 run a faster server echoes more
        of the costliest, one-at-a-time datagrams. Otherwise the server's CPU time over its
        whole UDP load divided by the datagrams it echoed (its own count, else the load
        generator's). Steadier than throughput on a shared machine.

        Example:
            >>> m = Measurement("udp", {"total_received": 1000}, None, {"udp_sent": 2000}, 0.001)
            >>> Contender("native", "driver", udp=m).cpu_us_per_datagram()
            0.5
            >>> windowed = {"total_received": 1000, "server_cpu_windowed_s": 0.002}
            >>> m = Measurement("udp", windowed, None, {"udp_sent": 2000}, 0.003)
            >>> Contender("native", "driver", udp=m).cpu_us_per_datagram()
            2.0
        """
        m = self.udp
        if m is None or m.result is None:
            return None
        windowed = m.result.get("server_cpu_windowed_s")
        if isinstance(windowed, int | float) and windowed > 0:
            seconds: float = windowed
            echoed = m.result.get("total_received")
        elif m.server_cpu_seconds:
            seconds = m.server_cpu_seconds
            echoed = (m.server or {}).get("udp_sent") or m.result.get("total_received")
        else:
            return None
        if not isinstance(echoed, int | float) or echoed <= 0:
            return None
        return seconds / float(echoed) * 1e6

    def rtt(self, protocol: str, key: str = "rtt") -> LatencySummary | None:
        """One protocol's round-trip summary (``rtt``; ``rtt_loaded`` for UDP, ``rtt_pipelined``
        for TCP)."""
        measurement = self.udp if protocol == "udp" else self.tcp
        if measurement is None or measurement.result is None:
            return None
        data = measurement.result.get(key)
        return LatencySummary.from_dict(data) if isinstance(data, dict) else None


@attrs.frozen
class BenchReport:
    """Everything one bench run measured, with what it ran on.

    Example:
        >>> from horizon_drivers.cli.machine import describe_machine
        >>> BenchReport(describe_machine(), {}, "stdlib", ()).ratio("x", "udp", "datagrams_per_s")
    """

    machine: MachineDescription
    settings: dict[str, Any]
    baseline: str
    contenders: tuple[Contender, ...]

    def _named(self, name: str) -> Contender | None:
        return next((c for c in self.contenders if c.name == name), None)

    def ratio(self, name: str, protocol: str, key: str, base: str | None = None) -> float | None:
        """``name``'s throughput over ``base``'s (default the baseline; higher is better)."""
        other = self._named(self.baseline if base is None else base)
        this = self._named(name)
        if other is None or this is None:
            return None
        a, b = this.value(protocol, key), other.value(protocol, key)
        return a / b if a is not None and b else None

    def latency_ratio(
        self, name: str, protocol: str, base: str | None = None, key: str = "rtt"
    ) -> float | None:
        """``base``'s p50 round trip (default the baseline's) over ``name``'s (higher is
        better); ``key`` picks the round trips (``rtt``, ``rtt_pipelined`` for TCP)."""
        other = self._named(self.baseline if base is None else base)
        this = self._named(name)
        if other is None or this is None:
            return None
        a, b = this.rtt(protocol, key), other.rtt(protocol, key)
        return b.p50_us / a.p50_us if a is not None and b is not None and a.p50_us else None

    def ratios(self, name: str, base: str | None = None) -> dict[str, float | None]:
        """Every ratio of ``name`` to ``base`` (default the baseline), as the JSON holds them."""
        return {
            "udp_datagrams_per_s": self.ratio(name, "udp", "datagrams_per_s", base),
            "udp_rtt_p50": self.latency_ratio(name, "udp", base),
            "tcp_bytes_per_s": self.ratio(name, "tcp", "bytes_per_s", base),
            "tcp_messages_per_s": self.ratio(name, "tcp", "messages_per_s", base),
            "tcp_rtt_p50": self.latency_ratio(name, "tcp", base),
            "tcp_pipelined_rtt_p50": self.latency_ratio(name, "tcp", base, "rtt_pipelined"),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``--json`` writes."""
        contenders = []
        for c in self.contenders:
            entry: dict[str, Any] = {"name": c.name, "kind": c.kind, "skipped": c.skipped}
            for protocol in PROTOCOLS:
                m = c.udp if protocol == "udp" else c.tcp
                entry[protocol] = None if m is None else {
                    "result": m.result, "error": m.error, "server": m.server,
                }
            entry["cpu_us_per_datagram"] = c.cpu_us_per_datagram()
            entry["ratios"] = self.ratios(c.name)
            entry["ratios_to_c"] = self.ratios(c.name, REFERENCE)
            contenders.append(entry)
        return {
            "machine": self.machine.to_dict(),
            "settings": self.settings,
            "baseline": self.baseline,
            "reference": REFERENCE,
            "ratios_note": "contender over baseline for throughput, baseline over contender "
            "for round trips: higher is better for every ratio; ratios_to_c are the same "
            "against the C reference server (the machine's limit), None where it did not run",
            "contenders": contenders,
        }




def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@attrs.frozen
class RoundsRow:
    """One server of a rounds scenario: its label, what runs it, and every round's measurement.

    Example:
        >>> RoundsRow("uvloop", "uvloop", "", skipped="uvloop is not installed").summary()
        {}
    """

    label: str
    contender: str
    backend: str
    rounds: tuple[Measurement, ...] = ()
    skipped: str | None = None

    def _results(self) -> list[dict[str, Any]]:
        return [m.result for m in self.rounds if m.result is not None]

    def summary(self) -> dict[str, Any]:
        """Medians over the rounds: ``median_rate``, ``best_rate``, ``per_cpu_second``,
        ``lost``, round trips' ``p50_us``/``p99_us``/``p999_us``, ``samples``, ``rounds_ok``."""
        results = self._results()
        if not results:
            return {}
        # UDP's rate is datagrams per second; TCP's, messages per second with many in flight.
        rates = [float(r["rate"] if "rate" in r else r["messages_per_s"]) for r in results]
        per_cpu = [float(r["total_received"]) / m.server_cpu_seconds for m in self.rounds
                   if (r := m.result) is not None and "total_received" in r
                   and m.server_cpu_seconds]
        rtts = [LatencySummary.from_dict(r["rtt"]) for r in results
                if isinstance(r.get("rtt"), dict)]
        return {
            "rounds_ok": len(results),
            "median_rate": _median(rates),
            "best_rate": max(rates),
            "per_cpu_second": _median(per_cpu),
            "lost": sum(int(r.get("lost", 0)) for r in results),
            "samples": sum(s.samples for s in rtts),
            "p50_us": _median([s.p50_us for s in rtts]),
            "p99_us": _median([s.p99_us for s in rtts]),
            "p999_us": _median([s.p999_us for s in rtts]),
        }

    def errors(self) -> list[str]:
        """Why rounds failed, one line each."""
        return [m.error for m in self.rounds if m.error is not None]


@attrs.frozen
class RoundsReport:
    """A rounds scenario (``gso``, ``spin``, ``aio-backends``): interleaved rounds, medians.

    Example:
        >>> from horizon_drivers.cli.machine import describe_machine
        >>> RoundsReport(describe_machine(), "gso", {}, ()).ratio("native", "stdlib")
    """

    machine: MachineDescription
    scenario: str
    settings: dict[str, Any]
    rows: tuple[RoundsRow, ...]

    def row(self, label: str) -> RoundsRow | None:
        """The row called ``label``."""
        return next((r for r in self.rows if r.label == label), None)

    def ratio(self, label: str, base: str, key: str = "median_rate") -> float | None:
        """``label``'s median ``key`` over ``base``'s (None when either is missing)."""
        this, other = self.row(label), self.row(base)
        if this is None or other is None:
            return None
        a, b = this.summary().get(key), other.summary().get(key)
        return a / b if a is not None and b else None

    def c_label(self, label: str) -> str:
        """The C row ``label`` is compared with: ``c``, or in ``spin`` and ``tcp-spin`` the C
        row of the same mode (``c-spin`` for spinning rows, ``c-blocking`` for the others)."""
        if self.scenario not in SPIN_SCENARIOS:
            return REFERENCE
        return f"{REFERENCE}-spin" if label.endswith("-spin") else f"{REFERENCE}-blocking"

    def ratio_to_c(self, label: str) -> float | None:
        """``label`` against its C row (:meth:`c_label`), higher is better: the median rate
        over C's, or in ``spin`` and ``tcp-spin`` C's median p50 round trip over ``label``'s."""
        base = self.c_label(label)
        if self.scenario in SPIN_SCENARIOS:
            return self.ratio(base, label, "p50_us")
        return self.ratio(label, base)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document ``--json`` writes."""
        return {
            "scenario": self.scenario,
            "machine": self.machine.to_dict(),
            "settings": self.settings,
            "rows": [
                {
                    "label": r.label, "server": r.contender, "backend": r.backend or None,
                    "skipped": r.skipped, "summary": r.summary(),
                    "c_row": self.c_label(r.label), "ratio_to_c": self.ratio_to_c(r.label),
                    "rounds": [
                        {"result": m.result, "error": m.error, "server": m.server,
                         "server_cpu_seconds": m.server_cpu_seconds}
                        for m in r.rounds
                    ],
                }
                for r in self.rows
            ],
        }
