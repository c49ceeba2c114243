"""Dask on the CPU, through array-api-compat's dask.array: X row-chunked, computed a chunk at a
time by this process's threads or, after :meth:`DaskBackend.connect`, by a dask.distributed
cluster; data larger than memory stays on disk (:mod:`xptrain.backends.dask_data`), read chunk
by chunk.

Dask is lazy: an epoch's parameters are a graph over every earlier epoch. The training loop
calls :meth:`DaskBackend.settle` on each epoch's (carry, loss), which materialises them in one
computation (X read once per epoch) so the graph never grows; without it every epoch would
recompute all earlier ones.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import array_api_compat.dask.array as xp_dask
import dask
import dask.array as da
import numpy as np
from array_api_compat import is_dask_array

from xptrain.errors import BackendUnavailable, InvalidInput

from .base import Backend, Capabilities
from .dask_data import CHUNK_BYTES, Copying, is_memmap

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler, and again to see a worker


class DaskBackend(Backend):
    """Dask arrays, row-chunked; one device, ``cpu`` (this process's threads, or a cluster)."""

    name = "dask"
    xp = xp_dask
    # X is processed a chunk at a time by dask's own graph: the full-batch step already reads
    # each chunk once per epoch; core's one-pass blocked gradient (a Python loop of small dask
    # ops per block) is ~15x slower here: chunked, so core takes the full-batch step.
    caps = Capabilities(chunked=True, spreads=("workers",), scheduler=True)

    def __init__(self) -> None:
        # Rows per chunk: None picks them so a chunk of X holds about ``chunk_bytes``.
        self.chunk_bytes = CHUNK_BYTES
        self.chunk_rows: int | None = _env_rows()
        self.client: Any = None  # a distributed.Client, after connect()
        self._default: Any = None  # the dask.config.set that made it the default scheduler
        self._rows_for: dict[int, int] = {}  # N -> rows per chunk: y chunked as its X was

    # -- identity ---------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return dask.__version__

    def versions(self) -> dict[str, str]:
        found = {"dask": dask.__version__}
        with contextlib.suppress(ImportError):
            import distributed

            found["distributed"] = distributed.__version__
        return found

    def device_name(self, name: str) -> str:
        if self.client is not None:
            workers = self.client.scheduler_info().get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            return (
                f"dask cluster {self.client.scheduler.address}: {len(workers)} workers, "
                f"{threads} threads"
            )
        return super().device_name(name)

    def threads(self) -> dict[str, Any]:
        info = super().threads()
        if self.client is not None:
            info["dask_workers"] = {
                address: worker.get("nthreads")
                for address, worker in self.client.scheduler_info().get("workers", {}).items()
            }
        else:
            info["dask_scheduler"] = dask.config.get("scheduler", "threads")
            info["dask_threads"] = dask.config.get("num_workers", None) or os.cpu_count()
        return info

    def precision(self, dtype: str) -> dict[str, Any]:
        return {
            "dtype": dtype,
            "chunk_rows": self.chunk_rows,
            "chunk_bytes": self.chunk_bytes,
            "scheduler": self.client.scheduler.address if self.client is not None else "local",
        }

    # -- data movement ----------------------------------------------------------------------
    def rows_per_chunk(self, n: int, row_bytes: int) -> int:
        """Rows per chunk for an array of ``n`` rows of ``row_bytes`` bytes: ``chunk_rows`` if
        set, else as many as fit ``chunk_bytes``; the first array of ``n`` rows (X) decides for
        the later ones (y), so their chunks line up."""
        if self.chunk_rows is not None:
            return max(1, min(n, self.chunk_rows))
        if n not in self._rows_for:
            if len(self._rows_for) > 64:
                self._rows_for.clear()
            self._rows_for[n] = max(1, min(n, self.chunk_bytes // max(1, row_bytes)))
        return self._rows_for[n]

    def asarray(self, a: Any, dtype: str, device: Any) -> Any:
        """A row-chunked dask array of ``dtype`` (columns in one chunk). A dask array (data on
        disk, or made lazily) stays lazy; a host array is split into chunks, and with a cluster
        connected it is sent to the workers once, here, not with every epoch's graph."""
        want = np.dtype(dtype)
        if is_dask_array(a):
            return _whole_rows(a if a.dtype == want else a.astype(want))
        host = np.asarray(a)
        if host.dtype.kind not in "biuf":
            raise InvalidInput(f"dask: cannot make {dtype} from dtype {host.dtype}")
        if host.ndim == 0:
            return da.from_array(host.astype(want))
        row_bytes = want.itemsize * int(np.prod(host.shape[1:], dtype=np.int64))
        chunks = (self.rows_per_chunk(host.shape[0], row_bytes), *host.shape[1:])
        if self.client is not None:
            return self._scattered(host, want, chunks[0])
        if is_memmap(a):
            # on disk: stays there, each chunk read (and converted) by the task that needs it
            x = da.from_array(Copying(array=a), chunks=chunks, asarray=False, fancy=False)
            return x if x.dtype == want else x.astype(want)
        return da.from_array(host.astype(want, copy=False), chunks=chunks)

    def _scattered(self, host: np.ndarray, want: np.dtype, rows: int) -> Any:
        """``host`` sent to the cluster's workers once, here, a chunk at a time, not inside
        every epoch's graph (a memory map too: pickled, it is its data; open_array's files go
        as their path)."""
        # hash=False: equal data sent again (b = 0 in every run) must not reuse a key that the
        # last run's futures are releasing (FutureCancelledError: lost dependencies).
        parts = [
            host[start : start + rows].astype(want, copy=False)
            for start in range(0, host.shape[0], rows)
        ]
        futures = self.client.scatter(parts, hash=False)
        return da.concatenate(
            [
                da.from_delayed(future, part.shape, dtype=part.dtype)
                for future, part in zip(futures, parts, strict=True)
            ],
            axis=0,
        )

    def to_numpy(self, x: Any) -> np.ndarray:
        if is_dask_array(x):
            x = x.compute()
        return np.asarray(x)

    def sync(self, x: Any) -> None:
        """Wait for the chunks of ``x`` a cluster is computing (a persisted array); the local
        schedulers compute synchronously, so there is nothing to wait for. A lazy ``x`` is not
        computed: :meth:`settle` does that, once per epoch."""
        if self.client is not None and is_dask_array(x):
            from distributed import futures_of, wait

            futures = futures_of(x)
            if futures:
                with self.client.as_current():
                    wait(futures)

    def replicas(self, devices: int, distributed: bool, device: str) -> Any:
        """Refused: dask spreads chunks over a cluster's workers itself (``--scheduler``)."""
        raise InvalidInput(
            "dask spreads X's row chunks over its workers itself: give --scheduler ADDRESS "
            "for a cluster, not --data-parallel or --distributed"
        )

    def settle(self, tree: Any) -> Any:
        """Materialise every dask array in ``tree`` (nested tuples and lists of arrays) in one
        computation, so they share its reads of X, and return the same structure with each array
        replaced by a concrete one (a one-task graph; on a cluster, futures that may still be
        running). Called by the training loop on each epoch's (carry, loss)."""
        leaves: list[Any] = []
        _flatten(tree, leaves)
        lazy = [i for i, leaf in enumerate(leaves) if is_dask_array(leaf)]
        if not lazy:
            return tree
        if self.client is not None:
            done = self.client.persist([leaves[i] for i in lazy])
        else:
            done = dask.persist(*(leaves[i] for i in lazy))
        for i, array in zip(lazy, done, strict=True):
            leaves[i] = array
        return _unflatten(tree, iter(leaves))

    # -- precision --------------------------------------------------------------------------
    @contextlib.contextmanager
    def float_scope(self, dtype: str) -> Iterator[None]:
        """No inf/NaN warnings, in this thread and in the threads dask computes in (NumPy's
        error state is per thread): a pool of our own, whose threads start with it set."""
        if self.client is not None or _scheduler_chosen():
            with super().float_scope(dtype):
                yield
            return
        workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
        with (
            ThreadPoolExecutor(workers, initializer=_quiet_float_errors) as pool,
            dask.config.set(pool=pool, scheduler="threads"),
            super().float_scope(dtype),
        ):
            yield

    # -- a cluster --------------------------------------------------------------------------
    def connect(self, address: str, timeout: float = CONNECT_TIMEOUT) -> Any:
        """Compute on the dask.distributed scheduler at ``address`` (``tcp://host:port``, or a
        ``distributed.LocalCluster``) from now on; its Client. Fails within about ``timeout``
        seconds, never hangs: when the scheduler cannot be reached, or has no worker."""
        try:
            from distributed import Client
        except ImportError:
            raise BackendUnavailable(
                "--scheduler needs dask.distributed: pip install 'xptrain[dask]'"
            ) from None
        if not isinstance(address, str) and not hasattr(address, "scheduler_address"):
            raise InvalidInput(f"a dask scheduler address is tcp://HOST:PORT, got {address!r}")
        if isinstance(address, str) and not address.strip():
            raise InvalidInput("a dask scheduler address is tcp://HOST:PORT, got ''")
        self.disconnect()
        shown = getattr(address, "scheduler_address", address)
        try:
            # not set_as_default: a Client that fails to start would leave dask's config
            # asking for a distributed scheduler that is not there
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise BackendUnavailable(
                f"cannot reach the dask scheduler at {shown} ({err}); is it running, and is "
                "the address tcp://HOST:PORT?"
            ) from None
        except ValueError as err:  # a malformed address
            raise InvalidInput(f"bad dask scheduler address {shown!r}: {err}") from None
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            client.close()
            raise BackendUnavailable(
                f"the dask scheduler at {shown} has no worker after {timeout:g} s; start "
                f"one with: dask worker {shown}"
            ) from None
        self.client = client
        # dask's default scheduler till disconnect(), for every computation of this process
        self._default = dask.config.set(scheduler=client)
        return client

    def disconnect(self) -> None:
        """Back to this process's threads; the cluster's client is closed."""
        client, self.client = self.client, None
        default, self._default = self._default, None
        if default is not None:
            default.__exit__(None, None, None)
        if client is not None:
            client.close()

    @contextlib.contextmanager
    def scheduler(self, address: Any, timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
        """``with bk.scheduler(address):`` compute on that cluster inside (an address, or a
        ``distributed.LocalCluster``; None: locally)."""
        if address is None:
            yield None
            return
        client = self.connect(address, timeout)
        try:
            yield client
        finally:
            self.disconnect()


def _whole_rows(x: Any) -> Any:
    """A 2-D dask array rechunked so each chunk holds whole rows (columns in one chunk)."""
    return x.rechunk({1: -1}) if x.ndim == 2 and len(x.chunks[1]) > 1 else x


def _scheduler_chosen() -> bool:
    """Whether the user has chosen where dask computes (a scheduler in dask's config, or a
    distributed Client of their own): then float_scope leaves it be."""
    if dask.config.get("scheduler", None) is not None:
        return True
    client_module = sys.modules.get("distributed.client")
    get_client = getattr(client_module, "_get_global_client", None)
    return get_client is not None and get_client() is not None


def _quiet_float_errors() -> None:
    np.seterr(all="ignore")


def _env_rows() -> int | None:
    text = os.environ.get("XPTRAIN_DASK_CHUNK_ROWS", "").strip()
    if not text:
        return None
    try:
        rows = int(text)
    except ValueError:
        rows = 0
    if rows < 1:
        raise InvalidInput(f"XPTRAIN_DASK_CHUNK_ROWS must be a whole number ≥ 1, got {text!r}")
    return rows


def _flatten(tree: Any, leaves: list[Any]) -> None:
    if isinstance(tree, (tuple, list)):
        for item in tree:
            _flatten(item, leaves)
    else:
        leaves.append(tree)


def _unflatten(tree: Any, leaves: Iterator[Any]) -> Any:
    if isinstance(tree, (tuple, list)):
        return type(tree)(_unflatten(item, leaves) for item in tree)
    return next(leaves)
