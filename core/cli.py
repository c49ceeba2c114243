"""The ``xptrain`` command: parses the command line, imports the one command asked for
(:mod:`xptrain.commands`) and runs it. Every refusal is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import commands
from .commands.common import Parser
from .errors import OptionError, XptrainError
from .options import cli_spelling
from .runinfo import xptrain_version


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``xptrain`` argument parser: every command listed, the arguments of ``command``
    (only its module is imported)."""
    parser = Parser(
        prog="xptrain",
        description="One training loop on every array library: "
        "does it give the same numbers, and how fast?",
    )
    parser.add_argument("--version", action="version", version=f"xptrain {xptrain_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in commands.COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=summary)
            continue
        module = commands.load(name)
        own = sub.add_parser(name, help=summary, description=module.DESCRIPTION)
        module.add_arguments(own)
        own.set_defaults(run=module.run)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xptrain`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return args.run(args)
    except OptionError as err:  # an option as the command line spells it: --exact, not exact=True
        print(f"xptrain {args.command}: error: {err.spelled(cli_spelling)}", file=sys.stderr)
        return 2
    except XptrainError as err:
        print(f"xptrain {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("xptrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xptrain backends | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MemoryError:
        print(
            f"xptrain {args.command}: error: out of memory; try a smaller problem or model",
            file=sys.stderr,
        )
        return 2
    except OSError as err:  # a full disk, a vanished folder: one line, and no partial file
        where = f" ({err.filename})" if err.filename else ""
        print(f"xptrain {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
