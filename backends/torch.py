"""PyTorch on CPU and CUDA: torch.compile for jit, torch.func for autodiff, TF32 kept off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch

from .base import Backend, Shared

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
    has_jit = True
    has_autodiff = True

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

    def jit(self, fn: Callable) -> Callable:
        # Static shapes: a kernel compiled for one N. With dynamic shapes (torch's default after
        # a second shape) inductor passes the scalar 1/N to CUDA kernels as float32, and float64
        # runs come out off by up to 6e-8 — found by `xptrain check` on an H100 (torch 2.11).
        return torch.compile(fn, dynamic=False)

    def value_and_grad(self, fn: Callable) -> Callable:
        grad_and_value = torch.func.grad_and_value(fn)

        def value_and_grad(params: Any, *args: Any) -> tuple[Any, Any]:
            grads, value = grad_and_value(params, *args)
            return value, grads

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
