"""Dask data that never sits whole in memory: arrays opened from disk (.npy memory-mapped, .zarr)
and generated chunk by chunk, as lazy row-chunked dask arrays for the dask backend (or any
dask.array code)."""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from xptrain.errors import InvalidInput

CHUNK_BYTES = 64 << 20  # one chunk of X: 64 MiB (dask's own default "auto" size is 128 MiB)


def is_memmap(a: Any) -> bool:
    """Whether ``a`` is (a view of) a memory-mapped file, e.g. from ``np.load(mmap_mode="r")``."""
    while isinstance(a, np.ndarray):
        if isinstance(a, np.memmap) or isinstance(a.base, mmap.mmap):
            return True
        a = a.base
    return False


class Copying:
    """A memory-mapped array whose slices are copies: each chunk is read from disk once, by the
    task that loads it, and stays in memory only while its epoch's tasks use it. Opened from a
    .npy ``path``, it pickles as the path (a cluster's workers map the file themselves, from a
    shared disk); given a memory map, it pickles as the memory map does (the data itself)."""

    def __init__(self, path: Path | None = None, array: np.ndarray | None = None) -> None:
        self.path = path
        self._array = array
        array = self.array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self._array

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.array(self.array[index])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None} if self.path is not None else self.__dict__


def open_array(
    path: str | Path, *, chunk_rows: int | None = None, chunk_bytes: int = CHUNK_BYTES
) -> Any:
    """A lazy, row-chunked dask array of the ``.npy`` file (memory-mapped) or ``.zarr`` store
    (needs zarr) at ``path``: nothing is read until a chunk is computed."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"data file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            source: Any = Copying(path=path)
        except ValueError as err:
            raise InvalidInput(f"{path}: not a numeric .npy file ({err})") from None
        if source.dtype.kind not in "biuf" or source.ndim not in (1, 2):
            raise InvalidInput(f"{path}: needs a 1-D or 2-D numeric array, got {source.dtype}")
    elif suffix == ".zarr":
        try:
            import zarr
        except ImportError:
            raise InvalidInput(f"{path}: .zarr data needs zarr: pip install zarr") from None
        source = zarr.open(str(path), mode="r")
        if not hasattr(source, "shape"):  # a group: X inside it
            raise InvalidInput(f"{path}: a zarr group; open its array, e.g. {path}/X")
    else:
        raise InvalidInput(f"{path}: use a .npy file or a .zarr store")
    shape = tuple(source.shape)
    row_bytes = source.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    rows = chunk_rows or max(1, chunk_bytes // max(1, row_bytes))
    return da.from_array(
        source, chunks=(min(rows, shape[0]), *shape[1:]), asarray=False, fancy=False
    )


LAZY_ROWS = 1 << 16  # rows per chunk of lazy_linear's data (16 MiB at D = 32)


def lazy_linear(n: int, d: int, seed: int = 0) -> tuple[Any, Any]:
    """``(X, y)`` like ``linear:N,D,SEED`` (standard normal features, labels from a random
    linear rule plus noise) as lazy dask arrays, made chunk by chunk when computed and never
    all in memory. Chunk ``i`` (rows ``i·LAZY_ROWS`` on) draws from ``default_rng([seed, i])``:
    the same rows for every N, but not ``linear``'s data (whose one stream cannot be split)."""
    if n < 1 or d < 1:
        raise InvalidInput(f"lazy_linear needs N, D ≥ 1, got {n}, {d}")
    w = np.random.default_rng([seed, 2**32 - 1]).standard_normal(d) / np.sqrt(d)

    def block(i: int, rows: int) -> np.ndarray:
        rng = np.random.default_rng([seed, i])
        X = rng.standard_normal((LAZY_ROWS, d))[:rows]
        noise = rng.standard_normal(LAZY_ROWS)[:rows]
        y = (X @ w + 0.5 * noise > 0).astype(np.float64)
        return np.concatenate([X, y[:, None]], axis=1)

    parts = [
        da.from_delayed(
            dask.delayed(block)(i, min(LAZY_ROWS, n - start)),
            (min(LAZY_ROWS, n - start), d + 1),
            np.float64,
        )
        for i, start in enumerate(range(0, n, LAZY_ROWS))
    ]
    Xy = da.concatenate(parts, axis=0)
    return Xy[:, :d], Xy[:, d:]
