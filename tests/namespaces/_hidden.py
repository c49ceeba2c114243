"""Arrays that keep from the host what the Array API standard does not promise: each wraps an
array_api_strict array, with no ``__dlpack__`` and no ``__array__``; only ``float()`` of a 0-d
array and indexing are left to bring them back. ``namespace(cls)`` is a module ``__getattr__``
making array_api_strict's functions work on ``cls``'s arrays."""

from __future__ import annotations

from typing import Any

import array_api_strict as _xp
import numpy as np
from array_api_strict._array_object import Array as _Array

_OPERATORS = [
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "and",
    "or",
    "xor",
    "lshift",
    "rshift",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
]
_UNARY = ("__neg__", "__pos__", "__abs__", "__invert__", "__getitem__")


def _unwrap(value: Any) -> Any:
    if isinstance(value, Hidden):
        return value._a
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrapper(cls: type) -> Any:
    def wrap(value: Any) -> Any:
        if isinstance(value, _Array):
            return cls(value)
        if isinstance(value, tuple):
            return tuple(wrap(v) for v in value)
        return value

    return wrap


def _forward(name: str) -> Any:
    def method(self: Hidden, *args: Any) -> Any:
        return _wrapper(type(self))(getattr(self._a, name)(*_unwrap(args)))

    method.__name__ = name
    return method


class Hidden:
    """An array_api_strict array without the host protocols."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, a: Any) -> None:
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    device = property(lambda self: self._a.device)
    T = property(lambda self: type(self)(self._a.T))
    mT = property(lambda self: type(self)(self._a.mT))

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __index__(self) -> int:
        return self._a.__index__()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_unwrap(key)] = _unwrap(value)

    def to_device(self, device: Any, /, *, stream: Any = None) -> Hidden:
        return type(self)(self._a.to_device(device))


for _name in _OPERATORS:
    for _dunder in (f"__{_name}__", f"__r{_name}__"):
        if hasattr(_Array, _dunder):
            setattr(Hidden, _dunder, _forward(_dunder))
for _dunder in _UNARY:
    setattr(Hidden, _dunder, _forward(_dunder))


class WithArray(Hidden):
    """... that NumPy can still read through ``__array__`` (but not DLPack)."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(np.from_dlpack(self._a), dtype=dtype)


def namespace(cls: type) -> Any:
    """A module ``__getattr__``: array_api_strict's names, its functions taking and giving
    ``cls``'s arrays."""
    wrap = _wrapper(cls)

    def __getattr__(name: str) -> Any:
        attr = getattr(_xp, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def function(*args: Any, **kwargs: Any) -> Any:
            kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
            return wrap(attr(*_unwrap(args), **kwargs))

        return function

    return __getattr__
