"""Reading and writing files so that bad input is refused before any work, nothing is ever
unpickled, and a crash never leaves a half-written result."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import tokenize
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


# A compressed .npz member may inflate at most MAX_RATIO times its compressed size, once that is
# more than SMALL_INFLATION. Deflate tops out near 1032x; real float data compresses 1-30x (0/1
# labels stored as float64: ~27x), but sparse real data (one-hot features) reaches ~900x just as
# zeros do, so the ratio alone cannot tell a zip bomb from data: only large inflations are refused.
MAX_RATIO = 100
SMALL_INFLATION = 250_000_000


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, with a document nested too deeply for Python's stack refused in one
    line (tomllib recurses once per level of arrays or tables)."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise InvalidInput("not valid TOML (nested too deeply)") from None


def load_npz(path: str | Path, what: str = "file") -> dict[str, np.ndarray]:
    """Every array in an .npz, never unpickling and never inflating a zip bomb; one clear error
    for a missing, corrupt, object-holding or bomb-like file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{what} {str(path)!r} does not exist (or is not a file)")
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file (not a zip archive)")
    try:
        _check_sizes(path, what)
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except InvalidInput:
        raise
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InvalidInput(
                f"{what} {str(path)!r} holds object arrays, which xptrain never "
                "unpickles; save plain numeric arrays"
            ) from None
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file ({err})") from None
    # SyntaxError, TokenError: a damaged .npy header (NumPy parses it as a Python literal)
    except (*_DAMAGED, SyntaxError, tokenize.TokenError) as err:
        raise InvalidInput(f"{what} {str(path)!r} is not a valid .npz file ({err})") from None


_DAMAGED = (OSError, zipfile.BadZipFile, EOFError, KeyError, zlib.error)


def _check_sizes(path: Path, what: str) -> None:
    """Refuse, from the zip's central directory and each array's .npy header and before any
    array is inflated, an .npz that would inflate past its limit or whose arrays claim more
    bytes than their members hold. (zipfile never inflates a member past the size the
    central directory gives it, so those sizes bound the memory np.load takes.)"""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        _check_inflation(path, what, infos)
        for info in infos:
            _check_declared_size(archive, info, f"{what} {str(path)!r}")


def _check_inflation(path: Path, what: str, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse compressed members that inflate past :data:`MAX_RATIO` times their compressed
    size once that is more than :data:`SMALL_INFLATION` (all of them together: many small
    bombs are one large one)."""
    packed = [i for i in infos if i.compress_type != zipfile.ZIP_STORED]
    inflated = sum(i.file_size for i in packed)
    compressed = sum(i.compress_size for i in packed)
    if inflated <= max(MAX_RATIO * compressed, SMALL_INFLATION):
        return
    raise InvalidInput(
        f"{what} {str(path)!r} would inflate from {_size(compressed)} to {_size(inflated)} "
        f"({inflated / max(compressed, 1):.0f}x); xptrain inflates compressed arrays beyond "
        f"{_size(SMALL_INFLATION)} only up to {MAX_RATIO}x (a zip bomb inflates ~1000x); if "
        "the data really is that sparse, save it uncompressed (np.savez) or as a folder of "
        "X.npy and y.npy"
    )


def _check_declared_size(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> None:
    """Refuse an array whose .npy header declares more bytes than its member holds (np.load
    allocates what the header declares before reading)."""
    if not info.filename.endswith(".npy"):
        return
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):  # 3.0 (UTF-8 field names): np.load checks it
            return
        read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
        try:
            shape, _, dtype = read_header(f)
        except (SyntaxError, tokenize.TokenError) as err:  # NumPy parses it as a Python literal
            raise InvalidInput(
                f"{where} is not a valid .npz file ({info.filename}'s header is damaged: {err})"
            ) from None
        declared = f.tell() + math.prod(shape) * dtype.itemsize
    if not dtype.hasobject and declared > info.file_size:
        raise InvalidInput(
            f"{where} is not a valid .npz file ({info.filename} declares a {dtype} array of "
            f"shape {shape}, {_size(declared)}, but holds {_size(info.file_size)})"
        )


def _size(n: float) -> str:
    """Bytes in a unit a person reads at a glance (``1.2 GB``)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"
