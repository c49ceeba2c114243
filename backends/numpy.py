"""NumPy on the CPU, through array-api-compat's NumPy namespace."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """NumPy on the host CPU; the one-pass gradient's row groups run on one thread per core."""

    name = "numpy"
    xp = xp_numpy

    @property
    def version(self) -> str:
        return np.__version__

    @functools.cached_property
    def workers(self) -> int:  # type: ignore[override]
        return max(1, min(len(os.sched_getaffinity(0)), 8))

    @functools.cached_property
    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.workers, thread_name_prefix="xptrain-numpy")

    @functools.cached_property
    def _blas(self) -> Any:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController()

    def spread(self, fn: Callable[[int], Any], count: int) -> list[Any]:
        if count < 2 or self.workers < 2:
            return [fn(i) for i in range(count)]
        # NumPy releases the GIL in BLAS calls and ufuncs on large arrays: one thread per core,
        # each with a one-thread BLAS (a multi-threaded BLAS inside would oversubscribe).
        with self._blas.limit(limits=1, user_api="blas"):
            return list(self._pool.map(fn, range(count)))
