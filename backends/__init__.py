"""The backend registry: ``get(name)`` imports a framework only when that backend is asked for.

What can be known without importing a framework (module, install hint, device kinds) lives in
``SPECS``; everything else is in the backend's own module.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import array_api_compat
import numpy as np

from xptrain.errors import BackendUnavailable, InvalidInput

from .base import DTYPES, Backend, Group, canonical_device, device_filter, itemsize

__all__ = [
    "DTYPES",
    "SPECS",
    "Backend",
    "Group",
    "available",
    "canonical_device",
    "canonical_name",
    "device_filter",
    "get",
    "itemsize",
    "keep_compiled",
    "kept_compiled",
    "names",
    "process_group",
    "readable_here",
    "to_numpy",
]


@dataclass(frozen=True)
class Spec:
    """A built-in backend before it is imported."""

    name: str
    module: str
    cls: str
    install: str
    device_kinds: tuple[str, ...]


SPECS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("numpy", "numpy", "NumpyBackend", "pip install xptrain", ("cpu",)),
        Spec("torch", "torch", "TorchBackend", "pip install 'xptrain[torch]'", ("cpu", "cuda")),
        Spec(
            "jax",
            "jax",
            "JaxBackend",
            "pip install 'xptrain[jax]' (GPU: jax[cuda12])",
            ("cpu", "cuda"),
        ),
        Spec(
            "cupy", "cupy", "CupyBackend", "pip install cupy-cuda12x (or cupy-cuda13x)", ("cuda",)
        ),
        Spec(
            "array_api_strict", "strict", "StrictBackend", "pip install 'xptrain[strict]'", ("cpu",)
        ),
        Spec("dask", "dask", "DaskBackend", "pip install 'xptrain[dask]'", ("cpu",)),
    )
}
_ALIASES = {
    "np": "numpy",
    "pytorch": "torch",
    "strict": "array_api_strict",
    "array-api-strict": "array_api_strict",
}
_loaded: dict[str, Backend] = {}
_KEEP: list[Path | None] = []  # the folder keep_compiled() was last given, if it was called


def names() -> list[str]:
    """Names of the built-in backends, installed or not."""
    return list(SPECS)


def canonical_name(name: str) -> str:
    """The built-in backend a user's name (any case, or an alias like ``strict``) refers to."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in SPECS:
        raise InvalidInput(f"unknown backend {name!r}; choose from {', '.join(SPECS)}")
    return key


def get(name: str) -> Backend:
    """The backend called ``name``, imported on first use; a clear error if it cannot be had.

    A name that is not a built-in backend but an importable module is used as an Array API
    namespace (bring your own library).
    """
    try:
        key = canonical_name(name)
    except InvalidInput:
        return _own_namespace(name)
    if key not in _loaded:
        _loaded[key] = _load(SPECS[key])
        _keep(_loaded[key])
    return _loaded[key]


def readable_here(x: Any) -> bool:
    """Whether ``x``'s values can be read in this process for free, so branching on them costs
    no wait: a NumPy array, or an eager torch CPU tensor. A device's array (a read waits for its
    queue), a traced one (no value yet) or a lazy one (it would be computed): False."""
    if isinstance(x, np.ndarray):
        return True
    torch = sys.modules.get("torch")  # x is no tensor unless torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        from .torch import readable_here as readable_tensor

        return readable_tensor(x)
    return False


def keep_compiled(folder: Path | None) -> list[str]:
    """Every backend of this process, loaded now or later, keeps the code its library compiles
    in ``folder / name`` for later processes (:meth:`Backend.keep_compiled`; None: compiles
    everything anew); what the backends loaded now set, for the record."""
    _KEEP[:] = [folder]
    return [note for backend in _loaded.values() if (note := _keep(backend))]


def kept_compiled() -> tuple[Path | None, ...]:
    """``(folder,)`` as :func:`keep_compiled` last set it, or ``()`` if it was never called (the
    libraries' own defaults): what a worker process does likewise."""
    return tuple(_KEEP)


def _keep(backend: Backend) -> str | None:
    if not _KEEP:
        return None
    folder = _KEEP[0]
    return backend.keep_compiled(None if folder is None else folder / backend.name)


def _load(spec: Spec) -> Backend:
    try:
        module = importlib.import_module(f"{__name__}.{spec.module}")
    except ImportError as err:
        raise BackendUnavailable(
            f"backend {spec.name!r} is not installed (no module {err.name or spec.module!r}); "
            f"install it with: {spec.install}"
        ) from None
    try:
        backend = getattr(module, spec.cls)()
        backend.devices()  # a library that imports but cannot start (CUDA init, jaxlib mismatch)
    except BackendUnavailable:
        raise
    except Exception as err:  # any failure of a third-party library's start-up
        raise BackendUnavailable(
            f"backend {spec.name!r} is installed but failed to start: "
            f"{type(err).__name__}: {err or 'no message'}"
        ) from None
    return backend


def _own_namespace(name: str) -> Backend:
    """The bring-your-own backend of module ``name``, imported (so run) only once it is known
    to be a module that could be an array library."""
    module = name.strip()
    if module not in _loaded:
        _check_importable(name, module)
        from .namespace import NamespaceBackend

        _loaded[module] = NamespaceBackend(module)
    return _loaded[module]


def _check_importable(name: str, module: str) -> None:
    """Refuse, before importing it, a module that cannot be an array library: the standard
    library's (``this`` prints a poem as it loads), ``__main__``, or none at all."""
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "__main__":
        raise InvalidInput(
            f"unknown backend {name!r}: {top!r} is Python's own module, not an Array API "
            "namespace (not imported)"
        )
    try:
        found = bool(top) and importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a name find_spec cannot look up (".x", "a..b")
        found = False
    if not found:
        raise InvalidInput(
            f"unknown backend {name!r}: not one of {', '.join(SPECS)}, nor an importable "
            "array library (is it on PYTHONPATH?)"
        )


def process_group(name: str, timeout: float) -> contextlib.AbstractContextManager[Group]:
    """Join the process group a launcher started, for backend ``name`` (torch: torch.distributed
    under torchrun; jax: jax.distributed), waiting at most ``timeout`` seconds for the others;
    a context that yields this process's :class:`Group` and leaves the group after. Call it
    before the backend's first use: JAX must join before it computes anything."""
    key = canonical_name(name)
    if not timeout > 0:
        raise InvalidInput(f"the process group timeout must be > 0 seconds, got {timeout}")
    try:
        module = importlib.import_module(f"{__name__}.{SPECS[key].module}")
    except ImportError:
        raise BackendUnavailable(
            f"backend {key!r} is not installed; install it with: {SPECS[key].install}"
        ) from None
    # the class's declared capabilities: read without starting the library (JAX must join first)
    if not getattr(module, SPECS[key].cls).caps.process_group:
        raise InvalidInput(f"--distributed is for --backend torch or jax, not {key}")
    return module.process_group(timeout)


def available() -> list[str]:
    """Names of the built-in backends that import and start here."""
    ok = []
    for name in SPECS:
        try:
            get(name)
        except BackendUnavailable:
            continue
        ok.append(name)
    return ok


def to_numpy(x: Any) -> np.ndarray:
    """Any array (NumPy, torch, JAX, CuPy, array-api-strict, or nested lists) as a host array."""
    for name, is_kind in (
        ("torch", array_api_compat.is_torch_array),
        ("jax", array_api_compat.is_jax_array),
        ("cupy", array_api_compat.is_cupy_array),
    ):
        if is_kind(x):
            return get(name).to_numpy(x)
    return np.asarray(x)
