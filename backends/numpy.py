"""NumPy on the CPU, through array-api-compat's NumPy namespace."""

from __future__ import annotations

import array_api_compat.numpy as xp_numpy
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """NumPy on the host CPU."""

    name = "numpy"
    xp = xp_numpy

    @property
    def version(self) -> str:
        return np.__version__
