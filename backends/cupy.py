"""CuPy on NVIDIA GPUs. Refuses to run with CUPY_TF32=1, which would make float32 matmuls TF32."""

from __future__ import annotations

import os
from typing import Any

import array_api_compat.cupy as xp_cupy
import cupy
import numpy as np

from xptrain.errors import BackendUnavailable

from .base import Backend


class CupyBackend(Backend):
    """CuPy: every CUDA device it sees."""

    name = "cupy"
    xp = xp_cupy

    def __init__(self) -> None:
        if os.environ.get("CUPY_TF32", "0") != "0":
            raise BackendUnavailable(
                "CUPY_TF32 is set, so CuPy would run float32 matmuls in TF32; unset it"
            )
        if not self.devices():
            raise BackendUnavailable("cupy is installed but sees no CUDA device")

    @property
    def version(self) -> str:
        return cupy.__version__

    def versions(self) -> dict[str, str]:
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        return {"cupy": cupy.__version__, "cuda_runtime": str(runtime)}

    def devices(self) -> list[str]:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError:
            count = 0
        return [f"cuda:{i}" for i in range(count)]

    def native_device(self, name: str) -> Any:
        return cupy.cuda.Device(int(name.split(":")[1]))

    def device_name(self, name: str) -> str:
        props = cupy.cuda.runtime.getDeviceProperties(int(name.split(":")[1]))
        return props["name"].decode()

    def to_numpy(self, x: Any) -> np.ndarray:
        return cupy.asnumpy(x)

    def sync(self, x: Any) -> None:
        with x.device:
            cupy.cuda.get_current_stream().synchronize()

    def precision(self, dtype: str) -> dict[str, Any]:
        return {"dtype": dtype, "CUPY_TF32": os.environ.get("CUPY_TF32", "0")}
