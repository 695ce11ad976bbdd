"""The ``horizon`` command: ``echo``, ``bench``, ``probe`` and ``soak``.

Installed as the ``horizon`` console script and runnable as ``python -m horizon_drivers``.
Each subcommand lives in its own module (:mod:`~horizon_drivers.cli.echo`,
:mod:`~horizon_drivers.cli.bench`, :mod:`~horizon_drivers.cli.probe`,
:mod:`~horizon_drivers.cli.soak`); drivers, anyio and
matplotlib are imported only by the command that uses them, so ``--help`` stays fast. A failure
the user can fix is one line on stderr and exit status 2 (:mod:`~horizon_drivers.cli.failures`).

Example:
    >>> main(["--help"])  # doctest: +ELLIPSIS
    usage: horizon [-h] [--version] {echo,bench,probe,soak} ...
    ...
    0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from horizon_core._version import __version__
from horizon_drivers.cli.failures import EXIT_FAILURE, CommandError, explain

__all__ = ["build_parser", "main"]

_EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``horizon echo: ...``), not usage plus error."""

    def error(self, message: str) -> NoReturn:
        raise CommandError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every subcommand included.

    Example:
        >>> build_parser().parse_args(["probe", "--json"]).json
        True
        >>> main(["--version"])  # doctest: +ELLIPSIS
        horizon 0...
        0
    """
    from horizon_drivers.cli import bench, echo, probe, soak

    parser = _Parser(
        prog="horizon",
        description="Horizon Sockets: serve echo, benchmark the drivers, probe what a config does.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(metavar="{echo,bench,probe,soak}", required=True)
    for module in (echo, bench, probe, soak):
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``horizon`` command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Example:
        >>> main(["echo", "--workers", "0"])
        2
    """
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        status: int = args.command(args)
        return status
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        print("horizon: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise
        print(f"horizon: error: {line}", file=sys.stderr)
        return EXIT_FAILURE
