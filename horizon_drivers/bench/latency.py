"""Round-trip time summaries: percentiles and CDF points, from raw samples.

This is the one place a quantile is ranked: :func:`nearest_rank` (the smallest sample with at
least p% of samples at or below it), so every reported value is one that was actually measured.
The native load generator hands back its samples raw and sorted (:func:`percentiles_ns` turns
them into its ``rtt_ns`` dict); the Python TCP client's samples go through
:func:`summarize_rtts`.

Example:
    >>> summary = summarize_rtts([1000, 2000, 3000, 4000])
    >>> summary.p50_us, summary.p99_us
    (2.0, 4.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "CDF_PROBABILITIES",
    "LatencySummary",
    "check_quantiles",
    "nearest_rank",
    "percentiles_ns",
    "summarize_rtts",
]

#: Where the CDF of raw samples is sampled: every percent, plus the tail a latency plot is for.
CDF_PROBABILITIES: tuple[float, ...] = tuple(
    sorted({i / 100 for i in range(101)} | {0.995, 0.999, 0.9995, 0.9999})
)


@attrs.frozen
class LatencySummary:
    """Round-trip percentiles in microseconds, and ``cdf``: (probability, µs) points for plots.

    Example:
        >>> LatencySummary(3, 1.0, 2.0, 2.0, 1.5, ((0.0, 1.0), (1.0, 2.0))).p999_us
        2.0
    """

    samples: int
    p50_us: float
    p99_us: float
    p999_us: float
    mean_us: float
    cdf: tuple[tuple[float, float], ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (``cdf`` as a list of [probability, µs] pairs)."""
        data = attrs.asdict(self)
        data["cdf"] = [list(point) for point in self.cdf]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LatencySummary:
        """Inverse of :meth:`to_dict`.

        Example:
            >>> s = summarize_rtts([1000, 3000])
            >>> LatencySummary.from_dict(s.to_dict()) == s
            True
        """
        def number(key: str) -> float:
            value = data[key]
            if not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            return float(value)

        cdf = data["cdf"]
        if not isinstance(cdf, list):
            raise ValueError(f"cdf must be a list of [probability, us] pairs, got {cdf!r}")
        return cls(
            samples=int(number("samples")),
            p50_us=number("p50_us"),
            p99_us=number("p99_us"),
            p999_us=number("p999_us"),
            mean_us=number("mean_us"),
            cdf=tuple((float(p), float(v)) for p, v in cdf),
        )

    @classmethod
    def from_load_generator(cls, rtt_ns: Mapping[str, Any]) -> LatencySummary | None:
        """From the native load generator's ``rtt_ns`` percentiles (None when it took no samples).

        The CDF is the generator's ``quantiles`` (``(fraction, ns)`` pairs, asked for with
        ``quantiles=CDF_PROBABILITIES``) when it has them, else its min/p50/p90/p99/p999/max.

        Example:
            >>> s = LatencySummary.from_load_generator({"samples": 9, "min": 1000, "p50": 2000,
            ...     "p90": 3000, "p99": 4000, "p999": 5000, "max": 6000, "mean": 2500.0})
            >>> s.p999_us, s.cdf[-1]
            (5.0, (1.0, 6.0))
            >>> s = LatencySummary.from_load_generator({"samples": 9, "min": 1000, "p50": 2000,
            ...     "p90": 3000, "p99": 4000, "p999": 5000, "max": 6000, "mean": 2500.0,
            ...     "quantiles": [(0.0, 1000), (0.25, 1500), (0.5, 2000), (1.0, 6000)]})
            >>> s.cdf[1]
            (0.25, 1.5)
        """
        if not rtt_ns.get("samples"):
            return None
        quantiles = rtt_ns.get("quantiles")
        if quantiles:
            cdf = tuple(sorted((float(p), float(ns) / 1000) for p, ns in quantiles))
        else:
            points = (("min", 0.0), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999),
                      ("max", 1.0))
            cdf = tuple((p, float(rtt_ns[key]) / 1000) for key, p in points)
        return cls(
            samples=int(rtt_ns["samples"]),
            p50_us=float(rtt_ns["p50"]) / 1000,
            p99_us=float(rtt_ns["p99"]) / 1000,
            p999_us=float(rtt_ns["p999"]) / 1000,
            mean_us=float(rtt_ns["mean"]) / 1000,
            cdf=cdf,
        )


def nearest_rank(ordered: Sequence[int], fraction: float) -> int:
    """The nearest-rank quantile of an ascending, non-empty sequence.

    A small slack keeps ``fraction * len`` from rounding up past an exact rank
    (0.07 * 100 is 7.000000000000001 in floating point, and the 7th sample is meant).

    Example:
        >>> nearest_rank([10, 20, 30], 0.5)
        20
        >>> nearest_rank(list(range(1, 101)), 0.07)
        7
    """
    rank = max(1, math.ceil(fraction * len(ordered) - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def check_quantiles(quantiles: Iterable[float] | None) -> tuple[float, ...] | None:
    """``quantiles`` as a tuple of fractions in [0, 1] (None stays None); ValueError otherwise.

    Example:
        >>> check_quantiles([0.5, 1])
        (0.5, 1.0)
        >>> check_quantiles([1.5])
        Traceback (most recent call last):
        ...
        ValueError: quantiles must be fractions in [0, 1], got 1.5
    """
    if quantiles is None:
        return None
    wanted = tuple(float(q) for q in quantiles)
    for q in wanted:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantiles must be fractions in [0, 1], got {q}")
    return wanted


def percentiles_ns(
    ordered: Sequence[int], quantiles: Sequence[float] | None = None
) -> dict[str, Any]:
    """The load generator's ``rtt_ns`` dict from ascending samples: ``samples``, ``min``,
    ``p50``, ``p90``, ``p99``, ``p999``, ``max``, ``mean`` and, when asked, ``quantiles``
    (``(fraction, ns)`` pairs in the order given). ``{"samples": 0}`` when there are none.

    Example:
        >>> percentiles_ns([1000, 2000, 3000, 4000], [0.25])["quantiles"]
        [(0.25, 1000)]
        >>> percentiles_ns([])
        {'samples': 0}
    """
    n = len(ordered)
    if n == 0:
        return {"samples": 0}
    result: dict[str, Any] = {
        "samples": n,
        "min": ordered[0],
        "p50": nearest_rank(ordered, 0.5),
        "p90": nearest_rank(ordered, 0.9),
        "p99": nearest_rank(ordered, 0.99),
        "p999": nearest_rank(ordered, 0.999),
        "max": ordered[n - 1],
        "mean": sum(ordered) / n,
    }
    if quantiles is not None:
        result["quantiles"] = [(q, nearest_rank(ordered, q)) for q in quantiles]
    return result


def summarize_rtts(samples_ns: Iterable[int]) -> LatencySummary | None:
    """Summarize round-trip samples given in nanoseconds; None when there are none.

    Example:
        >>> summarize_rtts([]) is None
        True
        >>> summarize_rtts([5000]).cdf[-1]
        (1.0, 5.0)
    """
    return LatencySummary.from_load_generator(
        percentiles_ns(sorted(samples_ns), CDF_PROBABILITIES)
    )
