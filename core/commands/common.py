"""What several commands share: the one-line-error parser, list options, output checks."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, NoReturn

from ..data import GENERATORS
from ..errors import InvalidInput
from ..files import check_writable
from ..options import seconds
from ..plot import check_plot_path


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises InvalidInput: its message, not argparse's."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InvalidInput as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = getattr(parse, "__name__", "value")  # argparse names the type in errors
    return convert


def listed(values: list[str] | None, option: str) -> list[str] | None:
    """A list option's names, commas or spaces between them (``--backends numpy,torch`` or
    ``--backends numpy torch``, given once or repeated), each once; None when not given."""
    if values is None:
        return None
    names = list(
        dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip())
    )
    if not names:
        raise InvalidInput(f"{option} needs at least one name")
    return names


def add_list(parser: argparse.ArgumentParser, flag: str, metavar: str, help: str) -> None:
    """A list option (see :func:`listed`)."""
    parser.add_argument(flag, nargs="+", action="extend", metavar=metavar, help=help)


def add_timeout(parser: argparse.ArgumentParser) -> None:
    """``--distributed-timeout``: how long a process group waits for its processes."""
    parser.add_argument(
        "--distributed-timeout",
        type=arg(seconds),
        default=120.0,
        metavar="S",
        help="seconds to wait for the other processes to join (torch: and at every "
        "collective; default 120)",
    )


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable output paths (--json, --out, --plot, --save-model) before any work:
    two of them naming one file, or one naming the --data file (it would be overwritten)."""
    files = {
        flag: getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag in ("--json", "--out", "--plot", "--save-model")
        if getattr(args, flag.lstrip("-").replace("-", "_"), None) is not None
    }
    for flag, path in files.items():
        check_writable(path, flag)
    if len({os.path.realpath(path) for path in files.values()}) < len(files):
        raise InvalidInput(f"{' and '.join(files)} name the same file; give one each")
    _check_not_the_data(getattr(args, "data", None), files)
    if "--plot" in files:
        check_plot_path(files["--plot"])


def _check_not_the_data(data: Any, files: dict[str, str]) -> None:
    """Refuse an output that names the --data file (paths compared resolved)."""
    if data is None or str(data).partition(":")[0] in GENERATORS or not os.path.isfile(data):
        return
    for flag, path in files.items():
        if os.path.realpath(path) == os.path.realpath(data):
            raise InvalidInput(f"--data and {flag} name the same file; {flag} would overwrite it")
