"""The loss curve, drawn like the seed's figure (matplotlib, imported only when a plot is asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InvalidInput
from .files import Writer

_NEEDS_LATEX = {"pgf"}  # needs an external TeX installation; refused rather than failing late


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise InvalidInput("plotting needs matplotlib: pip install 'xptrain[plot]'") from None
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


def loss_figure(losses: list[float], title: str) -> Any:
    """The loss per epoch, as the seed draws it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(losses)), losses, marker="o" if len(losses) <= 50 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def agreement_figure(report: Any) -> Any:
    """Per-epoch relative error against the reference, one panel per problem, one line per
    configuration, the tolerance of each dtype dashed; log scale (exact agreement is drawn at
    the bottom of the axis)."""
    plt = _pyplot()
    names = list(dict.fromkeys(row.problem for row in report.rows))
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        rows = [row for row in report.rows if row.problem == name and row.rel_err]
        floor = 1e-18
        for row in rows:
            errors = [max(e, floor) if e == e else float("nan") for e in row.rel_err]
            style = "-" if row.dtype == "float64" else "--"
            label = f"{row.backend}/{row.device} {row.dtype} {row.grad} {row.mode}"
            ax.plot(errors, style, linewidth=1, label=label)
        for dtype in sorted({row.dtype for row in rows}):
            tol = next(row.loss_tol for row in rows if row.dtype == dtype)
            ax.plot(tol, color="black", linestyle=":", linewidth=1)
            ax.annotate(f"{dtype} tolerance", (0, tol[0]), fontsize=7, va="bottom")
        ax.set_yscale("log")
        ax.set_title(f"{name}: relative loss error vs float64 reference")
        ax.set_xlabel("epoch")
        ax.set_ylabel("|loss - reference| / reference")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.12 + 0.02 * (len(labels) // 4), 1, 1))
    return fig
