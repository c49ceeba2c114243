"""What to record beside every result so it can be reproduced: versions of everything involved."""

from __future__ import annotations

import functools
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import array_api_compat
import numpy as np

if TYPE_CHECKING:
    from .backends import Backend


@functools.cache  # reading package metadata costs ~3 ms; it cannot change within a process
def xptrain_version() -> str:
    """The installed xptrain's version ("unknown" in a source tree that is not installed)."""
    try:
        return version("xptrain")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def versions(backend: Backend) -> dict[str, str]:
    """Python, NumPy, array-api-compat, xptrain and the backend's own library versions (a new
    dict each call; read once per process and backend)."""
    return dict(_versions(backend))


@functools.lru_cache(maxsize=32)  # a library's version cannot change once it is imported
def _versions(backend: Backend) -> tuple[tuple[str, str], ...]:
    found = {
        "python": platform.python_version(),
        "xptrain": xptrain_version(),
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
        **backend.versions(),
    }
    return tuple(found.items())
