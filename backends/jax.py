"""JAX on CPU and GPU: jax.jit and jax.grad, x64 turned on when float64 is asked for."""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from xptrain.errors import BackendUnavailable, XptrainError

from .base import Backend, Capabilities, Group, launcher_env

CACHE_BYTES = 256 << 20  # the persistent compilation cache's limit on disk (a whole check: 7 MB)


class JaxBackend(Backend):
    """JAX: its CPU device and every GPU it sees."""

    name = "jax"
    xp = jnp
    # shard_map called eagerly traces and compiles the step anew on every call (2.7 s an
    # epoch at N = 1001, measured): a data-parallel JAX run is compiled, and says so
    caps = Capabilities(
        jit=True,
        autodiff=True,
        scan=True,
        spreads=("devices", "processes"),
        replicas_jit_only=True,
        process_group=True,
        float64="yes (x64 during the run)",
        matvec_sums=True,  # XLA's CPU dot of a one-column operand: 1.25x slower (idle)
    )

    @property
    def version(self) -> str:
        return jax.__version__

    def keep_compiled(self, folder: Path | None) -> str | None:
        """JAX's persistent compilation cache in ``folder``: every compilation kept, eager
        JAX's one per operation and shape too (~30 ms each, most of an eager check's time), at
        most :data:`CACHE_BYTES` (least recently used out first, under a file lock, so the
        processes of one check share it safely)."""
        if folder is None:
            jax.config.update("jax_compilation_cache_dir", None)
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # trusted: code runs from it
        except OSError as err:  # a read-only home: the check runs, compiling everything anew
            return f"jax compilation cache not kept ({err.strerror}: {folder})"
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        jax.config.update("jax_compilation_cache_max_size", CACHE_BYTES)
        return f"jax compilation cache {folder}"

    def versions(self) -> dict[str, str]:
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def devices(self) -> list[str]:
        # JAX's default device first: the GPU where there is one, as JAX users expect.
        # several CPU devices (XLA_FLAGS, or one per process after jax.distributed) are "cpu"
        names = list(dict.fromkeys(_canonical(d) for d in jax.devices()))
        if "cpu" not in names:
            names += ["cpu"]
        return names

    def native_device(self, name: str) -> Any:
        if name == "cpu":
            return jax.devices("cpu")[0]
        return jax.devices("gpu")[int(name.split(":")[1])]

    def device_name(self, name: str) -> str:
        if name == "cpu":
            return super().device_name(name)
        return self.native_device(name).device_kind

    def asarray(self, a: np.ndarray, dtype: str, device: Any) -> Any:
        # One copy, not two: jnp.asarray(a, device=d) puts a on the default device, then
        # copies it again to d (2 × X at the peak, measured). A host array already in dtype
        # goes by device_put; on the CPU that aliases a 64-byte-aligned buffer instead of
        # copying it (XLA's own copy runs at a fraction of memcpy's speed), so an unaligned
        # one is first copied, once, into an aligned buffer that no one else holds.
        if isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype):
            if device.platform == "cpu" and a.ctypes.data % _ALIGN:
                a = _aligned_copy(a)
            x = jax.device_put(a, device)
            if x.dtype != a.dtype:  # float64 without x64: refused, as Backend.asarray does
                raise BackendUnavailable(f"{self.name} made {x.dtype} when {dtype} was asked for")
            return x
        with jax.default_device(device):
            return super().asarray(a, dtype, None)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)  # replicated over processes: this process's copy
        return np.asarray(jax.device_get(x))

    def sync(self, x: Any) -> None:
        jax.block_until_ready(x)

    def precision(self, dtype: str) -> dict[str, Any]:
        return {
            "dtype": dtype,
            "jax_enable_x64": bool(jax.config.jax_enable_x64),
            "default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        }

    @contextlib.contextmanager
    def float_scope(self, dtype: str) -> Iterator[None]:
        # Without x64 JAX silently makes float32: float64 asked for turns it on, for this run
        # only. JAX's default float32 matmul on GPU is reduced precision (TF32): use "highest".
        x64 = dtype == "float64" or bool(jax.config.jax_enable_x64)
        with _enable_x64(x64), jax.default_matmul_precision("highest"):
            yield

    def jit(self, fn: Callable) -> Callable:
        return jax.jit(fn)

    def value_and_grad(self, fn: Callable) -> Callable:
        return jax.value_and_grad(fn, has_aux=True)

    def fold(self, body: Callable[[Any, Any], Any], init: Any, count: int) -> Any:
        # One loop in the compiled program, not `count` unrolled copies of the body (eager
        # callers get the same loop, run op by op).
        return jax.lax.fori_loop(0, count, body, init)

    def scan(self, fn: Callable[[Any], tuple[Any, Any]], carry: Any, length: int) -> Any:
        return jax.lax.scan(lambda c, _: fn(c), carry, None, length=length)

    def replicas(self, devices: int, distributed: bool, device: str) -> JaxReplicas:
        """The first ``devices`` devices of ``device``'s kind in this process (in every
        process with ``distributed``), as one mesh; the device's index is not used."""
        if "check_vma" not in inspect.signature(getattr(jax, "shard_map", _absent)).parameters:
            raise BackendUnavailable(
                f"data-parallel JAX needs jax.shard_map with check_vma (a recent JAX); this is "
                f"jax {jax.__version__}: pip install -U jax"
            )
        return _replicas(devices, distributed, "cpu" if device == "cpu" else "gpu")


@functools.lru_cache(maxsize=16)  # one mesh per layout: compiled steps are reused
def _replicas(devices: int, distributed: bool, platform: str) -> JaxReplicas:
    """``devices`` of ``platform`` in this process, or in every process with ``distributed``."""
    chosen = []
    processes = range(jax.process_count()) if distributed else [jax.process_index()]
    for process in processes:
        present = [d for d in jax.devices(platform) if d.process_index == process]
        if len(present) < devices:
            hint = (
                f"; start it with XLA_FLAGS=--xla_force_host_platform_device_count={devices}"
                " for that many CPU devices"
                if platform == "cpu"
                else ""
            )
            raise BackendUnavailable(
                f"--data-parallel {devices}: JAX process {process} sees {len(present)} "
                f"{platform} device(s){hint}"
            )
        chosen += present[:devices]
    return JaxReplicas(tuple(chosen))


class JaxReplicas:
    """Rows sharded over a one-axis mesh of devices (of every process, after
    ``jax.distributed.initialize``); the step runs under ``shard_map`` and adds the replicas'
    sums with ``psum``. Shards must be equal, so the rows are padded (see xptrain.parallel)."""

    even = True
    axis = "rows"

    def __init__(self, devices: tuple[Any, ...]) -> None:
        # devices in process order: process p's rows are one contiguous stretch
        self.mesh = Mesh(np.array(devices, dtype=object), (self.axis,))
        self.count = len(devices)
        mine = [i for i, d in enumerate(devices) if d.process_index == jax.process_index()]
        self.here, self._first = len(mine), mine[0]
        self._spread = NamedSharding(self.mesh, P(self.axis))
        self._whole = NamedSharding(self.mesh, P())

    def rows(self, n: int) -> tuple[int, int]:
        per = n // self.count
        return self._first * per, (self._first + self.here) * per

    def put(self, a: np.ndarray, dtype: str, *, shard: bool) -> Any:
        host = np.asarray(a, dtype=dtype)
        if shard:
            sharding, shape = self._spread, (len(host) * self.count // self.here, *host.shape[1:])
        else:
            sharding, shape = self._whole, host.shape
        x = jax.make_array_from_process_local_data(sharding, host, shape)
        if x.dtype != host.dtype:
            raise BackendUnavailable(f"jax made {x.dtype} when {dtype} was asked for")
        return x

    def reduce(self, tree: tuple) -> tuple:
        return jax.lax.psum(tree, self.axis)

    def wrap(self, step: Callable) -> Callable:
        spread, whole = P(self.axis), P()
        # check_vma off: each replica differentiates its own sums and one explicit psum adds
        # them; with it, autodiff of the replicated parameters would psum the gradients
        # itself (the transpose of their broadcast) and the explicit psum count them twice.
        return jax.shard_map(
            step,
            mesh=self.mesh,
            in_specs=(whole, spread, spread),
            out_specs=(whole, whole),
            check_vma=False,
        )

    def record(self) -> dict[str, Any]:
        return {
            "engine": "jax.shard_map",
            "replicas": self.count,
            "processes": len({d.process_index for d in self.mesh.devices.flat}),
            "devices": [str(d) for d in self.mesh.devices.flat],
        }


@contextlib.contextmanager
def process_group(timeout: float) -> Iterator[Group]:
    """Join the processes a launcher started (``jax.distributed.initialize`` from the
    launcher's RANK, WORLD_SIZE and MASTER_ADDR, its coordinator on port MASTER_PORT + 1;
    without them JAX's own detection: SLURM, Open MPI, TPU pods), for at most ``timeout``
    seconds; leave it after. ``timeout`` also bounds JAX's heartbeat (a peer silent that long
    is lost) and the shutdown. A process whose peers do not join, or are lost, is ended by JAX
    itself (exit code 134, "DEADLINE_EXCEEDED" or a lost task): that cannot be caught, but it
    does not hang."""
    env = launcher_env()
    args = {}
    if env is not None:  # MASTER_PORT itself is torchrun's rendezvous store, under torchrun
        args = {
            "coordinator_address": f"{env.address}:{env.port + 1}",
            "num_processes": env.size,
            "process_id": env.rank,
        }
        if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:  # torchrun: a GPU per process
            args["local_device_ids"] = [int(os.environ.get("LOCAL_RANK", "0"))]
    seconds = max(1, round(timeout))
    try:
        jax.distributed.initialize(
            **args,
            initialization_timeout=seconds,
            heartbeat_timeout_seconds=seconds,
            shutdown_timeout_seconds=seconds,
        )
    except (RuntimeError, ValueError) as err:
        hint = (
            "; run it under torchrun, or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
            if env is None
            else ""
        )
        raise BackendUnavailable(
            f"--distributed: JAX could not join its processes: "
            f"{str(err).splitlines()[0].rstrip('.')}{hint}"
        ) from None
    try:
        yield Group(jax.process_index(), jax.process_count())
    except XptrainError:
        raise
    except RuntimeError as err:  # a collective that failed (XlaRuntimeError)
        raise BackendUnavailable(
            f"--distributed: process {jax.process_index()} stopped: {str(err).splitlines()[0]}"
        ) from None
    finally:
        jax.distributed.shutdown()


def _absent() -> None:
    """Stands in for a JAX function this version lacks."""


def _enable_x64(on: bool) -> contextlib.AbstractContextManager:
    scope = getattr(jax, "enable_x64", None)
    if scope is None:  # JAX < 0.7
        from jax.experimental import enable_x64 as scope
    return scope(on)


_ALIGN = 64  # the alignment XLA's CPU client needs to use a host buffer as it is


def _aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` in a buffer aligned to :data:`_ALIGN` bytes, copied about
    a MiB at a time: one memcpy of the whole array between buffers aligned differently ran
    4 times slower than a copy into a fresh array (243 against 57 ms for 256 MiB, measured),
    a MiB at a time 89 ms."""
    raw = np.empty(a.nbytes + _ALIGN, dtype=np.uint8)
    start = -raw.ctypes.data % _ALIGN
    out = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    if a.ndim == 0:
        np.copyto(out, a)
        return out
    rows = max(1, (1 << 20) // max(1, a[:1].nbytes))
    for i in range(0, len(a), rows):
        np.copyto(out[i : i + rows], a[i : i + rows])
    return out


def _canonical(device: Any) -> str:
    if device.platform == "cpu":
        return "cpu"
    return f"cuda:{device.id}"
