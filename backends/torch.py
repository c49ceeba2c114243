"""PyTorch on CPU and CUDA: torch.compile for jit, torch.func for autodiff, TF32 kept off."""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.distributed as dist

from xptrain.errors import BackendUnavailable, InvalidInput, XptrainError

from .base import Backend, Capabilities, Group, LauncherEnv, Shared, launcher_env

# The matmul precision settings of torch >= 2.9 (empty on older torch, which has only the
# global float32_matmul_precision).
_MATMUL_KNOBS = {
    name: knob
    for name, knob in (
        ("cuda.matmul", getattr(torch.backends.cuda, "matmul", None)),
        ("mkldnn.matmul", getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)),
    )
    if knob is not None and hasattr(knob, "fp32_precision")
}


class TorchBackend(Backend):
    """PyTorch: CPU and every CUDA device torch sees."""

    name = "torch"
    xp = xp_torch
    caps = Capabilities(jit=True, autodiff=True, spreads=("processes",), process_group=True)

    @property
    def version(self) -> str:
        return torch.__version__

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "torch_cuda": str(torch.version.cuda)}

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def native_device(self, name: str) -> Any:
        return torch.device(name)

    def device_name(self, name: str) -> str:
        if name.startswith("cuda"):
            return torch.cuda.get_device_name(torch.device(name))
        return super().device_name(name)

    def threads(self) -> dict[str, Any]:
        return {
            **super().threads(),
            "torch_intra_op": torch.get_num_threads(),
            "torch_inter_op": torch.get_num_interop_threads(),
        }

    def asarray(self, a: np.ndarray, dtype: str, device: Any) -> Any:
        # On the CPU torch uses a C-contiguous NumPy array of the dtype as it is (no copy);
        # any other is cast by NumPy first, the one copy: torch's own cast of a NumPy array
        # ran about 10 times slower (6 ms for 2**18 float64 labels, measured).
        if device.type == "cpu" and isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a, dtype=np.dtype(dtype))
        return super().asarray(a, dtype, device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def sync(self, x: Any) -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    def precision(self, dtype: str) -> dict[str, Any]:
        settings = {"dtype": dtype, "default_dtype": str(torch.get_default_dtype())}
        if _MATMUL_KNOBS:
            settings.update(
                {
                    f"{name}.fp32_precision": knob.fp32_precision
                    for name, knob in _MATMUL_KNOBS.items()
                }
            )
        else:
            settings["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        return settings

    @contextlib.contextmanager
    def float_scope(self, dtype: str) -> Iterator[None]:
        with _matmul_precision(), _compile_limits():
            yield

    def keep_compiled(self, folder: Path | None) -> str | None:
        """torch.compile's own caches (inductor's compiled graphs, AOTAutograd's), in torch's
        folder, on as torch has them by default; off for None (every compile paid anew)."""
        try:  # torch's own modules, not its public API: a torch without them is left as it is
            import torch._functorch.config as functorch
            import torch._inductor.config as inductor
            from torch._inductor.runtime.cache_dir_utils import cache_dir
        except ImportError:
            return None
        inductor.fx_graph_cache = functorch.enable_autograd_cache = folder is not None
        return None if folder is None else f"torch.compile caches {cache_dir()}"

    def jit(self, fn: Callable) -> Callable:
        # Static shapes: a kernel compiled for one N. With dynamic shapes (torch's default after
        # a second shape) inductor passes the scalar 1/N to CUDA kernels as float32, and float64
        # runs come out off by up to 6e-8 — found by `xptrain check` on an H100 (torch 2.11).
        return torch.compile(fn, dynamic=False)

    def value_and_grad(self, fn: Callable) -> Callable:
        grad_and_value = torch.func.grad_and_value(fn, has_aux=True)

        def value_and_grad(params: Any, *args: Any) -> tuple[Any, Any]:
            grads, value_and_aux = grad_and_value(params, *args)
            return value_and_aux, grads

        return value_and_grad

    def fold(self, body: Callable[[Any, Any], Any], init: Any, count: int) -> Any:
        # The one-pass gradient's blocks are ~20 small operations each: on several intra-op
        # threads every one is a parallel region whose threads wait for each other, which
        # stalls badly when another process takes a core (1.1 s an epoch at N = 2**20 on 2
        # cores, against 26 ms on one thread). One thread for the loop over blocks.
        if torch.compiler.is_compiling():  # traced: the compiled kernels decide
            return super().fold(body, init, count)
        with _ONE_THREAD():
            return super().fold(body, init, count)

    def replicas(self, devices: int, distributed: bool, device: str) -> TorchReplicas:
        """One replica per rank of the joined torch.distributed group, on ``device`` (on
        GPUs: ``cuda:LOCAL_RANK``, each rank its own); more devices per process are refused."""
        if devices != 1 or not distributed:
            raise InvalidInput(
                "torch takes one device per process: run one process per device under "
                "torchrun with --distributed (not --data-parallel)"
            )
        if not (dist.is_available() and dist.is_initialized()):
            raise InvalidInput(
                "--distributed: no torch.distributed process group; run xptrain under torchrun "
                "(it joins the group), or call torch.distributed.init_process_group first"
            )
        if device.startswith("cuda"):  # each rank on its own GPU of the node
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', device.split(':')[1]))}"
        return _replicas(self, device, dist.get_world_size(), dist.get_rank())


@functools.lru_cache(maxsize=16)  # one per group and device: compiled steps are reused
def _replicas(backend: TorchBackend, device: str, size: int, rank: int) -> TorchReplicas:
    return TorchReplicas(backend, torch.device(device), size, rank)


class TorchReplicas:
    """One replica per rank of the torch.distributed group: rank r holds rows
    ``r·N/size .. (r+1)·N/size`` (uneven where N does not divide), and one ``all_reduce`` per
    epoch adds the loss and gradient sums, flattened into one buffer. A functional collective,
    so torch.compile traces it into the compiled step."""

    even = False
    here = 1

    def __init__(self, backend: TorchBackend, device: torch.device, size: int, rank: int) -> None:
        self._backend, self.device = backend, device
        self.count, self.rank = size, rank
        if device.type == "cuda":  # NCCL's collectives run on the current device
            torch.cuda.set_device(device)

    def rows(self, n: int) -> tuple[int, int]:
        return self.rank * n // self.count, (self.rank + 1) * n // self.count

    def put(self, a: np.ndarray, dtype: str, *, shard: bool) -> Any:
        return self._backend.asarray(a, dtype, self.device)

    def reduce(self, tree: tuple) -> tuple:
        from torch.distributed import _functional_collectives as funcol

        total, sums = tree  # the metric sums (a vector) and the gradient sums: one all_reduce
        flat = torch.cat([total.reshape(-1), *(s.reshape(-1) for s in sums)])
        flat = funcol.wait_tensor(funcol.all_reduce(flat, "sum", dist.group.WORLD))
        parts = torch.split(flat, [total.numel(), *(s.numel() for s in sums)])
        return parts[0].reshape(total.shape), tuple(
            p.reshape(s.shape) for p, s in zip(parts[1:], sums, strict=True)
        )

    def wrap(self, step: Callable) -> Callable:
        return step

    def record(self) -> dict[str, Any]:
        return {
            "engine": "torch.distributed",
            "replicas": self.count,
            "processes": self.count,
            "process_group": str(dist.get_backend()),
            "device": str(self.device),  # rank 0's (each rank: cuda:LOCAL_RANK on GPUs)
        }


@contextlib.contextmanager
def process_group(timeout: float) -> Iterator[Group]:
    """Join the group torchrun started (gloo on the CPU; NCCL for CUDA tensors where CUDA is
    present), waiting at most ``timeout`` seconds for the other ranks, at start-up and at every
    collective after; leave it after. Joining fails within the timeout, in one line: a master
    that cannot be reached, a rank that does not come, ranks that disagree on WORLD_SIZE
    (torch's own rendezvous took five times the timeout for that); what torch's C++ prints
    meanwhile (warnings, stack frames) goes to a debug log that the error names."""
    env = launcher_env()
    if env is None:
        raise InvalidInput(
            "--distributed needs the launcher's RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT: "
            "run it under torchrun (e.g. torchrun --nproc_per_node 2 -m xptrain train ...)"
        )
    _join(env, timeout)
    try:
        yield Group(env.rank, env.size)
        # every rank done with every collective before any tears its connections down (a rank
        # that left first made a peer abort in gloo's teardown, now and then, here)
        dist.barrier()
    except XptrainError:  # xptrain's own errors (RuntimeErrors too) say what they are
        raise
    except RuntimeError as err:  # gloo/NCCL: a peer that died, or one past the timeout
        raise BackendUnavailable(
            f"--distributed: rank {env.rank} stopped (a lost or stalled rank shows here as a "
            f"failed collective; timeout {timeout:g} s): {str(err).splitlines()[0]}"
        ) from None
    finally:
        dist.destroy_process_group()


def _join(env: LauncherEnv, timeout: float) -> None:
    """``init_process_group`` on a store of our own rendezvous: reached, and agreed on the
    group's size by every rank, within ``timeout`` seconds."""
    engine = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    deadline = time.monotonic() + timeout
    with _native_log(env.rank) as log:
        try:
            store = _rendezvous(env, deadline, timeout)
            store.set_timeout(datetime.timedelta(seconds=timeout))  # every collective's
            dist.init_process_group(
                engine,
                store=dist.PrefixStore("default_pg", store),  # as torch's own rendezvous does
                timeout=datetime.timedelta(seconds=timeout),
                rank=env.rank,
                world_size=env.size,
            )
        except XptrainError as err:  # ours say what happened
            raise BackendUnavailable(f"{err}{log.named()}") from None
        except (RuntimeError, ValueError) as err:  # DistStoreError is a RuntimeError
            raise BackendUnavailable(
                f"--distributed: rank {env.rank} could not join {env.address}:{env.port} within "
                f"{timeout:g} s: {_first_line(err)}{log.named()}"
            ) from None


def _rendezvous(env: LauncherEnv, deadline: float, timeout: float) -> Any:
    """torch's env:// store (rank 0 hosts it, or torchrun's agent does), once every rank of
    WORLD_SIZE has said it counts the same WORLD_SIZE."""
    if env.rank != 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        _reach(env, deadline, timeout)  # torch's client retries past its timeout, in C++
    store, _, _ = next(
        dist.rendezvous("env://", env.rank, env.size, timeout=_left(deadline)),
    )
    _agree_on_size(store, env, deadline)
    return store


def _reach(env: LauncherEnv, deadline: float, timeout: float) -> None:
    """Wait till the master's port takes connections; past ``deadline``, one line."""
    while True:
        try:
            with socket.create_connection((env.address, env.port), timeout=1.0):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise BackendUnavailable(
                    f"--distributed: rank {env.rank} could not reach the master at "
                    f"{env.address}:{env.port} within {timeout:g} s: "
                    f"{err.strerror or err}; is rank 0 running, at MASTER_ADDR:MASTER_PORT?"
                ) from None
            time.sleep(0.2)


def _agree_on_size(store: Any, env: LauncherEnv, deadline: float) -> None:
    """Every rank of ``env.size`` has written its WORLD_SIZE to ``store``, all the same, before
    ``deadline``; a rank told another size is refused at once, on both sides."""
    prefix = f"xptrain/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/size/"
    store.set(f"{prefix}{env.rank}", str(env.size))
    store.set_timeout(_left(deadline))
    # the master's first, in one round trip (get waits for it); said read, so the master (whose
    # process holds the store) stays till every rank has read it
    master = int(store.get(f"{prefix}0"))
    store.set(f"{prefix}read/{env.rank}", "1")
    _same_size(env, {0: master})
    keys = [f"{prefix}{rank}" for rank in range(env.size)]
    try:
        store.wait(keys, _left(deadline))
    except RuntimeError:
        missing = [str(rank) for rank, key in enumerate(keys) if not store.check([key])]
        raise BackendUnavailable(
            f"--distributed: rank {', '.join(missing)} of WORLD_SIZE {env.size} did not "
            f"come before the timeout"
        ) from None
    sizes = {rank: int(store.get(key)) for rank, key in enumerate(keys)}
    try:
        _same_size(env, sizes)
    except BackendUnavailable:
        if env.rank == 0:  # the others read the master's size before its store goes
            _wait_quietly(store, [f"{prefix}read/{rank}" for rank in sizes], deadline)
        raise


def _wait_quietly(store: Any, keys: list[str], deadline: float) -> None:
    """Wait (at most 2 s, and not past ``deadline``) for ``keys``; no error if they never come."""
    wait = min(2.0, max(0.1, deadline - time.monotonic()))
    with contextlib.suppress(RuntimeError):
        store.wait(keys, datetime.timedelta(seconds=wait))


def _same_size(env: LauncherEnv, sizes: dict[int, int]) -> None:
    """Refuse ``sizes`` (rank: its WORLD_SIZE) that are not all this rank's."""
    other = {rank: size for rank, size in sizes.items() if size != env.size}
    if other:
        said = ", ".join(f"rank {rank} has {size}" for rank, size in other.items())
        raise BackendUnavailable(
            f"--distributed: the ranks disagree on WORLD_SIZE: rank {env.rank} has "
            f"{env.size}, {said}; start every rank with the same WORLD_SIZE"
        )


def _left(deadline: float) -> datetime.timedelta:
    """The time left till ``deadline`` (at least a tenth of a second), as torch takes it."""
    return datetime.timedelta(seconds=max(0.1, deadline - time.monotonic()))


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class _Log:
    """A file that takes what torch's C++ prints (on fd 2) while a group is joined."""

    def __init__(self, rank: int) -> None:
        handle, name = tempfile.mkstemp(prefix=f"xptrain-rank{rank}-", suffix=".log")
        os.close(handle)
        self.path = Path(name)

    def named(self) -> str:
        """`` (torch's log: PATH)`` when torch has written to it, else nothing."""
        return f" (torch's log: {self.path})" if self.path.stat().st_size else ""


@contextlib.contextmanager
def _native_log(rank: int) -> Iterator[_Log]:
    """fd 2 (where torch's C++ logs, stack frames and all) into a :class:`_Log` inside; after,
    what came is passed on to stderr when all went well, and kept in the file for a failure
    that names it."""
    log = _Log(rank)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with log.path.open("wb") as sink:
            os.dup2(sink.fileno(), 2)
        yield log
    except BaseException:
        _restore(saved)
        if not log.path.stat().st_size:
            log.path.unlink()
        raise
    _restore(saved)
    sys.stderr.write(log.path.read_text(errors="replace"))
    log.path.unlink()


def _restore(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


def readable_here(x: torch.Tensor) -> bool:
    """An eager CPU tensor, outside torch.compile's tracing and torch.func's transforms: its
    values are in this process's memory, read without waiting for any queue."""
    if x.device.type != "cpu" or torch.compiler.is_compiling():
        return False
    # a private function: where a torch lacks it, no tensor is read (the branch-free path)
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return wrapped is not None and not wrapped(x)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_ONE_THREAD = Shared(lambda: _threads(1))  # shared by runs on threads: the last one restores


@contextlib.contextmanager
def _matmul_precision() -> Iterator[None]:
    """IEEE float32 matmuls: no TF32 on CUDA, no bf16 on CPU; the user's settings come back
    after. torch >= 2.9 has per-backend knobs and refuses a mix with the legacy call."""
    if not _MATMUL_KNOBS:
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)
        return
    saved = {name: knob.fp32_precision for name, knob in _MATMUL_KNOBS.items()}
    try:
        for knob in _MATMUL_KNOBS.values():
            knob.fp32_precision = "ieee"
        yield
    finally:
        for name, knob in _MATMUL_KNOBS.items():
            knob.fp32_precision = saved[name]


@contextlib.contextmanager
def _compile_limits() -> Iterator[None]:
    """Every configuration recompiles the one step function (another dtype or shape), and past
    dynamo's limit (8) torch silently runs eager instead: a limit that fits xptrain's sweeps,
    and an error, never a silent fallback, if it is reached anyway. Restored after."""
    config = torch._dynamo.config
    wanted = {"recompile_limit": 256, "fail_on_recompile_limit_hit": True}
    saved = {name: getattr(config, name) for name in wanted if hasattr(config, name)}
    try:
        for name in saved:
            setattr(config, name, wanted[name])
        yield
    finally:
        for name, value in saved.items():
            setattr(config, name, value)
