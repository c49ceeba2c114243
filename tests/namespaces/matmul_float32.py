"""A deliberately wrong Array API namespace: array-api-strict whose ``matmul`` accumulates in
float32 behind float64 arrays (a TF32-like downgrade of the dot products alone)."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__, astype, float32  # noqa: F401
from array_api_strict import matmul as _matmul


def matmul(a, b):
    return astype(_matmul(astype(a, float32), astype(b, float32)), a.dtype)
