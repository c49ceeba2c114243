"""Choosing the gradient's path by measuring it: the full batch or the one-pass blocked
gradient at a few block sizes, each timed for a few epochs on the run's own data, the fastest
kept. A rule tuned on one machine chose paths another machine ran slower (on one 2-core Xeon,
torch's blocks were 1.7x slower than its full batch); a measurement cannot be wrong that way.

The decision is cached per machine in the user's cache folder (``XPTRAIN_CACHE_DIR``, else the
platform's, e.g. ``~/.cache/xptrain``), keyed by everything it depends on: backend, library and
xptrain versions, device name, dtype, the problem's size class (rows and features rounded up to
powers of two), gradient engine, compilation, model, loss and optimizer. Later runs of the same
kind pay nothing; another version, device or size class measures again.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import atomic_write, json_writer

EPOCHS = 2  # timed epochs per candidate (after one untimed: compilation, first touch)
CACHE_FILE = "paths.json"


@dataclass(frozen=True)
class PathChoice:
    """The path a run takes: ``block`` rows per block of the one-pass gradient (None: the full
    batch) and ``why``, in words, for the record."""

    block: int | None
    why: str
    measurable: bool = False  # the rule's block, to be measured against the other candidates
    seconds: float = 0.0  # spent measuring (0: asked, a rule, or cached)


def candidates(rule: int, n: int, minimum: int) -> list[int | None]:
    """The full batch, the rule's block size and a quarter and four times it (powers of two of
    at least ``minimum`` rows, fewer than ``n``)."""
    sizes = sorted({max(minimum, size) for size in (rule // 4, rule, rule * 4)})
    return [None, *(size for size in sizes if size < n)]


def fastest(runs: Mapping[int | None, Callable[[], None]], epochs: int = EPOCHS) -> tuple:
    """Time each candidate's ``run`` (one epoch, synced): one untimed call, then the best of
    ``epochs``. Returns (the fastest candidate, seconds per epoch by candidate)."""
    seconds = {}
    for block, run in runs.items():
        run()  # compilation, first touch of the temporaries
        best = math.inf
        for _ in range(epochs):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        seconds[block] = best
    return min(seconds, key=seconds.__getitem__), seconds


def measured(
    key: Mapping[str, Any],
    runs: Callable[[], Mapping[int | None, Callable[[], None]]],
    folder: Path | None = None,
) -> PathChoice:
    """The cached decision for ``key``, or the fastest of ``runs()`` (built only when
    measuring), measured now and cached."""
    folder = cache_folder() if folder is None else folder
    text = json.dumps(key, sort_keys=True)
    cache = _read(folder / CACHE_FILE)
    if text in cache:
        block = cache[text]["block"]
        return PathChoice(block, f"{_label(block)}: the fastest measured here before (cached)")
    start = time.perf_counter()
    block, seconds = fastest(runs())
    cache[text] = {"block": block, "seconds": {_label(b): s for b, s in seconds.items()}}
    _write(folder / CACHE_FILE, cache)
    why = f"{_label(block)}: the fastest measured now ({_ratios(seconds)})"
    return PathChoice(block, why, seconds=time.perf_counter() - start)


def _label(block: int | None) -> str:
    return "full batch" if block is None else f"blocks of {block} rows"


def _ratios(seconds: Mapping[int | None, float]) -> str:
    """Each candidate's epoch time as a multiple of the fastest's."""
    best = min(seconds.values())
    return ", ".join(f"{_label(b)} {s / best:.2f}x" for b, s in seconds.items())


def cache_folder() -> Path:
    """``XPTRAIN_CACHE_DIR``, else the platform's user cache folder for xptrain."""
    if folder := os.environ.get("XPTRAIN_CACHE_DIR"):
        return Path(folder)
    import platformdirs  # only when a decision is measured or looked up

    return Path(platformdirs.user_cache_dir("xptrain", appauthor=False))


def _read(path: Path) -> dict[str, Any]:
    """The cache; empty where it is missing or unreadable (it only saves a measurement)."""
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def _write(path: Path, cache: dict[str, Any]) -> None:
    """Written whole under a temporary name, then renamed; a folder that cannot be written
    only costs the next run a measurement."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json_writer(cache))
    except OSError:
        pass


def size_class(n: int, d: int) -> list[int]:
    """Rows and features rounded up to powers of two: one decision serves similar sizes."""
    return [1 << max(0, math.ceil(math.log2(max(1, n)))), 1 << max(0, math.ceil(math.log2(d)))]
