"""A deliberately wrong Array API namespace: array-api-strict whose ``log`` is computed in
float32 behind float64 arrays (only ``log``: ``explain`` must name it, not ``exp``)."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__, astype, float32  # noqa: F401
from array_api_strict import log as _log


def log(x):
    return astype(_log(astype(x, float32)), x.dtype)
