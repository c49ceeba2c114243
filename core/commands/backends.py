"""``xptrain backends``: one row per built-in backend, installed or not."""

from __future__ import annotations

import argparse

from .. import backends
from ..errors import BackendUnavailable
from ..terminal import align

DESCRIPTION = "Every built-in backend: installed or why not, version, devices, capabilities."
_HEADER = ("backend", "installed", "version", "devices", "float64", "jit", "autodiff", "spreads")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    rows: list[tuple[str, ...]] = [_HEADER]
    for name in backends.SPECS:
        try:
            bk = backends.get(name)
        except BackendUnavailable as err:
            rows.append((name, f"no: {err}"))  # the reason runs on; it sets no width
            continue
        caps = bk.caps
        rows.append(
            (
                name,
                "yes",
                bk.version,
                ", ".join(bk.devices()),
                caps.float64,
                _yes(caps.jit),
                _yes(caps.autodiff),
                ", ".join(caps.spreads) or "-",  # data-parallel: devices, processes, workers
            )
        )
    print("\n".join(align(rows)))
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"
