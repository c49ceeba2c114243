"""A deliberately wrong Array API namespace: array-api-strict with an ``exp`` off by 1e-10."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__  # noqa: F401
from array_api_strict import exp as _exp


def exp(x):
    return _exp(x) * (1 + 1e-10)
