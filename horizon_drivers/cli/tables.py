"""Plain-text tables for the terminal: aligned columns, numbers to the right.

Example:
    >>> print(format_table(["name", "n"], [["a", "1"], ["bb", "22"]]))
    name   n
    ----  --
    a      1
    bb    22
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("x", "").replace("-", "")
    return stripped.isdigit()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Align ``rows`` under ``headers``; a column whose cells are all numbers is right-aligned.

    Example:
        >>> format_table(["a"], [])
        'a\\n-'
    """
    columns = len(headers)
    widths = [
        max([len(headers[i])] + [len(row[i]) for row in rows]) for i in range(columns)
    ]
    right = [bool(rows) and all(_numeric(row[i]) or row[i] == "" for row in rows)
             for i in range(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)
