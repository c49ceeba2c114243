"""What long commands show on the terminal: aligned tables, and progress bars on stderr."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any


def align(rows: Sequence[Sequence[str]]) -> list[str]:
    """Each row as one line, columns two spaces apart. A row's last cell is not padded and does
    not widen its column, so a short row may end in a long remark."""
    columns = max(map(len, rows))
    widths = [
        max((len(row[i]) for row in rows if i < len(row) - 1), default=0) for i in range(columns)
    ]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def progress(
    items: Iterable[Any] | None,
    desc: str,
    enabled: bool = True,
    unit: str = "config",
    **kwargs: Any,
) -> Any:
    """A tqdm bar over ``items`` on stderr, shown only on a terminal (and gone when done)."""
    from tqdm import tqdm

    return tqdm(
        items,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled or None,
        leave=False,
        **kwargs,
    )
