"""The loss curve, drawn like the seed's figure (matplotlib, imported only when a plot is asked)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .errors import InvalidInput, first_line
from .files import Writer

_NEEDS_LATEX = {"pgf"}  # needs an external TeX installation; refused rather than failing late


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InvalidInput("plotting needs matplotlib: pip install 'xptrain[plot]'") from None
    except ValueError as err:  # matplotlib refuses to import with a bad MPLBACKEND or rc value
        raise InvalidInput(
            f"matplotlib failed to start: {first_line(err)} (xptrain draws to files with agg: "
            "unset MPLBACKEND or fix matplotlibrc)"
        ) from None
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path) -> None:
    """Refuse a file type matplotlib cannot write, before any training is done."""
    plt = _pyplot()
    suffix = Path(path).suffix.lstrip(".").lower()
    supported = set(plt.figure().canvas.get_supported_filetypes()) - _NEEDS_LATEX
    plt.close("all")
    if suffix not in supported:
        raise InvalidInput(
            f"cannot draw a plot as {suffix or 'a file without extension'!r}; "
            f"use one of: {', '.join(sorted(supported))}"
        )


def figure_writer(fig: Any) -> Writer:
    """A writer that saves ``fig`` (format from the file's extension) and then frees it."""
    plt = _pyplot()

    def write(tmp: str) -> None:
        try:
            fig.savefig(tmp)
        finally:
            plt.close(fig)

    return write


def loss_figure(history: dict[str, list[float]], title: str) -> Any:
    """A run's loss per epoch, as the seed draws it, with the held-out loss (dashed) where
    there is one; beside it the training and held-out accuracy, for a loss with classes.
    ``history``: ``losses`` and optionally ``val_losses``, ``accuracy``, ``val_accuracy``."""
    plt = _pyplot()
    accuracy = bool(history.get("accuracy") or history.get("val_accuracy"))
    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(10 if accuracy else 6, 4))
    loss_ax = axes[0] if accuracy else axes
    _curves(loss_ax, history, "losses", "val_losses", "loss")
    if accuracy:
        _curves(axes[1], history, "accuracy", "val_accuracy", "accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _curves(ax: Any, history: dict[str, list[float]], train: str, held_out: str, what: str) -> None:
    """The training curve (solid) and the held-out one (dashed) of one metric."""
    values = history.get(train) or []
    ax.plot(range(len(values)), values, marker="o" if len(values) <= 50 else None, label="training")
    val = [v if v is not None else math.nan for v in history.get(held_out) or []]
    if val:
        ax.plot(range(len(val)), val, "--", label="held out (--val-split)")
        ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)


