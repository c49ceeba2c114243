"""JAX on CPU and GPU: jax.jit and jax.grad, x64 turned on when float64 is asked for."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .base import Backend


class JaxBackend(Backend):
    """JAX: its CPU device and every GPU it sees."""

    name = "jax"
    xp = jnp
    has_jit = True
    has_autodiff = True
    float64 = "yes (x64 during the run)"

    @property
    def version(self) -> str:
        return jax.__version__

    def versions(self) -> dict[str, str]:
        import jaxlib

        return {"jax": jax.__version__, "jaxlib": jaxlib.__version__}

    def devices(self) -> list[str]:
        # JAX's default device first: the GPU where there is one, as JAX users expect.
        names = [_canonical(d) for d in jax.devices()]
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

    def to_numpy(self, x: Any) -> np.ndarray:
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
        return jax.value_and_grad(fn)

    def fold(self, body: Callable[[Any, Any], Any], init: Any, count: int) -> Any:
        # One loop in the compiled program, not `count` unrolled copies of the body (eager
        # callers get the same loop, run op by op).
        return jax.lax.fori_loop(0, count, body, init)

    has_scan = True

    def scan(self, fn: Callable[[Any], tuple[Any, Any]], carry: Any, length: int) -> Any:
        return jax.lax.scan(lambda c, _: fn(c), carry, None, length=length)


def _enable_x64(on: bool) -> contextlib.AbstractContextManager:
    scope = getattr(jax, "enable_x64", None)
    if scope is None:  # JAX < 0.7
        from jax.experimental import enable_x64 as scope
    return scope(on)


def _canonical(device: Any) -> str:
    if device.platform == "cpu":
        return "cpu"
    return f"cuda:{device.id}"
