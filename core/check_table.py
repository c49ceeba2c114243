"""The ``xptrain check`` report as people read it: the agreement table, the gradient checks,
the settings under them, and one summary line."""

from __future__ import annotations

from typing import Any

from .check import Report, Row
from .conformance import MODEL
from .explain_table import describe_culprit
from .gradcheck import GRAD_TOL
from .terminal import align

_COLUMNS = (
    "problem",
    "backend",
    "device",
    "dtype",
    "grad",
    "mode",
    "max rel err",
    "ulps",
    "first bad",
    "param err",
    "repeat",
    "margin",
    "result",
)


def format_table(report: Report) -> str:
    """The report as a table, one row per configuration, with the settings under it."""
    out = align([_COLUMNS, *(_table_row(row) for row in report.rows)])
    out += [f"  {row.config.label}: {row.error}" for row in report.rows if row.error]
    out += [
        f"  {row.config.label}: culprit {describe_culprit(row.culprit)} (xptrain explain)"
        for row in report.rows
        if row.culprit is not None
    ]
    out.append("")
    out.append(f"{MODEL}; margin = largest error / its tolerance")
    out += _gradient_lines(report)
    out += report.notes
    out.append("versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()))
    devices = dict.fromkeys(f"{row.device} = {row.device_name}" for row in report.rows)
    out.append("devices: " + "; ".join(devices))
    out += _precision_lines(report.precision)
    out += [f"skipped: {note}" for note in report.skipped]
    return "\n".join(out)


def _gradient_lines(report: Report) -> list[str]:
    """One line per problem and backend: the largest relative difference of the model's
    backward from autodiff; a line for each parameter that failed."""
    worst: dict[tuple[str, str, str], float] = {}
    for g in report.gradients:
        key = (g.problem, g.backend, g.device)
        err = g.max_rel_err if g.max_rel_err is not None else float("inf")
        worst[key] = max(worst.get(key, 0.0), err)
    lines = [
        f"gradient check: {problem}: backward vs {backend}/{device} autodiff (float64): "
        f"max rel diff {_num(err)} ({'ok' if err <= GRAD_TOL else 'FAIL'}, tolerance "
        f"{GRAD_TOL:g})"
        for (problem, backend, device), err in worst.items()
    ]
    return lines + [f"  {gradient_failure(g)}" for g in report.gradients if not g.passed]


def gradient_failure(g: Any) -> str:
    """A failed gradient check, in a sentence."""
    if g.error is not None:
        return f"{g.problem}: the gradient check on {g.backend}/{g.device} failed: {g.error}"
    return f"{g.label} differs from autodiff by {g.max_rel_err:.3g} (relative) > {GRAD_TOL:g}"


def _table_row(row: Row) -> tuple[str, ...]:
    """One configuration's cells of the table."""
    return (
        row.problem,
        row.backend,
        row.device,
        row.dtype,
        row.grad,
        f"{row.mode}, {row.config.spread}" if row.config.spread else row.mode,
        _num(row.max_rel_err),
        _num(row.max_ulp, ".1f"),
        "none" if row.first_bad_epoch is None else str(row.first_bad_epoch),
        _num(row.param_err),
        {True: "yes", False: "NO", None: "-"}[row.repeatable],
        _num(row.margin, ".2f"),
        "PASS" if row.passed else "FAIL",
    )


def _precision_lines(precision: dict[str, dict[str, Any]]) -> list[str]:
    """What each backend and dtype ran under (the settings that decide the numbers)."""
    lines = []
    for backend, by_dtype in precision.items():
        for dtype, settings in by_dtype.items():
            extra = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "dtype")
            lines.append(f"precision: {backend} {dtype}: {extra or 'nothing to set'}")
    return lines


def summary(report: Report) -> str:
    """One line: how many passed, or which failed and where."""
    n = len(report.rows)
    if report.passed:
        checked = f"; {len(report.gradients)} gradients = autodiff" if report.gradients else ""
        return f"PASS: all {n} configurations within tolerance{checked}"
    if report.missing:
        return f"FAIL: no result for {len(report.missing)}: {'; '.join(report.missing)}"
    lead = _gradient_lead(report)
    if lead and not report.failures:
        return f"FAIL: {lead}"
    lead += "; " if lead else ""
    parts = [f"{row.config.label} ({_where_it_failed(row)})" for row in report.failures[:5]]
    more = f", and {len(report.failures) - 5} more" if len(report.failures) > 5 else ""
    failed = len(report.failures)
    return f"FAIL: {lead}{failed} of {n} configurations: {'; '.join(parts)}{more}"


def _where_it_failed(row: Row) -> str:
    if row.first_bad_epoch is not None:
        return f"first bad epoch {row.first_bad_epoch}"
    return row.error or "parameters"


def _gradient_lead(report: Report) -> str:
    """The first failed gradient check (a wrong backward comes first: the rows that fail
    after it follow from it), or ""."""
    bad = [g for g in report.gradients if not g.passed]
    if not bad:
        return ""
    more = f" (and {len(bad) - 1} more gradient checks)" if len(bad) > 1 else ""
    return f"{gradient_failure(bad[0])}{more}"


def describe_failure(row: Row) -> str:
    """What went wrong in one failed configuration, in a sentence (and its culprit)."""
    culprit = "" if row.culprit is None else f"; culprit {describe_culprit(row.culprit)}"
    return _failure(row) + culprit


def _failure(row: Row) -> str:
    if row.error is not None:
        return f"{row.config.label}: {row.error}"
    if row.first_bad_epoch is not None:
        k = row.first_bad_epoch
        return (
            f"{row.config.label}: first bad epoch {k}: relative loss error {row.rel_err[k]:.3g} "
            f"> tolerance {row.loss_tol[k]:.3g} (margin {row.margin:.3g})"
        )
    return (
        f"{row.config.label}: final parameters off by {row.param_err:.3g} > tolerance "
        f"{row.param_tol:.3g}"
    )


def _num(value: float | None, spec: str = ".1e") -> str:
    if value is None:
        return "-"
    return format(value, spec if abs(value) < 1e4 else ".1e")
