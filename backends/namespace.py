"""Bring your own array library: any importable module that is an Array API namespace.

The library's default device is used (xptrain cannot know another library's devices), and it
gets no jit or autodiff: the core loop runs on its namespace as it is. This is how ``check``
tests a library xptrain has never heard of.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from xptrain.errors import BackendUnavailable, InvalidInput

from .base import Backend

# What the core loop calls on a namespace; a module without these is not one.
REQUIRED = ("asarray", "exp", "log", "matmul", "sum", "stack", "float64", "float32")


class NamespaceBackend(Backend):
    """An Array API namespace given by module name."""

    def __init__(self, module: str) -> None:
        try:
            xp = importlib.import_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # ImportError, or whatever the module raises as it loads,
            # sys.exit() included: a library's import must not end xptrain
            raise BackendUnavailable(
                f"cannot import array library {module!r}: {type(err).__name__}: {err}"
            ) from None
        missing = [attr for attr in REQUIRED if not hasattr(xp, attr)]
        if missing:
            raise InvalidInput(
                f"module {module!r} is not an Array API namespace (it lacks {', '.join(missing)})"
            )
        self.name = module
        self.xp: ModuleType = xp

    def devices(self) -> list[str]:
        """One device, the library's default: xptrain cannot know another library's devices."""
        return ["default"]

    def resolve_device(self, spec: str | None = None) -> str:
        """Only the default device (``default``, or ``cpu`` meaning the same) can be asked for."""
        if spec not in (None, "default", "cpu"):
            raise BackendUnavailable(
                f"{self.name} is not a built-in backend, so xptrain uses its default device; "
                f"drop --device {spec}"
            )
        return "default"

    def native_device(self, name: str) -> Any:
        """None: arrays are made on the library's default device."""
        return None

    def asarray(self, a: np.ndarray, dtype: str, device: Any) -> Any:
        """Cast on the host first: some libraries' asarray ignores ``dtype=`` for NumPy input
        (the built-in backends honour it, and are spared the extra host copy)."""
        return super().asarray(np.asarray(a, dtype=dtype), dtype, device)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Back to the host by what the Array API standard guarantees: DLPack (after
        ``to_device("cpu")`` if need be), else ``__array__``, else element by element through
        ``float()`` of 0-d arrays; never as an array of objects."""
        for bring in (_by_dlpack, _by_dlpack_on_cpu, _by_array_protocol, self._by_elements):
            try:
                host = bring(x)
            except Exception:  # this way does not work for this library: try the next
                continue
            if host is not None and host.dtype != object:
                return host
        raise BackendUnavailable(
            f"cannot bring {self.name}'s arrays to the host: neither DLPack, __array__ nor "
            "float() of their elements gives numbers"
        )

    def _by_elements(self, x: Any) -> np.ndarray:
        """Each element as a Python number (``x[i, j]``, a 0-d array, through ``float()``):
        slow, but all the standard promises."""
        host = np.empty(tuple(x.shape), dtype=self._host_dtype(x.dtype))
        number = {"f": float, "b": bool}.get(host.dtype.kind, int)
        for index in np.ndindex(host.shape):
            host[index] = number(x[index] if index else x)
        return host

    def _host_dtype(self, dtype: Any) -> np.dtype:
        """The NumPy dtype of one of the library's dtypes (which compare only with its own)."""
        for name in _HOST_DTYPES:
            if hasattr(self.xp, name) and dtype == getattr(self.xp, name):
                return np.dtype(name)
        raise TypeError(f"no host dtype for {dtype}")


_HOST_DTYPES = ("float64", "float32", "int64", "int32", "int16", "int8", "uint8", "bool")


def _by_dlpack(x: Any) -> np.ndarray:
    """Through DLPack, where the array is on the CPU."""
    return np.from_dlpack(x)


def _by_dlpack_on_cpu(x: Any) -> np.ndarray:
    """Through DLPack after the standard's ``to_device("cpu")``."""
    return np.from_dlpack(x.to_device("cpu"))


def _by_array_protocol(x: Any) -> np.ndarray | None:
    """Through ``__array__``, where the array has it (``np.asarray`` of any other object is
    a 0-d array holding it)."""
    return np.asarray(x) if hasattr(type(x), "__array__") else None
