"""Hypothesis profiles for the whole suite.

``dev`` (default) explores more; ``ci`` keeps the run inside CI's time budget and prints the
reproduction blob of any failure. Deadlines are off in both: the machines are shared (2 cores),
and speed is measured by benchmarks, never by timed assertions.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=50,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
