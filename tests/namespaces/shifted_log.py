"""A subtly wrong Array API namespace: array-api-strict with ``log`` off by ``SHIFT`` (an
absolute amount the test sets, calibrated against the tolerance model)."""

from array_api_strict import *  # noqa: F403
from array_api_strict import __array_api_version__  # noqa: F401
from array_api_strict import log as _log

SHIFT = 0.0


def log(x):
    return _log(x) + SHIFT
