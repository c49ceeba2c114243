"""A deliberately wrong Array API namespace: float64 arrays in and out, but ``exp`` and ``log``
computed in float32 — the silent downcast (JAX without x64, in effect) that check must catch."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__, astype, float32, float64  # noqa: F401
from array_api_strict import exp as _exp
from array_api_strict import log as _log


def exp(x):
    return astype(_exp(astype(x, float32)), x.dtype)


def log(x):
    return astype(_log(astype(x, float32)), x.dtype)
