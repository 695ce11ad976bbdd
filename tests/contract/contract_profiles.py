"""Hypothesis settings for the contract suite: one profile per budget, chosen by environment.

The whole suite runs against every available driver (up to six parametrizations), so example
counts are modest by default. ``HORIZON_CONTRACT_PROFILE`` picks a profile:

* ``contract`` (default): the CI budget; the whole suite over five drivers takes about 30 s on
  two cores (measured: ``python -m pytest tests/contract``).
* ``contract-quick``: a smoke run while editing a driver.
* ``contract-thorough``: ten times the default, for a driver author before a release.

Each property passes its own weight (relative cost) to :func:`contract_settings`; the profile
scales it. ``deadline`` is off: the first call into a driver pays for imports and socket set-up,
and wall time is bounded by the suite's own waits, not by hypothesis.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["PROFILE", "contract_settings"]

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}
_SCALE = {"contract-quick": 0.25, "contract": 1.0, "contract-thorough": 10.0}
for _name, _scale in _SCALE.items():
    settings.register_profile(_name, max_examples=max(1, int(20 * _scale)), **_COMMON)  # type: ignore[arg-type]

#: The active profile's name.
PROFILE = os.environ.get("HORIZON_CONTRACT_PROFILE", "contract")
if PROFILE not in _SCALE:
    raise ValueError(
        f"HORIZON_CONTRACT_PROFILE={PROFILE!r}: expected one of {', '.join(_SCALE)}"
    )


def contract_settings(examples: int = 20, **overrides: object) -> settings:
    """Settings for one property: ``examples`` at the default budget, scaled by the profile."""
    scaled = max(1, round(examples * _SCALE[PROFILE]))
    return settings(settings.get_profile(PROFILE), max_examples=scaled, **overrides)  # type: ignore[arg-type]
