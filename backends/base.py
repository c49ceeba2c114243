"""The Backend interface and its generic Array API implementation.

A backend is what core needs to know about one array library: its namespace, its devices, how to
move host NumPy arrays in and results out, how to wait for queued work, and its optional powers
(``jit``, ``value_and_grad``, ``fold``). Everything framework-specific lives in the subclasses,
one module per library.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xptrain.errors import BackendUnavailable, InvalidInput, OptionError

DTYPES = ("float64", "float32")
_DEVICE_RE = re.compile(r"^(cpu|cuda|gpu)(?::(\d+))?$")


def itemsize(dtype: str) -> int:
    """Bytes per number of a dtype name (``float64``: 8)."""
    return np.dtype(dtype).itemsize


def canonical_device(spec: str) -> str:
    """Normalise a user's device: ``cpu``, ``cuda``/``gpu`` (first GPU) or ``cuda:N``."""
    match = _DEVICE_RE.match(spec.strip().lower())
    if match is None:
        raise InvalidInput(f"unknown device {spec!r}: use cpu, cuda (alias gpu) or cuda:N")
    kind, index = match.groups()
    if kind == "cpu":
        if index not in (None, "0"):
            raise InvalidInput(f"unknown device {spec!r}: there is one cpu device, 'cpu'")
        return "cpu"
    return f"cuda:{int(index or 0)}"


def device_filter(specs: Sequence[str] | None) -> Callable[[str], bool]:
    """A test for canonical device names: kept if ``specs`` is empty, or names it (``cpu``,
    ``cuda:N``), or says ``cuda``/``gpu`` and it is a CUDA device."""
    if not specs:
        return lambda device: True
    # "default" is an own namespace's device (xptrain cannot place it): never filtered out.
    every_gpu = any(spec.strip().lower() in ("cuda", "gpu") for spec in specs)
    named = {
        canonical_device(spec) for spec in specs if spec.strip().lower() not in ("cuda", "gpu")
    }
    return lambda device: (
        device == "default" or device in named or (every_gpu and device.startswith("cuda"))
    )


# The Array API functions and dtypes core calls on a backend's namespace (tests/test_overhead.py
# checks core against this list): a library's own namespace that has all of them is used as it is.
CORE_NAMESPACE = (
    "abs", "argmax", "asarray", "astype", "concat", "exp", "expm1", "finfo", "full_like",
    "isfinite", "log", "log1p", "matmul", "matrix_transpose", "max", "maximum", "minimum",
    "reshape", "sqrt", "stack", "sum", "take", "tanh", "where", "zeros", "zeros_like",
    "float32", "float64", "int32",
)  # fmt: skip
ARRAY_API_VERSION = "2023.12"  # the standard's revision core is written against


def own_namespace(library: Any, compat: str) -> Any:
    """``library`` itself where it declares the Array API (``__array_api_version__`` at least
    :data:`ARRAY_API_VERSION`) and has every function core calls (NumPy ≥ 2.1); else the
    array-api-compat module ``compat`` (imported only then). A compliant library's own
    functions skip compat's per-call wrappers and checks: its namespace is the standard's."""
    declared = str(getattr(library, "__array_api_version__", ""))
    if declared >= ARRAY_API_VERSION and all(hasattr(library, f) for f in CORE_NAMESPACE):
        return library
    import importlib

    return importlib.import_module(compat)


def thread_info() -> dict[str, Any]:
    """CPU threads as the host libraries see them (BLAS/OpenMP pools, via threadpoolctl); a
    new dict each call (callers add their library's own counts)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {"cpu_count": os.cpu_count()}
    # Read once per process, and again only after an import (a library that loads its own
    # pool): threadpoolctl scans every loaded shared library, ~ms. The modules are counted
    # after the read, so the read's own imports do not make the next call read again.
    if _POOLS.get("modules") != len(sys.modules):
        pools = {}
        for pool in threadpool_info():
            name = f"{pool.get('internal_api')}:{os.path.basename(pool.get('filepath', ''))}"
            pools[name] = pool.get("num_threads")
        _POOLS.update(pools=pools, modules=len(sys.modules))
    return {"cpu_count": os.cpu_count(), **_POOLS["pools"]}


_POOLS: dict[str, Any] = {}  # the last read of the thread pools, and the modules loaded then


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond the Array API, declared once per backend class (readable
    without instantiating it, so without starting the library). Each power a flag turns on is a
    method of :class:`Backend` that the subclass overrides; the defaults refuse."""

    jit: bool = False  # jit(fn) compiles
    autodiff: bool = False  # value_and_grad(fn)
    # scan(fn, carry, length): a compiled loop, so a whole run is one call (JAX's lax.scan)
    scan: bool = False
    # arrays computed a chunk at a time by the library's own graph (Dask): the one-pass
    # gradient's blocks would only add overhead, so the full-batch step is used
    chunked: bool = False
    # how the library spreads a run's rows (replicas()): "devices" of one process, the
    # "processes" of a group, the "workers" of a cluster
    spreads: tuple[str, ...] = ()
    replicas_jit_only: bool = False  # a data-parallel step runs compiled only
    process_group: bool = False  # its module has process_group(timeout): torchrun groups
    scheduler: bool = False  # scheduler(address, timeout): compute on a cluster
    float64: str = "yes"  # how float64 is supported, for `xptrain backends`
    # under jit on the CPU, matrix-vector products as a multiply and a sum (xptrain.matvec)
    matvec_sums: bool = False


