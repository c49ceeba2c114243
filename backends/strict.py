"""array-api-strict: the standard and nothing more. Core running here proves it needs no more."""

from __future__ import annotations

from typing import Any

import array_api_strict

from .base import Backend


class StrictBackend(Backend):
    """array-api-strict on its CPU device."""

    name = "array_api_strict"
    xp = array_api_strict

    def native_device(self, name: str) -> Any:
        return array_api_strict.Device("CPU_DEVICE")
