"""An Array API namespace (NumPy through array_api_compat) whose ``exp`` ends the process with
``sys.exit(0)``: a library that quits mid-run, which check must report as a failure, not as
a silent success."""

import sys

from array_api_compat.numpy import *  # noqa: F403
from array_api_compat.numpy import __array_api_version__  # noqa: F401


def exp(x):
    sys.exit(0)