def python_fold(body: Callable[[Any, Any], Any], init: Any, count: int) -> Any:
    """The plain loop every backend can run: ``carry = body(i, carry)`` for i in range(count)."""
    carry = init
    for i in range(count):
        carry = body(i, carry)
    return carry


def in_turn(fn: Callable[[int], Any], count: int) -> list[Any]:
    """The plain ``spread``: ``[fn(0), ..., fn(count - 1)]``, one after another."""
    return [fn(i) for i in range(count)]


class Backend:
    """One array library as core sees it. Subclasses set ``name``, ``xp`` and ``caps`` and
    override what their library does differently; the defaults suit a CPU-only Array API
    library."""

    name: str = ""
    xp: Any = None
    caps: Capabilities = Capabilities()

    # -- identity ---------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """The array library's version."""
        return str(getattr(self.xp, "__version__", "unknown"))

    def versions(self) -> dict[str, str]:
        """Versions of the library (and its runtime pieces) this backend runs on."""
        return {self.name: self.version}

    # -- devices ----------------------------------------------------------------------------
    def devices(self) -> list[str]:
        """Canonical names of the devices present, the default first."""
        return ["cpu"]

    def resolve_device(self, spec: str | None = None) -> str:
        """Check ``spec`` against the devices present; its canonical name (None: the default)."""
        present = self.devices()
        name = present[0] if spec is None else canonical_device(spec)
        if name not in present:
            raise BackendUnavailable(
                f"{self.name} has no device {name!r} here; available: {', '.join(present)}"
            )
        return name

    def native_device(self, name: str) -> Any:
        """The library's device object for a canonical device name."""
        return name

    def device_name(self, name: str) -> str:
        """What the hardware behind a canonical device name is called (CPU model, GPU product)."""
        return cpu_name()

    def threads(self) -> dict[str, Any]:
        """The threads this library computes with on the CPU, for the record."""
        return thread_info()

    # -- data movement ----------------------------------------------------------------------
    def asarray(self, a: np.ndarray, dtype: str, device: Any) -> Any:
        """Copy a host array onto ``device`` as ``dtype``; refuse a silent change of dtype."""
        with warnings.catch_warnings():
            # e.g. JAX's "will be truncated" warning: the check below says it in one line
            warnings.simplefilter("ignore")
            x = self.xp.asarray(a, dtype=getattr(self.xp, dtype), device=device)
        if x.dtype != getattr(self.xp, dtype):
            raise BackendUnavailable(f"{self.name} made {x.dtype} when {dtype} was asked for")
        return x

    def to_numpy(self, x: Any) -> np.ndarray:
        """Bring an array of this backend back to the host."""
        return np.asarray(x)

    def sync(self, x: Any) -> None:
        """Wait until the work producing ``x`` has finished (no-op for eager CPU libraries)."""

    def settle(self, tree: Any) -> Any:
        """``tree`` (nested tuples/lists of arrays: an epoch's carry and loss) with every array
        made concrete, for a lazy library whose arrays would otherwise be graphs over every
        earlier epoch (Dask). The training loop calls it once per epoch; eager and compiled
        libraries return ``tree`` as it is."""
        return tree

    # -- precision --------------------------------------------------------------------------
    def precision(self, dtype: str) -> dict[str, Any]:
        """The settings that decide the numbers a run produces, for the record."""
        return {"dtype": dtype}

    @contextlib.contextmanager
    def float_scope(self, dtype: str) -> Iterator[None]:
        """The floating-point settings a run happens under, restored afterwards: full-precision
        matmuls (no TF32), and no warnings for inf/NaN, which the loop itself reports."""
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            yield

    def keep_compiled(self, folder: Path | None) -> str | None:
        """Keep the code this library compiles in ``folder`` for later processes (None: compile
        everything anew); what was set, for the record, or None for a library that compiles
        nothing or has no such cache."""
        return None

    # -- optional powers --------------------------------------------------------------------
    def jit(self, fn: Callable) -> Callable:
        """Compile ``fn``; backends without a compiler refuse."""
        raise OptionError(
            lambda s: (
                f"{self.name} has no jit compiler; use {s('backend', 'jax')} or torch, "
                f"or drop {s('jit', True)}"
            )
        )

    def value_and_grad(self, fn: Callable) -> Callable:
        """``fn(params, *args) -> (loss, aux)`` to ``(params, *args) -> ((loss, aux), grads)``
        (the gradients of the loss; ``aux`` rides along undifferentiated); or refuse."""
        raise OptionError(
            lambda s: (
                f"{self.name} has no automatic differentiation; use "
                f"{s('grad', 'analytic')}, or {s('backend', 'jax')} or torch"
            )
        )

    def fold(self, body: Callable[[Any, Any], Any], init: Any, count: int) -> Any:
        """``carry = body(i, carry)`` for ``i`` in ``0 .. count-1``; the last carry.

        The one loop primitive core needs (the blocked gradient's loop over row blocks). By
        default a Python loop, which is right for eager libraries; a tracing compiler overrides
        it with its own loop (JAX: ``lax.fori_loop``), else tracing would unroll ``count``
        copies of ``body`` into the compiled program. ``body`` must keep the carry's shapes and
        dtypes, and use ``i`` only to index (it may be a traced integer).
        """
        return python_fold(body, init, count)

    workers: int = 1  # independent pieces of work spread() runs at once

    def spread(self, fn: Callable[[int], Any], count: int) -> list[Any]:
        """``[fn(0), ..., fn(count - 1)]`` for independent pieces of work (the one-pass
        gradient's row groups). One after another by default; a CPU library that releases
        the GIL runs them on ``workers`` threads."""
        return in_turn(fn, count)

    def replicas(self, devices: int, distributed: bool, device: str) -> Any:
        """An :class:`xptrain.parallel.Replicas` spreading a run's rows over ``devices`` of
        this process (and, with ``distributed``, over every process of the joined group), on
        ``device``'s kind; or refuse."""
        raise OptionError(
            lambda s: (
                f"{self.name} has no data-parallel training here; use "
                f"{s('backend', 'jax')} ({s('data_parallel')}=N, {s('distributed', True)}) or "
                f"torch ({s('distributed', True)} under torchrun)"
            )
        )

    def scan(self, fn: Callable[[Any], tuple[Any, Any]], carry: Any, length: int) -> Any:
        """``length`` calls of ``fn(carry) -> (carry, output)`` as one compiled loop: the last
        carry and the outputs stacked (``caps.scan``); backends without one refuse."""
        raise InvalidInput(f"{self.name} has no compiled loop (scan)")

    @contextlib.contextmanager
    def scheduler(self, address: Any, timeout: float) -> Iterator[Any]:
        """Compute on the cluster at ``address`` inside (``caps.scheduler``); others refuse."""
        raise InvalidInput(
            f"{self.name} computes in this process; a scheduler address is for the dask backend"
        )
        yield


