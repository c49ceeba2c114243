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
import importlib.util
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError, ThreadPoolExecutor
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
POLL = 0.5  # seconds between looks at the cluster while waiting for its results


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
        self.watch: Watch | None = None  # what waits for the client's results, after connect()
        self._connected: contextlib.ExitStack | None = None  # what disconnect() undoes
        self._rows_for: dict[tuple[int, int], int] = {}  # (N, chunk_bytes) -> rows per chunk
        # whether an array made here had several row chunks: then settle() computes on the
        # pool's threads (speed only: either way the same tasks give the same bits)
        self._chunks_to_share = False

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
        key = (n, self.chunk_bytes)  # another chunk size set: chunked anew
        if key not in self._rows_for:
            if len(self._rows_for) > 64:
                self._rows_for.clear()
            self._rows_for[key] = max(1, min(n, self.chunk_bytes // max(1, row_bytes)))
        return self._rows_for[key]

    def asarray(self, a: Any, dtype: str, device: Any) -> Any:
        """A row-chunked dask array of ``dtype`` (columns in one chunk). A dask array (data on
        disk, or made lazily) stays lazy; a host array is split into chunks, and with a cluster
        connected it is sent to the workers once, here, not with every epoch's graph."""
        x = self._asarray(a, dtype)
        if x.ndim > 0 and x.numblocks[0] > 1:
            self._chunks_to_share = True
        return x

    def _asarray(self, a: Any, dtype: str) -> Any:
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
        try:
            futures = self.client.scatter(parts, hash=False)
        except TimeoutError:  # no worker came to take them
            raise self.watch.workerless() from None
        except OSError as err:  # the scheduler is gone
            raise self.watch.lost(err) from None
        return da.concatenate(
            [
                da.from_delayed(future, part.shape, dtype=part.dtype)
                for future, part in zip(futures, parts, strict=True)
            ],
            axis=0,
        )

    def to_numpy(self, x: Any) -> np.ndarray:
        if is_dask_array(x):
            x = x.compute() if self.watch is None else self.watch.result(self.client.compute(x))
        return np.asarray(x)

    def sync(self, x: Any) -> None:
        """Wait for the chunks of ``x`` a cluster is computing (a persisted array); the local
        schedulers compute synchronously, so there is nothing to wait for. A lazy ``x`` is not
        computed: :meth:`settle` does that, once per epoch."""
        if self.client is not None and is_dask_array(x):
            from distributed import futures_of

            futures = futures_of(x)
            if futures:
                self.watch.wait(futures)

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
        elif self._chunks_to_share:
            done = dask.persist(*(leaves[i] for i in lazy))
        else:  # one chunk: nothing for a pool's threads to share, nor for fusion to save; the
            # same tasks, computed in this thread (the synthetic problem's epochs 1.5x faster)
            done = dask.persist(*(leaves[i] for i in lazy), scheduler="sync", optimize_graph=False)
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
    def connect(self, address: Any, timeout: float = CONNECT_TIMEOUT) -> Any:
        """Compute on the dask.distributed scheduler at ``address`` (``tcp://host:port``, or a
        ``distributed.LocalCluster``) from now on; its Client. Fails within about ``timeout``
        seconds, never hangs: when the scheduler cannot be reached, or has no worker (and,
        later, when a wait for results loses the cluster: see :class:`Watch`)."""
        try:
            from distributed import Client
        except ImportError:
            raise BackendUnavailable(
                "--scheduler needs dask.distributed: pip install 'xptrain[dask]'"
            ) from None
        _check_timeout(timeout)
        shown = _checked_address(address)
        self.disconnect()
        connected = contextlib.ExitStack()  # undone by disconnect(), or a failure here
        connected.enter_context(_client_quiet())
        try:
            # not set_as_default: a Client that fails to start would leave dask's config
            # asking for a distributed scheduler that is not there
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            connected.close()
            raise BackendUnavailable(
                f"cannot reach the dask scheduler at {shown} ({err}); is it running, and is "
                "the address tcp://HOST:PORT?"
            ) from None
        connected.callback(_close, client, timeout)
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError):
            connected.close()
            raise BackendUnavailable(
                f"the dask scheduler at {shown} has no worker after {timeout:g} s; start "
                f"one with: dask worker {shown}"
            ) from None
        # dask's default scheduler till disconnect(), for every computation of this process
        connected.enter_context(dask.config.set(scheduler=client))
        self.client, self.watch, self._connected = client, Watch(client, shown, timeout), connected
        return client

    def disconnect(self) -> None:
        """Back to this process's threads; the cluster's client is closed."""
        connected, self._connected = self._connected, None
        self.client = self.watch = None
        if connected is not None:
            connected.close()

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


class Watch:
    """A connected cluster, watched while this process waits for its results: a wait ends in
    one line (:class:`BackendUnavailable`) when the scheduler stops answering, when it has had
    no worker for ``timeout`` seconds, when a worker has been silent that long (killed,
    stalled or cut off: the scheduler itself waits minutes, its worker-ttl, for such a worker)
    or when the run's data went with a lost worker."""

    def __init__(self, client: Any, address: str, timeout: float) -> None:
        self.client, self.address, self.timeout = client, address, timeout
        self._beats: dict[str, tuple[Any, float]] = {}  # worker: (last heartbeat, seen when)
        self._alone_since: float | None = None  # since when the scheduler has had no worker

    def result(self, future: Any) -> Any:
        """``future``'s result, the cluster looked at every :data:`POLL` seconds till then."""
        while True:
            try:
                return future.result(timeout=POLL)
            except TimeoutError:
                self.check()
            except CancelledError as err:  # its data, or the scheduler, was lost
                raise self.lost(err) from None

    def wait(self, futures: list[Any]) -> None:
        """Wait for ``futures`` to finish, the cluster looked at every :data:`POLL` seconds."""
        from distributed import wait

        while True:
            try:
                with self.client.as_current():
                    wait(futures, timeout=POLL)
                return
            except TimeoutError:
                self.check()

    def check(self) -> None:
        """Raise if the scheduler does not answer within the timeout, has had no worker for
        it, or has a worker whose heartbeat has not changed for it."""
        try:
            info = self.client.sync(
                self.client.scheduler.identity, n_workers=-1, callback_timeout=self.timeout
            )
        except OSError as err:  # TimeoutError included: a scheduler that does not answer
            raise self.lost(err) from None
        workers, now = info.get("workers", {}), time.monotonic()
        if not workers:
            self._alone_since = self._alone_since or now
            if now - self._alone_since >= self.timeout:
                raise BackendUnavailable(
                    f"the dask scheduler at {self.address} has had no worker for "
                    f"{self.timeout:g} s (lost mid-run); the run stops"
                )
            return
        self._alone_since = None
        silent = self._silent(workers, now)
        if silent is not None:
            raise BackendUnavailable(
                f"the dask worker {silent} of {self.address} has been silent for "
                f"{self.timeout:g} s (killed, stalled or cut off); the run stops"
            )

    def _silent(self, workers: dict[str, Any], now: float) -> str | None:
        """A worker whose last heartbeat (the scheduler's ``last_seen``) has not changed for
        the timeout, by this process's clock (the scheduler's may differ), or None. Big
        clusters beat less often: never less than four of their heartbeats."""
        from distributed.scheduler import heartbeat_interval

        patience = max(self.timeout, 4 * heartbeat_interval(len(workers)))
        for address, worker in workers.items():
            beat, since = self._beats.get(address, (None, now))
            if worker.get("last_seen") != beat:
                self._beats[address] = (worker.get("last_seen"), now)
            elif now - since >= patience:
                return address
        return None

    def lost(self, err: BaseException) -> BackendUnavailable:
        """The one-line error for a wait that the cluster ended with ``err``: a cancelled
        future while the scheduler is still there (its data went with a worker), or the
        scheduler gone or not answering."""
        if isinstance(err, CancelledError) and self.client.status == "running":
            return BackendUnavailable(
                f"the dask cluster at {self.address} lost this run's data mid-run (a worker "
                f"that held it was lost: {_reason(err)}); the run stops"
            )
        why = f"no answer in {self.timeout:g} s" if isinstance(err, TimeoutError) else _reason(err)
        return BackendUnavailable(
            f"lost the dask scheduler at {self.address} mid-run ({why}); is it still running?"
        )

    def workerless(self) -> BackendUnavailable:
        """The one-line error for data that found no worker to take it within the timeout."""
        return BackendUnavailable(
            f"the dask scheduler at {self.address} had no worker for this run's data within "
            f"{self.timeout:g} s; start one with: dask worker {self.address}"
        )


def _reason(err: BaseException) -> str:
    """Why a wait ended: a cancelled future's reason (``lost dependencies``), else the type."""
    return getattr(err, "reason", None) or type(err).__name__


def _check_timeout(timeout: Any) -> None:
    """A scheduler timeout is a finite number of seconds > 0 (dask cannot wait "inf")."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidInput(f"a dask scheduler timeout is a number of seconds, got {timeout!r}")
    if not 0 < timeout < math.inf:
        raise InvalidInput(
            f"a dask scheduler timeout is a finite number of seconds > 0, got {timeout!r}"
        )


_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # what a Client of another process reaches


def _checked_address(address: Any) -> str:
    """The address of a scheduler to connect to, as shown in messages; one that is malformed
    or that this process has no transport or certificates for is refused here, in one line,
    before any Client exists (a Client that fails to start spends seconds in noisy clean-up)."""
    if hasattr(address, "scheduler_address"):  # a LocalCluster
        return address.scheduler_address
    if not isinstance(address, str) or not address.strip():
        raise InvalidInput(f"a dask scheduler address is tcp://HOST:PORT, got {address!r}")
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in _SCHEMES:
            raise ValueError(f"unknown scheme {scheme}://; use one of {', '.join(_SCHEMES)}")
        if scheme != "ucx":
            parse_host_port(location)
    except ValueError as err:
        raise InvalidInput(f"bad dask scheduler address {address!r}: {err}") from None
    missing = _missing_for(scheme)
    if missing:
        raise BackendUnavailable(f"the dask scheduler address {address} needs {missing}")
    return address


def _missing_for(scheme: str) -> str | None:
    """What this process lacks to connect over ``scheme`` (None: nothing)."""
    if scheme in ("tls", "wss"):
        from distributed.security import Security

        if Security().get_connection_args("client").get("ssl_context") is None:
            return (
                "TLS certificates in dask's configuration (distributed.comm.tls.ca-file, "
                "distributed.comm.tls.client.cert and .key)"
            )
    if scheme == "ucx" and importlib.util.find_spec("distributed_ucxx") is None:
        return "distributed-ucxx: pip install distributed-ucxx"
    return None


def _close(client: Any, timeout: float) -> None:
    """Close ``client`` within about ``timeout`` seconds (its scheduler may be gone)."""
    with contextlib.suppress(OSError, TimeoutError):
        client.close(timeout=timeout)


# the loggers with levels of their own that a lost scheduler makes talk (distributed's config)
_NOISY = ("distributed", "distributed.client", "tornado.application")


@contextlib.contextmanager
def _client_quiet() -> Iterator[None]:
    """distributed logs a lost scheduler (closed comms, the client's reconnection, then its
    cancellation) as errors, tracebacks and all: quiet while xptrain's client is connected,
    whose wait says so in one line (:class:`Watch`)."""
    loggers = [logging.getLogger(name) for name in _NOISY]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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
