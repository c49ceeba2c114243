"""Framework-neutral checkpoints: plain NumPy arrays in an .npz, written atomically, read without
unpickling, so a run saved on one backend resumes on any other."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .data import Problem
from .errors import InvalidInput, OptionError
from .files import atomic_write, load_npz
from .loss import get as get_loss
from .models import resolve
from .optim import OPTIMIZERS
from .options import Options

FORMAT = 1
# history beside the loss: accuracy (a loss with classes) and, with a validation split, val_*
_VAL = ("accuracy", "val_loss", "val_accuracy")
_NAME = re.compile(r"^epoch-(\d+)\.npz$")


@dataclass(frozen=True)
class Checkpoint:
    """The state after ``epoch`` epochs: parameters ``[W1, b1, ...]`` and optimizer state
    (float64 host arrays), the history (``{"loss": [...]}``, ``accuracy`` for a loss with
    classes, and ``val_loss``, ``val_accuracy`` with a validation split), and what the run
    was (``meta``: data fingerprint, learning rate, optimizer, model, backend, dtype, ...)."""

    epoch: int
    params: list[np.ndarray]
    history: dict[str, list[float]]
    meta: dict[str, Any] = field(default_factory=dict)
    state: list[np.ndarray] = field(default_factory=list)  # the optimizer's, as host arrays
    source: str = ""  # the file it was read from, for messages

    @property
    def losses(self) -> list[float]:
        """The training loss of every epoch so far."""
        return self.history["loss"]


def fingerprint(problem: Problem) -> str:
    """A short hash of the data, so a checkpoint is never resumed on other data."""
    digest = hashlib.sha256()
    for a in (problem.X, problem.y):
        digest.update(str(a.shape).encode())
        rows = max(1, (64 << 20) // (8 * max(1, a[:1].size)))  # a memory-mapped X in pieces
        for start in range(0, len(a), rows):
            digest.update(np.ascontiguousarray(a[start : start + rows], dtype=np.float64).data)
    return digest.hexdigest()[:16]


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` (an .npz) atomically."""
    arrays = {
        "format": np.array(FORMAT),
        "epoch": np.array(ckpt.epoch),
        **{f"param_{i}": np.asarray(p, dtype=np.float64) for i, p in enumerate(ckpt.params)},
        "losses": np.asarray(ckpt.losses, dtype=np.float64),
        **{k: np.asarray(v, dtype=np.float64) for k, v in ckpt.history.items() if k != "loss"},
        "meta": np.array(json.dumps(ckpt.meta, sort_keys=True)),
        **{f"state_{i}": np.asarray(s, dtype=np.float64) for i, s in enumerate(ckpt.state)},
    }
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save`; a clear error for anything else."""
    arrays = load_npz(path, "checkpoint")
    missing = {"format", "epoch", "param_0", "param_1", "losses", "meta"} - set(arrays)
    if missing:
        raise InvalidInput(
            f"{path}: not an xptrain checkpoint (missing {', '.join(sorted(missing))})"
        )
    if arrays["format"].shape != () or int(arrays["format"]) != FORMAT:
        raise InvalidInput(f"{path}: checkpoint format {arrays['format']}, expected {FORMAT}")
    try:
        ckpt = _from_arrays(arrays, str(path))
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{path}: unreadable checkpoint ({err})") from None
    _check_consistent(ckpt, arrays["epoch"])
    return ckpt


def _from_arrays(arrays: dict[str, np.ndarray], source: str) -> Checkpoint:
    """The checkpoint the arrays of its file hold (not yet checked for consistency)."""
    epoch, meta = arrays["epoch"], json.loads(str(arrays["meta"]))

    def floats(prefix: str) -> list[np.ndarray]:
        return [arrays[f"{prefix}_{i}"].astype(np.float64) for i in range(_count(arrays, prefix))]

    return Checkpoint(
        epoch=int(epoch) if epoch.shape == () and epoch.dtype.kind in "iu" else -1,
        params=floats("param"),
        history={
            "loss": arrays["losses"].astype(np.float64).tolist(),
            **{k: arrays[k].astype(np.float64).tolist() for k in _VAL if k in arrays},
        },
        meta=meta if isinstance(meta, dict) else {},
        state=floats("state"),
        source=source,
    )


def _check_consistent(ckpt: Checkpoint, epoch: np.ndarray) -> None:
    """Refuse a checkpoint whose epoch, history, parameters and metadata do not agree."""
    lengths = {len(v) for v in ckpt.history.values()}
    finite = all(np.isfinite(a).all() for a in (ckpt.losses, *ckpt.params, *ckpt.state))
    shaped = len(ckpt.params) % 2 == 0 and all(p.ndim == 2 for p in ckpt.params)
    consistent = ckpt.epoch >= 1 and lengths == {ckpt.epoch} and shaped
    if not (consistent and finite and ckpt.meta):
        raise InvalidInput(
            f"{ckpt.source}: inconsistent checkpoint (epoch {epoch}, {len(ckpt.losses)} "
            f"losses, {len(ckpt.params)} parameter arrays, finite: {finite}, "
            f"metadata: {bool(ckpt.meta)})"
        )


def _count(arrays: dict[str, np.ndarray], prefix: str) -> int:
    """How many arrays ``prefix_0, prefix_1, ...`` a checkpoint holds."""
    n = 0
    while f"{prefix}_{n}" in arrays:
        n += 1
    return n


def path_for(directory: str | Path, epoch: int) -> Path:
    """Where the checkpoint after ``epoch`` epochs lives in ``directory``."""
    return Path(directory) / f"epoch-{epoch:06d}.npz"


def latest(directory: str | Path) -> Path | None:
    """The checkpoint with the most epochs in ``directory``, or None if there is none."""
    found = [
        (int(m.group(1)), p)
        for p in Path(directory).glob("epoch-*.npz")
        if (m := _NAME.match(p.name))
    ]
    return max(found)[1] if found else None


def check_compatible(ckpt: Checkpoint, problem: Problem, options: Options) -> None:
    """Refuse to resume ``ckpt`` on other data, or with options a resumed run must keep (those
    declared so in :mod:`xptrain.options`: learning rate, optimizer, model, ...) other than
    ``options``, or when it already holds ``options.epochs`` epochs. Messages name the
    checkpoint's file, and the option as the caller spells it."""
    where = f"{ckpt.source}: " if ckpt.source else ""
    if ckpt.meta.get("data") != fingerprint(problem):
        raise OptionError(
            lambda s: f"{where}checkpoint was made on other data; resume with the same {s('data')}"
        )
    now, before = options.to_json(), {**_OLD_DEFAULTS, **ckpt.meta}
    for name in options.must_match():
        if before.get(name) != now[name]:
            raise OptionError(
                lambda s, name=name: (
                    f"{where}checkpoint was made with {name} "
                    f"{before.get(name)}; resume with the same {s(name)}"
                )
            )
    _check_shapes(ckpt, problem, options, where)
    if ckpt.epoch >= options.epochs:
        raise OptionError(
            lambda s: (
                f"{where}checkpoint already holds {ckpt.epoch} epochs; ask for more than "
                f"that with {s('epochs')}"
            )
        )


def _check_shapes(ckpt: Checkpoint, problem: Problem, options: Options, where: str) -> None:
    """Refuse parameters or optimizer state of other shapes than this data and model make."""
    d_out = get_loss(options.loss).outputs(problem.y)
    model = resolve(options.model, options.model_args, options.hidden, options.activation)
    made = model.init(np.random.default_rng(options.seed), problem.X.shape[1], d_out)
    if [p.shape for p in ckpt.params] != [np.shape(p) for p in made]:
        raise InvalidInput(f"{where}checkpoint parameters do not fit this data and model")
    expected = OPTIMIZERS[options.optimizer].init(xp_numpy, tuple(ckpt.params))
    if [s.shape for s in ckpt.state] != [e.shape for e in expected]:
        raise InvalidInput(
            f"{where}checkpoint's optimizer state does not fit the "
            f"{options.optimizer} optimizer and this model"
        )


# What checkpoints written before an option was recorded ran with: its default then.
_OLD_DEFAULTS = {"hidden": [], "activation": "sigmoid", "batch_size": None, "loss": "bce"}
_OLD_DEFAULTS |= {"optimizer": "sgd", "standardize": False, "model_args": {}}
