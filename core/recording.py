"""Watching every Array API call a step makes: a namespace whose functions, and the arrays they
return, tell a listener each call's name, call site, inputs and output.

``Recorder(xp, listen)`` stands for the namespace ``xp``; arrays made through it are
:class:`Watched`, so Python operators (``a * b``, ``X @ W``, ``-z``, ``a[i]``) are seen too,
under their standard names (``multiply``, ``matmul``, ``negative``, ``getitem``). The wrapper
needs nothing but the namespace: it works on any Array API library.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_HERE = str(Path(__file__).resolve())
# (dunder, standard name, swapped): the operators, named as the Array API names the function
_BINARY = [
    ("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "divide"),
    ("matmul", "matmul"), ("pow", "pow"), ("floordiv", "floor_divide"), ("mod", "remainder"),
    ("and", "logical_and"), ("or", "logical_or"), ("xor", "logical_xor"),
]  # fmt: skip
_COMPARE = [
    ("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
    ("eq", "equal"), ("ne", "not_equal"),
]  # fmt: skip
_UNARY = [("neg", "negative"), ("pos", "positive"), ("abs", "abs"), ("invert", "logical_not")]
# attributes read straight through (no call to watch)
_PLAIN = {"shape", "dtype", "ndim", "size", "device"}


@dataclass(frozen=True)
class Call:
    """One watched call: the standard name, where in the code it was made, its arguments
    (arrays unwrapped: the library's own) and its output (likewise)."""

    op: str
    site: str
    args: tuple
    kwargs: dict
    out: Any


Listener = Callable[[Call], None]


def unwrap(value: Any) -> Any:
    """``value`` with every :class:`Watched` array (also inside tuples and lists) the
    library's own array again."""
    if isinstance(value, Watched):
        return value.raw
    if isinstance(value, tuple | list):
        return type(value)(unwrap(v) for v in value)
    return value


def wrap(value: Any, listen: Listener) -> Any:
    """``value`` with every array of the library (also inside tuples and lists) watched."""
    if isinstance(value, tuple | list):
        return type(value)(wrap(v, listen) for v in value)
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, Watched):
        return Watched(value, listen)
    return value


def call_site() -> str:
    """``module.function:line`` of the innermost frame outside this module: the code that
    made the call (``loss._bce_both:41``; a user's model: ``softplus_net.forward:12``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == _HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    module = str(frame.f_globals.get("__name__", "?")).removeprefix("xptrain.")
    name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
    return f"{module}.{name}:{frame.f_lineno}"


def _watched_call(listen: Listener, op: str, fn: Callable, args: tuple, kwargs: dict) -> Any:
    """Call ``fn`` on the library's own arrays, tell ``listen``, return the output watched."""
    raw_args, raw_kwargs = unwrap(args), {k: unwrap(v) for k, v in kwargs.items()}
    out = fn(*raw_args, **raw_kwargs)
    listen(Call(op, call_site(), raw_args, raw_kwargs, out))
    return wrap(out, listen)


class Recorder:
    """The namespace ``xp`` with every function call watched (constants, dtypes and
    ``finfo``/``iinfo`` passed through)."""

    _PASS = frozenset({"finfo", "iinfo", "isdtype", "result_type", "can_cast"})

    def __init__(self, xp: Any, listen: Listener) -> None:
        self._xp, self._listen = xp, listen

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._xp, name)
        if not callable(attr) or name in self._PASS or isinstance(attr, type):
            return attr
        if name.startswith("__") or _is_dtype(attr):
            return attr

        def watched(*args: Any, **kwargs: Any) -> Any:
            return _watched_call(self._listen, name, attr, args, kwargs)

        return watched


def _is_dtype(value: Any) -> bool:
    """Whether ``value`` is a dtype object (some libraries' dtypes are callable)."""
    return not hasattr(value, "__code__") and hasattr(value, "itemsize") and hasattr(value, "kind")


class Watched:
    """A library array whose operators are watched like the namespace's functions."""

    __slots__ = ("_listen", "raw")
    __array_priority__ = 1000  # NumPy scalars on the left defer to our reflected operators

    def __init__(self, raw: Any, listen: Listener) -> None:
        self.raw, self._listen = raw, listen

    def __getattr__(self, name: str) -> Any:
        if name in _PLAIN:
            return getattr(self.raw, name)
        if name in ("T", "mT"):
            return _watched_call(self._listen, name, lambda a: getattr(a, name), (self,), {})
        return getattr(self.raw, name)

    def __getitem__(self, key: Any) -> Any:
        return _watched_call(self._listen, "getitem", operator.getitem, (self, key), {})

    def __float__(self) -> float:
        return float(self.raw)

    def __int__(self) -> int:
        return int(self.raw)

    def __bool__(self) -> bool:
        return bool(self.raw)

    def __index__(self) -> int:
        return operator.index(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    def __repr__(self) -> str:
        return f"Watched({self.raw!r})"

    def __hash__(self) -> int:  # __eq__ is an array operation; identity hashing, as arrays
        return id(self)


def _binary(dunder: str, op: str) -> tuple[Callable, Callable]:
    forward = getattr(operator, dunder if dunder not in ("and", "or") else f"{dunder}_")

    def method(self: Watched, other: Any) -> Any:
        return _watched_call(self._listen, op, forward, (self, other), {})

    def reflected(self: Watched, other: Any) -> Any:
        return _watched_call(self._listen, op, forward, (other, self), {})

    return method, reflected


for _dunder, _op in _BINARY:
    _fwd, _ref = _binary(_dunder, _op)
    setattr(Watched, f"__{_dunder}__", _fwd)
    setattr(Watched, f"__r{_dunder}__", _ref)
for _dunder, _op in _COMPARE:
    setattr(Watched, f"__{_dunder}__", _binary(_dunder, _op)[0])


def _unary(dunder: str, op: str) -> Callable:
    fn = getattr(operator, dunder)

    def method(self: Watched) -> Any:
        return _watched_call(self._listen, op, fn, (self,), {})

    return method


for _dunder, _op in _UNARY:
    setattr(Watched, f"__{_dunder}__", _unary(_dunder, _op))
