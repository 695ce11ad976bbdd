"""``python -m horizon_drivers``: the ``horizon`` command (see :mod:`horizon_drivers.cli`)."""

from __future__ import annotations

import sys

from horizon_drivers.cli import main

if __name__ == "__main__":
    sys.exit(main())
