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
