"""One watched call held against the reference: the same function evaluated on the very same
inputs, brought to the host, in higher precision (float64 for a float32 run; ``np.longdouble``
for a float64 run where NumPy has it), and the call's local error against what an operation of
its kind is expected to have.

Errors are in units of the run dtype's machine epsilon times the output's scale: ``|out −
ref| / (eps · scale)``. The scale is ``|ref|`` for an elementwise function, ``|a| + |b|`` for
an addition or subtraction (so cancellation is not blamed on the subtraction), ``Σ|terms|`` for
a sum and ``|A|·|B|`` for a matmul. A correctly rounded result is within 0.5; an n-term sum or
dot product is expected within √n (rounding errors grow like √n: the model of ``check``'s
tolerance, Higham & Mary 2019); a result computed in a lower precision is off by millions.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import array_api_compat.numpy as rxp
import numpy as np

from .recording import Call


def _names(words: str) -> frozenset[str]:
    return frozenset(words.split())


# moving, choosing and comparing: exactly the reference's result is expected
EXACT = _names(
    """getitem T mT reshape concat stack where take zeros_like ones_like zeros ones argmax argmin
    max min maximum minimum negative positive abs less less_equal greater greater_equal equal
    not_equal logical_and logical_or logical_xor logical_not broadcast_to expand_dims squeeze
    permute_dims matrix_transpose flip roll tile repeat isnan isinf isfinite sign clip
    astype"""
)
# one rounding of the exact result: within half an ulp
ROUNDED = _names("add subtract multiply divide sqrt square asarray full full_like")
# sums of n terms
REDUCTIONS = _names("sum mean matmul vecdot tensordot cumulative_sum")
# other elementwise functions (exp, log, tanh, ...): vectorised float32 versions promise a few
# ulps (NumPy documents up to 2.52 for exp and 3.83 for log), not correct rounding
FUNCTION_ULP = 4.0
_ADDITIVE = frozenset({"add", "subtract"})
_SPECIAL: dict[str, Callable] = {
    "getitem": operator.getitem,
    "T": lambda a: a.T,
    "mT": lambda a: rxp.matrix_transpose(a),
}


def reference_dtype(dtype: str) -> Any:
    """What a ``dtype`` run's calls are evaluated in: float64 for float32, else np.longdouble
    where it is wider than float64 (x86: 64-bit mantissa), else float64 (then float64 runs are
    held to a reference of their own precision: the report says so)."""
    if dtype != "float64":
        return np.float64
    wider = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps
    return np.longdouble if wider else np.float64


class Evaluator:
    """Evaluates watched calls of a ``dtype`` run on the library ``xp`` (its arrays brought
    back by ``to_host``) in the reference precision ``ref``."""

    def __init__(self, xp: Any, to_host: Callable[[Any], np.ndarray], ref: Any, dtype: str) -> None:
        self.xp, self.to_host, self.ref, self.dtype = xp, to_host, ref, dtype
        self._dtypes = _dtype_table(xp, ref)

    def host(self, value: Any) -> Any:
        """``value`` (an argument or output of a call) on the host: the library's arrays as
        NumPy arrays (floats in the reference precision), dtypes as NumPy's, and a Python
        float as the operation sees it: in the run's dtype (the standard's promotion)."""
        if isinstance(value, tuple | list):
            return type(value)(self.host(v) for v in value)
        if type(value) is float:  # not NumPy's float64 scalars: those are a library's outputs
            return float(np.asarray(value, dtype=self.dtype))
        dtype = self._dtype(value)
        if dtype is not None:
            return dtype
        if _is_array(value):
            host = np.asarray(self.to_host(value))
            return host.astype(self.ref) if host.dtype.kind == "f" else host
        return value

    def _dtype(self, value: Any) -> Any:
        if _is_array(value) and not isinstance(value, np.dtype):
            return None
        for library, host in self._dtypes:
            try:
                if value is library or bool(value == library):
                    return host
            except Exception:  # not comparable with a dtype: not one
                continue
        return None

    def reference(self, call: Call, args: tuple, kwargs: dict) -> Any:
        """The call's function evaluated by NumPy on the host arguments."""
        fn = _SPECIAL.get(call.op) or getattr(rxp, call.op)
        kwargs = {k: v for k, v in kwargs.items() if k != "device"}
        return fn(*args, **kwargs)


