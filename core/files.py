"""Reading and writing files so that bad input is refused before any work, nothing is ever
unpickled, and a crash never leaves a half-written result."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = ["tomllib"]  # experiment files and --model-arg values read TOML through this one

Writer = Callable[[str], None]  # writes a whole file, given its (temporary) name


def _check_folder(folder: Path, path: Path, what: str) -> None:
    if not folder.is_dir():
        raise InvalidInput(f"{what} {str(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise InvalidInput(f"{what} {str(path)!r}: folder {str(folder)!r} is not writable")


def check_writable(path: str | Path, what: str) -> Path:
    """Refuse, before any work, an output file name that is empty, names a folder, or lies in
    a folder that is missing or not writable."""
    if not str(path):
        raise InvalidInput(f"{what} needs a file name")
    path = Path(path)
    try:
        if path.is_dir():
            raise InvalidInput(f"{what} {str(path)!r} is a folder; give a file name")
        if path.exists() and not path.resolve().is_file():
            # a device, pipe or socket: renaming a result over it would replace it
            raise InvalidInput(f"{what} {str(path)!r} is not a regular file; give a file name")
        _check_folder(path.resolve().parent, path, what)
    except OSError as err:  # e.g. a name too long for the file system
        raise InvalidInput(f"{what} {str(path)!r}: {err.strerror}") from None
    return path


def check_output_dir(path: str | Path, what: str) -> Path:
    """Refuse an output folder that is a file, or that could not be created or written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{what} {str(path)!r} is a file, not a folder")
    _check_folder(path if path.is_dir() else path.resolve().parent, path, what)
    return path


def write_all(outputs: Sequence[tuple[str | Path, Writer]]) -> None:
    """Write every output to a temporary file beside it, then rename them all into place: if any
    writer fails, none of the outputs appears. A link is written through to its target."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, write in outputs:
            target = Path(os.path.realpath(path))
            fd, tmp = tempfile.mkstemp(prefix=".xpt-", suffix=target.suffix, dir=target.parent)
            os.close(fd)
            staged.append((tmp, target))
            write(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is an ordinary file
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise


def atomic_write(path: str | Path, write: Writer) -> None:
    """Call ``write(tmp_name)`` on a temporary file beside ``path``, then rename it into place."""
    write_all([(path, write)])


def json_writer(obj: Any) -> Writer:
    """A writer of ``obj`` as indented, strict JSON (NaN and inf refused, not written)."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array in an .npz, never unpickling; one clear error for a missing, corrupt or
    object-holding file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{what} {str(path)!r} does not exist (or is not a file)")
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InvalidInput(
                f"{what} {str(path)!r} holds object arrays, which xptrain never "
                "unpickles; save plain numeric arrays"
            ) from None
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as err:
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file ({err})") from None
