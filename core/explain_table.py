"""How ``xptrain explain`` prints what it found: a table of the operations, the worst excess
first, and the culprit on the last line."""

from __future__ import annotations

import math

from .explain import Explanation, OpRow

_HEAD = ("op", "call site", "calls", "max local ulps", "expected ulps", "excess", "carried")


def format_table(found: Explanation, top: int | None = 10, op: str | None = None) -> str:
    """The report: what was replayed, the operations (``top`` of them; ``op``: only that
    operation), the notes, and the culprit line."""
    c = found.config
    verdict = "within tolerance" if found.within_tolerance else "outside tolerance"
    lines = [
        f"xptrain explain: {c.label}, epoch {found.epoch} ({verdict})",
        f"every call evaluated again on its own inputs in {found.reference}; "
        "ulps: |out − ref| / (eps · scale); carried: relative distance from the reference replay",
        "",
    ]
    rows = [r for r in found.ops if op is None or r.op == op]
    shown = rows if top is None else rows[:top]
    lines += _aligned([_HEAD, *(_cells(r) for r in shown)])
    if len(rows) > len(shown):
        lines.append(f"... {len(rows) - len(shown)} more (--top)")
    lines += ["", *(f"note: {note}" for note in found.notes), culprit_line(found)]
    return "\n".join(lines)


def _aligned(cells: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells in columns: the names left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return ["  ".join(_cell(t, w, i) for i, (t, w) in enumerate(zip(row, widths, strict=True)))
            for row in cells]  # fmt: skip


def _cell(text: str, width: int, column: int) -> str:
    return text.ljust(width) if column < 2 else text.rjust(width)


def _cells(row: OpRow) -> tuple[str, ...]:
    return (
        row.op, row.site, str(row.calls), _number(row.max_ulp), _number(row.expected_ulp),
        _number(row.excess), _number(row.carried_rel_err),
    )  # fmt: skip


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def culprit_line(found: Explanation) -> str:
    """The last line: the culprit and by how much, or that there is none."""
    culprit = found.culprit
    if culprit is None:
        return "culprit: none (every call within its expected error)"
    return "culprit: " + describe_culprit(culprit)


def describe_culprit(culprit: dict) -> str:
    """``exp at loss.sigmoid:24: 4.5e+05 ulps where 4 are expected`` (or the compilation, or
    a non-finite result from finite inputs)."""
    op, site = culprit["op"], culprit["site"]
    if op == "compilation":
        return (
            f"the compilation ({site}): the compiled step is {_number(culprit['max_ulp'])} ulps "
            f"from the eager replay, a step may be {_number(culprit['expected_ulp'])}"
        )
    if culprit["max_ulp"] is None or math.isinf(culprit["max_ulp"]):
        return f"{op} at {site}: inf or NaN from finite inputs"
    return (
        f"{op} at {site}: {_number(culprit['max_ulp'])} ulps where "
        f"{_number(culprit['expected_ulp'])} are expected ({_number(culprit['excess'])}x)"
    )