def _dtype_table(xp: Any, ref: Any) -> list[tuple[Any, Any]]:
    """(library dtype, host dtype) pairs: floats become the reference precision."""
    table = []
    for name in ("float64", "float32", "float16"):
        if getattr(xp, name, None) is not None:
            table.append((getattr(xp, name), np.dtype(ref)))
    for name in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
        if getattr(xp, name, None) is not None:
            table.append((getattr(xp, name), np.dtype(name)))
    return table


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type)


def local_error(call: Call, out: np.ndarray, ref: np.ndarray, args: tuple, dtype: str) -> float:
    """``max |out − ref| / (eps · scale)`` of a call in a ``dtype`` run (see the module doc);
    for a boolean or integer output 0 when it is the reference's, else inf."""
    out, ref = np.asarray(out), np.asarray(ref)
    if out.shape != ref.shape:
        return math.inf
    if out.dtype.kind not in "fc" or ref.dtype.kind not in "fc":
        return 0.0 if np.array_equal(out, ref) else math.inf
    if out.size == 0:
        return 0.0
    diff = np.abs(out.astype(ref.dtype) - ref)
    both_nan = np.isnan(out) & np.isnan(ref)
    same_inf = np.isinf(out) & (out.astype(ref.dtype) == ref)
    diff = np.where(both_nan | same_inf, 0, diff)
    eps, tiny = float(np.finfo(dtype).eps), float(np.finfo(dtype).tiny)
    scale = np.maximum(_scale(call, ref, args), tiny)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.where(diff == 0, 0, diff / (eps * scale))
    return float(np.nan_to_num(np.max(err).astype(np.float64), nan=math.inf))


def _scale(call: Call, ref: np.ndarray, args: tuple) -> Any:
    """The size a call's result is measured against (see the module doc)."""
    arrays = [np.abs(a) if isinstance(a, np.ndarray) else a for a in args]
    if call.op in _ADDITIVE and len(args) == 2:
        return np.abs(arrays[0]) + np.abs(arrays[1])
    if call.op in ("sum", "mean", "cumulative_sum") and isinstance(args[0], np.ndarray):
        return np.abs(getattr(rxp, call.op)(arrays[0], **_host_kwargs(call)))
    if call.op in ("matmul", "vecdot", "tensordot") and len(args) >= 2:
        return np.abs(getattr(rxp, call.op)(*arrays[:2], **_host_kwargs(call)))
    return np.abs(ref)


def _host_kwargs(call: Call) -> dict:
    return {k: v for k, v in call.kwargs.items() if k in ("axis", "keepdims", "axes")}


def expected_error(call: Call, args: tuple, out_size: int) -> float:
    """What an operation of the call's kind is expected to be off by (see the module doc)."""
    if call.op in EXACT:
        return 0.0
    if call.op in ROUNDED:
        return 0.5
    if call.op in REDUCTIONS:
        return max(1.0, math.sqrt(_terms(call, args, out_size)))
    return FUNCTION_ULP


def _terms(call: Call, args: tuple, out_size: int) -> int:
    """How many terms each output of a reduction adds."""
    first = args[0] if args and isinstance(args[0], np.ndarray) else None
    if first is None:
        return 1
    if call.op in ("matmul", "vecdot", "tensordot"):
        return int(first.shape[-1]) if first.ndim else 1
    return max(1, first.size // max(1, out_size))


def excess(error: float, expected: float) -> float:
    """How many times its expected error a call's error is (an exact operation: 0 or inf)."""
    if error == 0:
        return 0.0
    return error / expected if expected > 0 else math.inf


def carried_error(out: np.ndarray, ref: np.ndarray | None) -> float | None:
    """Normwise ``max |out − ref| / max |ref|`` of a call's output against the reference
    replay's (the absolute difference where the reference is 0); None without one."""
    if ref is None:
        return None
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return None
    if out.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = float(np.max(np.abs(out - ref)))
        scale = float(np.max(np.abs(ref)))
    if math.isnan(diff):
        return math.inf
    return diff / scale if scale > 0 else diff


def finite(value: Any) -> bool:
    """Whether every float in a host value (arrays, numbers, nested) is finite."""
    if isinstance(value, tuple | list):
        return all(finite(v) for v in value)
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return bool(np.isfinite(value).all())
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def known_op(name: str) -> bool:
    """Whether ``name`` is an operation the replay can watch (an Array API function or
    operator, by its standard name)."""
    return name in EXACT | ROUNDED | REDUCTIONS or callable(getattr(rxp, name, None))
