"""The configuration matrix: which backend × device × dtype × gradient engine × mode
combinations can run here, and a note for each one that cannot and why.

One generator, :func:`combinations`, plans for ``xptrain check``, ``xptrain bench`` and
``xptrain run`` alike (after scikit-learn's ``yield_namespace_device_dtype_combinations``):
it chooses the backends, filters their devices, and skips what a backend's declared
:class:`~xptrain.backends.base.Capabilities` say it cannot do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from . import backends
from .errors import InvalidInput, XptrainError

GRADS = ("analytic", "autodiff")
MODES = ("eager", "jit")


@dataclass(frozen=True)
class Spread:
    """Data-parallel: every configuration spreads its rows over ``kind`` ("devices" of one
    process, the "processes" of a group, the "workers" of a cluster).

    With ``replicas`` (devices per process, whether over the joined group) the backend is asked
    for them on each device, and its own refusal is the note: for a plan made in the process that
    will run it. Without, the backend's declared ``caps.spreads`` decide: for a plan made before
    the processes that run it are launched."""

    kind: str
    replicas: tuple[int, bool] | None = None

    def refusal(self, bk: backends.Backend, device: str) -> str | None:
        """Why ``bk`` cannot spread rows so on ``device``; None when it can."""
        if self.replicas is None:
            return cannot_spread(bk, self.kind)
        try:
            bk.replicas(*self.replicas, device)
        except XptrainError as err:
            return str(err)
        return None


@dataclass(frozen=True)
class Cell:
    """One valid combination of the matrix."""

    backend: backends.Backend
    device: str
    dtype: str
    grad: str
    mode: str  # "eager" or "jit"

    @property
    def label(self) -> str:
        """``backend-device-dtype-grad-mode``, as skip notes and run files name it."""
        return "-".join((self.backend.name, self.device, self.dtype, self.grad, self.mode))


def cannot_spread(bk: backends.Backend, kind: str) -> str | None:
    """Why ``bk``'s declared capabilities do not spread rows over ``kind``; None when they do."""
    return None if kind in bk.caps.spreads else f"{bk.name} does not spread rows over {kind}"


def check_dtypes(dtypes: Sequence[str]) -> None:
    """Refuse a dtype that is not one of :data:`backends.DTYPES`."""
    for dtype in dtypes:
        if dtype not in backends.DTYPES:
            raise InvalidInput(f"unknown dtype {dtype!r}; choose from {', '.join(backends.DTYPES)}")


def select_backends(names: Sequence[str] | None) -> tuple[list[backends.Backend], list[str]]:
    """The backends named, each of which must start here (aliases such as np and numpy name one
    backend, taken once); or, with no names, every built-in backend that starts here, and why
    each other one does not."""
    if names:
        return list({bk.name: bk for bk in map(backends.get, names)}.values()), []
    found, skipped = [], []
    for name in backends.names():
        try:
            found.append(backends.get(name))
        except XptrainError as err:
            skipped.append(str(err))
    return found, skipped


def combinations(
    backend_names: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] = backends.DTYPES,
    grads: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    *,
    spread: Spread | None = None,
    skipped: list[str] | None = None,
) -> Iterator[Cell]:
    """Every runnable backend × device × dtype × grad × mode, in that order (the first varies
    slowest), each note about what is left out appended to ``skipped`` as it arises.

    Backends as :func:`select_backends` chooses them (a named one that cannot start raises);
    devices as ``backends.device_filter(devices)`` keeps them. ``grads`` and ``modes`` default
    to what each backend has; given, each one a backend lacks is skipped with a note per
    combination. With ``spread``, a device the backend cannot spread over is skipped, and so is
    eager where a data-parallel step runs compiled only, each with a note."""
    notes = [] if skipped is None else skipped
    bks, unavailable = select_backends(backend_names)
    notes += unavailable
    notes += devices_missing(bks, devices or (), unavailable)
    keep = backends.device_filter(devices)
    for bk in bks:
        for device in filter(keep, bk.devices()):
            reason = spread.refusal(bk, device) if spread is not None else None
            if reason is not None:
                notes.append(f"{bk.name}/{device}: {reason}")
                continue
            for dtype, grad, mode in itertools.product(
                dtypes, _engines(bk, grads), _modes(bk, device, modes, spread, notes)
            ):
                cell = Cell(bk, device, dtype, grad, mode)
                reason = _lacks(bk, grad, mode)
                if reason is None:
                    yield cell
                else:
                    notes.append(f"{cell.label}: {reason}")


def devices_missing(
    bks: Sequence[backends.Backend], devices: Sequence[str], unavailable: Sequence[str]
) -> list[str]:
    """A note for each backend without a device asked for (``--devices``) that others have;
    a device no backend here has is refused, naming what each one found (and why the others
    did not start)."""
    notes = []
    found = {bk.name: bk.devices() for bk in bks}
    for spec in devices:
        keep = backends.device_filter([spec])
        lacking = [name for name, names in found.items() if not any(map(keep, names))]
        if len(lacking) == len(found):
            seen = [f"{name}: {', '.join(names)}" for name, names in found.items()]
            raise InvalidInput(
                f"no backend here has a {spec} device (" + "; ".join([*seen, *unavailable]) + ")"
            )
        notes += [f"{name}: no {spec} device here (it has {', '.join(found[name])})"
                  for name in lacking]  # fmt: skip
    return notes


def plan(
    backend_names: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] = backends.DTYPES,
    grads: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
    *,
    spread: Spread | None = None,
) -> tuple[list[Cell], list[str]]:
    """:func:`combinations`, all of them: the cells and the notes about what is left out."""
    skipped: list[str] = []
    cells = list(
        combinations(backend_names, devices, dtypes, grads, modes, spread=spread, skipped=skipped)
    )
    return cells, skipped


def _engines(bk: backends.Backend, grads: Sequence[str] | None) -> Sequence[str]:
    """The gradient engines asked for, or by default those ``bk`` has."""
    if grads is not None:
        return grads
    return GRADS if bk.caps.autodiff else GRADS[:1]


def _modes(
    bk: backends.Backend,
    device: str,
    modes: Sequence[str] | None,
    spread: Spread | None,
    notes: list[str],
) -> Sequence[str]:
    """The modes asked for (by default those ``bk`` has), less eager where ``bk`` spreads rows
    with a compiled step only: noted once per device, not per combination."""
    if modes is None:
        modes = MODES if bk.caps.jit else MODES[:1]
    if spread is None or not bk.caps.replicas_jit_only or "eager" not in modes:
        return modes
    notes.append(f"{bk.name}/{device} eager: a data-parallel step runs compiled only")
    return [mode for mode in modes if mode != "eager"]


def _lacks(bk: backends.Backend, grad: str, mode: str) -> str | None:
    """Why ``bk`` cannot run ``grad`` in ``mode``; None when it can."""
    if grad == "autodiff" and not bk.caps.autodiff:
        return f"{bk.name} has no automatic differentiation"
    if mode != "eager" and not bk.caps.jit:  # any mode but eager needs a compiler
        return f"{bk.name} has no jit compiler"
    return None
