"""``horizon bench --plot``: round-trip CDFs and throughput bars in one PNG.

matplotlib is imported here only, when a plot is asked for (the ``bench`` extra installs it);
the non-interactive Agg backend is used, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from horizon_drivers.cli.failures import CommandError

if TYPE_CHECKING:
    from horizon_drivers.bench.report import BenchReport

__all__ = ["draw"]


def draw(report: BenchReport, path: Path) -> None:
    """Draw UDP and TCP round-trip CDFs (top) and throughput bars (bottom) into ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib: pip install matplotlib") from None

    measured = [c for c in report.contenders if c.skipped is None]
    figure, axes = plt.subplots(2, 2, figsize=(13, 9))
    for column, protocol in enumerate(("udp", "tcp")):
        cdf_axes = axes[0][column]
        for contender in measured:
            rtt = contender.rtt(protocol)
            if rtt is None:
                continue
            xs = [value for _, value in rtt.cdf]
            ys = [probability for probability, _ in rtt.cdf]
            if len(xs) < 10:
                # Only a few percentiles (an old report): join the points, steps would mislead.
                cdf_axes.plot(xs, ys, marker="o", markersize=3, label=contender.name)
            else:
                cdf_axes.step(xs, ys, where="post", label=contender.name)
        cdf_axes.set_xscale("log")
        cdf_axes.set_xlabel("round trip (µs, log scale)")
        cdf_axes.set_ylabel("fraction of round trips")
        note = "window 1" if protocol == "udp" else "ping-pong"
        cdf_axes.set_title(f"{protocol.upper()} echo round trip CDF ({note})")
        cdf_axes.grid(True, which="both", alpha=0.3)
        if cdf_axes.lines:
            cdf_axes.legend(fontsize="small")

        bars = axes[1][column]
        key, scale, unit = (
            ("datagrams_per_s", 1e3, "thousand datagrams/s") if protocol == "udp"
            else ("bytes_per_s", 1e6, "MB/s")
        )
        names = [c.name for c in measured]
        values = [(c.value(protocol, key) or 0.0) / scale for c in measured]
        colors = ["tab:blue" if c.kind == "driver" else "tab:gray" for c in measured]
        bars.bar(names, values, color=colors)
        for index, contender in enumerate(measured):
            ratio = report.ratio(contender.name, protocol, key)
            if ratio is not None:
                bars.annotate(f"{ratio:.2f}x", (index, values[index]), ha="center",
                              va="bottom", fontsize="small")
        bars.set_ylabel(unit)
        bars.set_title(f"{protocol.upper()} echo throughput (x{report.baseline}; "
                       "blue: Horizon drivers)")
    figure.suptitle(f"horizon bench on {report.machine.summary()}", fontsize="medium")
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
