"""The loss curve, drawn like the seed's figure (matplotlib, imported only when a plot is asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InvalidInput, XptrainError
from .files import atomic_write


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise XptrainError("plotting needs matplotlib: pip install 'xptrain[plot]'") from None
    matplotlib.use("Agg")  # files only; never open a window
    import matplotlib.pyplot as plt

    return plt


def check_plot_path(path: str | Path) -> None:
    """Refuse a file type matplotlib cannot write, before any training is done."""
    plt = _pyplot()
    suffix = Path(path).suffix.lstrip(".").lower()
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if suffix not in supported:
        raise InvalidInput(
            f"cannot draw a plot as {suffix or 'a file without extension'!r}; "
            f"use one of: {', '.join(sorted(supported))}"
        )


def plot_losses(path: str | Path, losses: list[float], title: str) -> None:
    """Save the loss per epoch to ``path`` (format from its extension), atomically."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(losses)), losses, marker="o" if len(losses) <= 50 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, fig.savefig)
    finally:
        plt.close(fig)