class Shared:
    """A context that overlapping users share: the first one in enters it, the last one out
    leaves it. For process-wide settings a run lowers for a while (BLAS or intra-op threads):
    two runs on threads must not leave the process at the lowered value, as a plain
    save-and-restore by each would when their spans interleave."""

    def __init__(self, make: Callable[[], contextlib.AbstractContextManager]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._users = 0
        self._entered: contextlib.AbstractContextManager | None = None

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                entered = self._make()
                entered.__enter__()
                self._entered = entered
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._entered is not None:
                    entered, self._entered = self._entered, None
                    entered.__exit__(None, None, None)


@dataclass(frozen=True)
class Group:
    """This process's place in a process group: its rank of ``size``."""

    rank: int
    size: int


@dataclass(frozen=True)
class LauncherEnv:
    """What a launcher (torchrun, or a script) tells each process: the coordinator's address
    and port, the group's size and this process's rank."""

    address: str
    port: int
    size: int
    rank: int


_LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")


def launcher_env() -> LauncherEnv | None:
    """torchrun's variables (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK), or None where none is
    set; some set, or a bad value, is refused in one line."""
    values = {name: os.environ.get(name) for name in _LAUNCHER_VARS}
    if all(v is None for v in values.values()):
        return None
    missing = [name for name, v in values.items() if not v]
    if missing:
        raise InvalidInput(f"--distributed: the launcher did not set {', '.join(missing)}")
    return _launcher(values)


def _launcher(values: dict[str, Any]) -> LauncherEnv:
    """The launcher's variables, every one set, checked."""
    try:
        port, size, rank = (int(values[k]) for k in ("MASTER_PORT", "WORLD_SIZE", "RANK"))
    except ValueError:
        raise InvalidInput(
            "--distributed: MASTER_PORT, WORLD_SIZE and RANK must be whole numbers, got "
            + ", ".join(f"{k}={values[k]}" for k in _LAUNCHER_VARS[1:])
        ) from None
    if not (0 < port < 65536 and size >= 1 and 0 <= rank < size):
        raise InvalidInput(
            f"--distributed: need 0 < MASTER_PORT < 65536 and 0 ≤ RANK < WORLD_SIZE, got "
            f"MASTER_PORT={port}, WORLD_SIZE={size}, RANK={rank}"
        )
    return LauncherEnv(values["MASTER_ADDR"], port, size, rank)


@functools.cache  # /proc/cpuinfo is read once per process
def cpu_name() -> str:
    """The host CPU's model name, for the record."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"