def history_figure(runs: dict[str, dict[str, Any]], title: str) -> Any:
    """Every run's training loss per epoch (solid) and, where there is one, its validation
    loss (dashed, same colour); ``runs`` maps labels to run records (``losses``,
    ``val_losses``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    # a colour each (tab20 for up to 20 runs), and line styles beyond: no two curves alike
    colours = plt.cm.tab10.colors if len(runs) <= 10 else plt.cm.tab20.colors
    styles = ["-", ":", "-."]
    for i, (label, record) in enumerate(runs.items()):
        style = styles[(i // len(colours)) % len(styles)]
        (line,) = ax.plot(record["losses"], style, color=colours[i % len(colours)], linewidth=1,
                          label=label)  # fmt: skip
        val = [v if v is not None else float("nan") for v in record.get("val_losses", [])]
        if val:
            ax.plot(val, "--", color=line.get_color(), linewidth=1)
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    if any(r.get("val_losses") for r in runs.values()):
        ax.plot([], [], "--", color="gray", label="validation (dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def agreement_figure(report: Any) -> Any:
    """Per-epoch relative error against the reference, one panel per problem, one line per
    configuration, the tolerance of each dtype dashed; log scale (exact agreement is drawn at
    the bottom of the axis)."""
    plt = _pyplot()
    names = list(dict.fromkeys(row.problem for row in report.rows))
    fig, axes = plt.subplots(1, len(names), figsize=(max(8, 6 * len(names)), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        _agreement_panel(ax, name, [row for row in report.rows if row.problem == name])
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = 3 if len(names) == 1 else 4
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * math.ceil(len(labels) / ncol), 1, 1))
    return fig


def _agreement_panel(ax: Any, name: str, rows: list[Any]) -> None:
    """One problem's panel: each configuration's relative error per epoch, each dtype's
    tolerance dotted."""
    rows = [row for row in rows if row.rel_err]
    for row in rows:
        style = "-" if row.dtype == "float64" else "--"
        label = f"{row.backend}/{row.device} {row.dtype} {row.grad} {row.mode}"
        ax.plot(_floored(row.rel_err), style, linewidth=1, label=label)
    for dtype in sorted({row.dtype for row in rows}):
        tol = next(row.loss_tol for row in rows if row.dtype == dtype)
        ax.plot(tol, color="black", linestyle=":", linewidth=1)
        ax.annotate(f"{dtype} tolerance", (0, tol[0]), fontsize=7, va="bottom")
    ax.set_yscale("log")
    ax.set_title(f"{name}: relative loss error vs float64 reference")
    ax.set_xlabel("epoch")
    ax.set_ylabel("|loss - reference| / reference")
    ax.grid(alpha=0.3, which="both")


def _floored(errors: list[float], floor: float = 1e-18) -> list[float]:
    """Errors for a log axis: exact agreement (0) drawn at ``floor``; NaN kept."""
    return [max(e, floor) if e == e else float("nan") for e in errors]


def _speedups(
    runs: list[dict[str, Any]], best_cpu: dict[tuple[int, int], float]
) -> tuple[list[int], list[float]]:
    """N and the speedup over the best CPU epoch of the same size, where there is one."""
    paired = [r for r in runs if (r["n"], r["d"]) in best_cpu]
    return [r["n"] for r in paired], [best_cpu[(r["n"], r["d"])] / r["epoch_s"] for r in paired]


def bench_figure(records: list[dict[str, Any]], best_cpu: dict[tuple[int, int], float]) -> Any:
    """Seconds per epoch against N (log-log), and speedup over the best CPU configuration
    against N, one line per backend/device/mode (and D)."""
    plt = _pyplot()
    ok = [r for r in records if r["status"] == "ok"]
    lines: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(ok, key=lambda r: r["n"]):
        lines.setdefault(f"{r['backend']}/{r['device']} {r['mode']} D={r['d']}", []).append(r)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, runs in sorted(lines.items()):
        style = "-" if runs[0]["device"] == "cpu" else "--"
        n, seconds = [r["n"] for r in runs], [r["epoch_s"] for r in runs]
        left.plot(n, seconds, style, marker="o", markersize=3, label=label)
        right.plot(*_speedups(runs, best_cpu), style, marker="o", markersize=3)
    left.set(
        xscale="log",
        yscale="log",
        xlabel="N (rows of X)",
        ylabel="seconds per epoch",
        title="steady-state epoch time",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="N (rows of X)",
        ylabel="speedup over the best CPU configuration",
        title="speedup",
    )
    right.axhline(1, color="black", linewidth=0.8)
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    fig.legend(loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(lines) // 4), 1, 1))
    return fig


def explain_figure(found: Any) -> Any:
    """``xptrain explain``'s calls in execution order: each one's local error (ulps) with its
    expected error as a band, and the relative error its output carries."""
    plt = _pyplot()
    calls = found.calls
    fig, (local, carried) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    x = [c.index for c in calls]
    local.fill_between(x, 1e-3, [max(c.expected or 0, 1e-3) for c in calls], color="0.85",
                       step="mid", label="expected")  # fmt: skip
    local.semilogy(x, _floored([c.local if c.local is not None else math.nan for c in calls],
                               1e-3), ".", label="local")  # fmt: skip
    local.set_ylabel("local error (ulps)")
    local.legend(loc="upper left")
    carried.semilogy(x, _floored([c.carried if c.carried is not None else math.nan
                                  for c in calls]), ".")  # fmt: skip
    carried.set_ylabel("carried (relative)")
    carried.set_xlabel("call, in execution order")
    local.set_title(f"{found.config.label}, epoch {found.epoch}")
    for ax in (local, carried):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
