"""A deliberately wrong Array API namespace: array-api-strict whose ``sum`` adds in float32
behind float64 arrays."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__, astype, float32  # noqa: F401
from array_api_strict import sum as _sum


def sum(x, /, **kwargs):
    return astype(_sum(astype(x, float32), **kwargs), x.dtype)
