"""NumPy on the CPU: NumPy ≥ 2.1 is its own Array API namespace (with ``sum`` and ``astype``
called at NumPy's C entry points); older NumPy goes through array-api-compat's wrapper."""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import threads
from .base import Backend, Shared, own_namespace


def _sum(x: Any, /, *, axis: Any = None, dtype: Any = None, keepdims: bool = False) -> Any:
    """``numpy.sum`` without its Python layer: the ``np.add.reduce`` call it makes."""
    return np.add.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)


def _astype(x: Any, dtype: Any, /, *, copy: bool = True, device: Any = None) -> Any:
    """``numpy.astype`` without its Python layer: the ``x.astype`` call it makes."""
    if device not in (None, "cpu"):
        raise ValueError(f'NumPy arrays live on "cpu", not {device!r}')
    return x.astype(dtype, copy=copy)


def namespace() -> Any:
    """NumPy as its own Array API namespace (NumPy ≥ 2.1; older: compat's), with ``sum`` and
    ``astype`` going straight to what NumPy's functions call: those two are Python wrappers
    (``np.sum`` checks its arguments and builds a dict, ~1.5 µs), and a small problem's epoch
    calls them four times, 10 µs of its 50 (bench/call_overhead.py). The same calls, the same
    bits; every other name is NumPy's own object."""
    xp = own_namespace(np, "array_api_compat.numpy")
    if xp is not np:
        return xp
    fast = types.ModuleType("numpy", np.__doc__)
    fast.__dict__.update(np.__dict__)  # numpy's names, its lazy submodules (__getattr__) too
    fast.sum, fast.astype = _sum, _astype
    return fast


class NumpyBackend(Backend):
    """NumPy on the host CPU; the one-pass gradient's row groups run on one thread per core."""

    name = "numpy"
    # numpy itself where it is compliant: compat's wrappers cost ~1 µs a call, and a small
    # problem's epoch is ~40 calls (bench/call_overhead.py)
    xp = namespace()

    @property
    def version(self) -> str:
        return np.__version__

    @functools.cached_property
    def workers(self) -> int:  # type: ignore[override]
        cores = threads.cores()
        return min(cores, 8, threads.shared() or cores)  # a worker: its share

    def _executor(self) -> ThreadPoolExecutor:
        # One pool per process: a forked child inherits the pool object but not its threads.
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="xptrain-numpy")
            self._pool_pid = os.getpid()
        return self._pool

    _pool: ThreadPoolExecutor | None = None
    _pool_pid: int = -1

    @functools.cached_property
    def _one_blas_thread(self) -> Shared:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
        return Shared(lambda: controller.limit(limits=1, user_api="blas"))

    def spread(self, fn: Callable[[int], Any], count: int) -> list[Any]:
        if count < 2 or self.workers < 2:
            return [fn(i) for i in range(count)]
        # NumPy releases the GIL in BLAS calls and ufuncs on large arrays: one thread per core,
        # each with a one-thread BLAS (a multi-threaded BLAS inside would oversubscribe), and
        # the caller's floating-point error settings (np.errstate is per thread).
        errors = np.geterr()

        def run(i: int) -> Any:
            with np.errstate(**errors):
                return fn(i)

        with self._one_blas_thread():
            return list(self._executor().map(run, range(count)))
