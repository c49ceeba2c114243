"""A process's share of the machine's cores: processes that run side by side (``check``'s
workers) each hold at most their share of threads, so no core runs two libraries' pools at
once. Small problems are where it shows: on a 2-core VM, a check's torch rows took 21.6 s
(eager) and 51 s (torch.compile) with two workers each running two-thread pools, 2.3 s and
19.4 s with one thread each (docs/agreement.md)."""

from __future__ import annotations

import os
import sys

# the pools libraries size from these as they start: OpenMP's (torch, inductor's kernels),
# MKL's, OpenBLAS's; and Dask's threaded scheduler
_POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DASK_NUM_WORKERS")
# Not JAX: XLA's CPU client sizes its pool by the cores. The folk `--xla_cpu_multi_thread_eigen
# =false` left a 2000² matmul on both cores here (jax 0.10) and made a whole check 3-4% faster,
# but XLA aborts on a flag it does not know: a JAX without it would kill every worker.
_SHARE: list[int] = []


def share(threads: int) -> None:
    """At most ``threads`` threads for each array library's pool in this process: BLAS pools
    already loaded (NumPy's) now; torch, OpenBLAS, MKL and Dask as they start (their
    variables); torch now if it is already imported; NumPy's row groups (``spread``). Call it
    before the libraries compute. A smaller limit the user set in a variable is kept."""
    if threads < 1:
        raise ValueError(f"a share of the cores is ≥ 1 thread, got {threads}")
    _SHARE[:] = [threads]
    for name in _POOL_VARIABLES:
        os.environ[name] = str(min(threads, _whole(os.environ.get(name)) or threads))
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)  # held for the process (not used as a context)
    torch = sys.modules.get("torch")  # already started: its pool resized now
    if torch is not None:
        torch.set_num_threads(threads)


def cores() -> int:
    """The cores this process may run on (Linux: its affinity mask, not every core)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def shared() -> int | None:
    """The threads :func:`share` gave this process, or None (the whole machine)."""
    return _SHARE[0] if _SHARE else None


def _whole(text: str | None) -> int | None:
    return int(text) if text and text.strip().isdigit() and int(text) > 0 else None
