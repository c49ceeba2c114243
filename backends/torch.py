"""PyTorch on CPU and CUDA: torch.compile for jit, torch.func for autodiff, TF32 kept off."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch

from .base import Backend


class TorchBackend(Backend):
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

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().cpu().numpy()

    def sync(self, x: Any) -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    def precision(self, dtype: str) -> dict[str, Any]:
        return {
            "dtype": dtype,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision,
            "default_dtype": str(torch.get_default_dtype()),
        }

    @contextlib.contextmanager
    def float_scope(self, dtype: str) -> Iterator[None]:
        # "highest": IEEE float32 matmuls, no TF32 on CUDA. The user's setting comes back after.
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(before)

    def jit(self, fn: Callable) -> Callable:
        return torch.compile(fn)

    def value_and_grad(self, fn: Callable) -> Callable:
        grad_and_value = torch.func.grad_and_value(fn)

        def value_and_grad(params: Any, *args: Any) -> tuple[Any, Any]:
            grads, value = grad_and_value(params, *args)
            return value, grads

        return value_and_grad
