"""Framework-neutral checkpoints: plain NumPy arrays in an .npz, written atomically, read without
unpickling, so a run saved on one backend resumes on any other.

A checkpoint folder (:class:`Folder`) belongs to one run at a time: the run holds an exclusive
lock on it for its life. The loss history is not in the checkpoints (it made a run's checkpoints
grow quadratically) but in a log beside them, ``history.jsonl``: one JSON line per stretch of
epochs between checkpoints, each written whole and synced before its checkpoint."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .data import Problem
from .errors import InvalidInput, OptionError
from .files import atomic_write, json_writer, load_npz
from .loss import get as get_loss
from .models import resolve
from .optim import OPTIMIZERS
from .options import Options

FORMAT = 2  # 1: the history inside each checkpoint (still read); 2: in the folder's log
LOG = "history.jsonl"
KEEP = 3  # checkpoints a folder keeps by default, the newest
_LOCK = ".xptrain.lock"
_OWNER = ".xptrain.owner"  # the lock holder's pid and host, for the message of a refused run
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
    """Write ``ckpt``'s epoch, parameters, optimizer state and metadata to ``path`` (an .npz)
    atomically; its history goes to the folder's log (see :meth:`Folder.save`)."""
    _check_real(ckpt.params + ckpt.state, str(path))
    arrays = {
        "format": np.array(FORMAT),
        "epoch": np.array(ckpt.epoch),
        **{f"param_{i}": np.asarray(p, dtype=np.float64) for i, p in enumerate(ckpt.params)},
        "meta": np.array(json.dumps(ckpt.meta, sort_keys=True)),
        **{f"state_{i}": np.asarray(s, dtype=np.float64) for i, s in enumerate(ckpt.state)},
    }
    atomic_write(path, lambda tmp: np.savez(tmp, **arrays))


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save`, its history from the log beside it (or, in a
    format 1 checkpoint, from inside it); a clear error for anything else."""
    arrays = load_npz(path, "checkpoint")
    _check_format(arrays, path)
    _check_real([a for name, a in arrays.items() if name.startswith(("param_", "state_"))], path)
    try:
        ckpt = _from_arrays(arrays, str(path))
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{path}: unreadable checkpoint ({err})") from None
    _check_consistent(ckpt, arrays["epoch"])
    return ckpt


def _check_format(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Refuse a file that is not an xptrain checkpoint of a format this version reads."""
    if "format" in arrays and arrays["format"].shape == () and int(arrays["format"]) == 1:
        needed = {"format", "epoch", "param_0", "param_1", "losses", "meta"}
    else:
        needed = {"format", "epoch", "param_0", "param_1", "meta"}
    missing = needed - set(arrays)
    if missing:
        raise InvalidInput(
            f"{path}: not an xptrain checkpoint (missing {', '.join(sorted(missing))})"
        )
    if arrays["format"].shape != () or int(arrays["format"]) not in (1, FORMAT):
        raise InvalidInput(f"{path}: checkpoint format {arrays['format']}, expected {FORMAT}")


def _check_real(arrays: list[np.ndarray], where: str | Path) -> None:
    """Refuse complex parameters or optimizer state: casting them to float64 would drop their
    imaginary parts without a word."""
    if any(np.iscomplexobj(a) for a in arrays):
        raise InvalidInput(
            f"{where}: checkpoint holds complex parameters; xptrain trains real ones only"
        )


def _from_arrays(arrays: dict[str, np.ndarray], source: str) -> Checkpoint:
    """The checkpoint the arrays of its file hold (not yet checked for consistency)."""
    epoch, meta = arrays["epoch"], json.loads(str(arrays["meta"]))
    done = int(epoch) if epoch.shape == () and epoch.dtype.kind in "iu" else -1

    def floats(prefix: str) -> list[np.ndarray]:
        return [arrays[f"{prefix}_{i}"].astype(np.float64) for i in range(_count(arrays, prefix))]

    return Checkpoint(
        epoch=done,
        params=floats("param"),
        history=_history_inside(arrays) if "losses" in arrays else _logged(source, done),
        meta=meta if isinstance(meta, dict) else {},
        state=floats("state"),
        source=source,
    )


def _history_inside(arrays: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """A format 1 checkpoint's history, which it holds itself."""
    return {
        "loss": arrays["losses"].astype(np.float64).tolist(),
        **{k: arrays[k].astype(np.float64).tolist() for k in _VAL if k in arrays},
    }


def _logged(source: str, epochs: int) -> dict[str, list[float]]:
    """The first ``epochs`` epochs of the history log beside the checkpoint ``source``. A line
    is synced before its checkpoint is written, so a line a kill cut short lies past every
    checkpoint's epochs: it is never read (and a resumed run's first save rewrites the log)."""
    log = Path(source).parent / LOG
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidInput(
            f"{source}: its history log {str(log)!r} is unreadable ({err})"
        ) from None
    history: dict[str, list[float]] = {"loss": []}
    for number, line in enumerate(lines, start=1):
        if len(history["loss"]) >= epochs:
            break
        try:
            _extend(history, json.loads(line))
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InvalidInput(
                f"{source}: line {number} of its history log {str(log)!r} is not the next "
                "stretch of epochs"
            ) from None
    return {name: values[: max(epochs, 0)] for name, values in history.items()}


def _extend(history: dict[str, list[float]], stretch: dict[str, Any]) -> None:
    """Add a log line's stretch of epochs to ``history``; refuse one that does not follow it."""
    if stretch.pop("first") != len(history["loss"]):
        raise ValueError("not contiguous")
    for name, values in stretch.items():
        history.setdefault(name, []).extend(float(v) for v in values)


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


def _by_epoch(directory: str | Path) -> list[Path]:
    """The checkpoints in ``directory``, oldest first."""
    found = [
        (int(m.group(1)), p)
        for p in Path(directory).glob("epoch-*.npz")
        if (m := _NAME.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def latest(directory: str | Path) -> Path | None:
    """The checkpoint with the most epochs in ``directory``, or None if there is none."""
    found = _by_epoch(directory)
    return found[-1] if found else None


def newest_valid(
    directory: str | Path,
) -> tuple[Checkpoint | None, list[tuple[Path, InvalidInput]]]:
    """The newest checkpoint in ``directory`` that reads back whole (None: there is none), and
    each newer one that did not, with why; when none does, the newest one's error."""
    skipped: list[tuple[Path, InvalidInput]] = []
    for path in reversed(_by_epoch(directory)):
        try:
            return load(path), skipped
        except InvalidInput as err:
            skipped.append((path, err))
    if skipped:
        raise skipped[0][1]
    return None, []


class Folder:
    """A checkpoint folder owned by one run for its life (``with Folder(path) as folder``):
    an exclusive lock refuses a second run (the kernel drops the lock of a process that dies,
    so a killed run's folder is free again), temporary files a killed run left are removed, and
    only the newest ``keep`` checkpoints are kept (None: all)."""

    def __init__(self, path: str | Path, keep: int | None = KEEP) -> None:
        self.path = Path(path)
        self.keep = keep
        self._lock: Any = None
        self._created = False
        self._logged: int | None = None  # epochs in the log; None: rewritten at the first save

    def __enter__(self) -> Folder:
        self._created = not self.path.is_dir()
        self.path.mkdir(exist_ok=True)
        self._lock = _lock(self.path)
        try:
            for stale in self.path.glob(".xpt-*"):  # a killed run's half-written files
                stale.unlink(missing_ok=True)
            owner = {"pid": os.getpid(), "host": socket.gethostname()}
            atomic_write(self.path / _OWNER, json_writer(owner))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        (self.path / _OWNER).unlink(missing_ok=True)
        # removed while still held: a run that opened it meanwhile finds it unlinked once it
        # holds it, and filelock has that run try again (here: refused), never share it.
        # (Windows refuses to remove a held file; its lock removes the file on release.)
        with contextlib.suppress(PermissionError):
            (self.path / _LOCK).unlink(missing_ok=True)
        self._lock.release()
        if self._created and not any(self.path.iterdir()):
            self.path.rmdir()  # a run refused before its first checkpoint leaves nothing

    def set_aside(self, unreadable: list[Path]) -> list[Path]:
        """Rename checkpoints that do not read back (see :func:`newest_valid`) to
        ``*.corrupt``: kept for a look, out of the way of resuming and pruning; their new
        names."""
        return [path.rename(path.with_name(path.name + ".corrupt")) for path in unreadable]

    def save(self, ckpt: Checkpoint) -> None:
        """Log ``ckpt``'s new epochs, then write it, then prune the oldest checkpoints: a
        checkpoint never exists without its history."""
        self._log(ckpt)
        save(path_for(self.path, ckpt.epoch), ckpt)
        if self.keep is not None:
            for old in _by_epoch(self.path)[: -self.keep]:
                old.unlink(missing_ok=True)

    def _log(self, ckpt: Checkpoint) -> None:
        """The history's epochs since the last checkpoint, as one line of the log; at the first
        save the log is rewritten as the whole history so far (a resumed run's own, without any
        lines past its checkpoint)."""
        log = self.path / LOG
        if self._logged is None:
            atomic_write(log, lambda tmp: Path(tmp).write_text(_line(ckpt, 0), encoding="utf-8"))
        else:
            _append(log, _line(ckpt, self._logged))
        self._logged = ckpt.epoch


def _line(ckpt: Checkpoint, first: int) -> str:
    """The log line of ``ckpt``'s epochs from ``first`` on (Python's JSON: a held-out loss that
    overflowed is written ``Infinity`` and read back as inf)."""
    stretch = {name: values[first:] for name, values in ckpt.history.items()}
    return json.dumps({"first": first, **stretch}) + "\n"


def _append(path: Path, line: str) -> None:
    """Append one whole line to ``path`` and sync it to the disk before going on."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _lock(folder: Path) -> Any:
    """Hold ``folder``'s lock (a ``filelock.FileLock``), or refuse: another run holds it."""
    from filelock import FileLock, Timeout  # here: only runs with a checkpoint folder lock

    lock = FileLock(folder / _LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise InvalidInput(
            f"checkpoint folder {str(folder)!r} is in use by {_owner(folder)} (another xptrain "
            "run); wait for it or choose another --checkpoint-dir"
        ) from None
    return lock


def _owner(folder: Path) -> str:
    """The process holding ``folder``'s lock, as its owner file names it."""
    try:
        owner = json.loads((folder / _OWNER).read_text(encoding="utf-8"))
        pid, host = int(owner["pid"]), str(owner["host"])
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or by then gone
        return "another process"
    return f"process {pid}" + ("" if host == socket.gethostname() else f" on {host}")


def check_compatible(ckpt: Checkpoint, problem: Problem, options: Options) -> None:
    """Refuse to resume ``ckpt`` on other data, or with options a resumed run must keep (those
    declared so in :mod:`xptrain.options`: learning rate, optimizer, model, ...) other than
    ``options``, or when it already holds ``options.epochs`` epochs. Messages name the
    checkpoint's file, and the option as the caller spells it. A ``loss="auto"`` is settled
    by the problem's labels, as the run would settle it."""
    options = options.for_labels(problem.y)
    where = f"{ckpt.source}: " if ckpt.source else ""
    _check_real(ckpt.params + ckpt.state, ckpt.source or "start")
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
