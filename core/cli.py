"""The ``xptrain`` command: parses the command line, imports the one command asked for
(:mod:`xptrain.commands`) and runs it. Every refusal is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from . import commands
from .errors import OptionError, XptrainError

# Only light modules above: everything else (NumPy, a command's module, an array library) is
# imported inside main's handling of Ctrl-C, so an interrupted start-up is one line too.


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``xptrain`` argument parser: every command listed, the arguments of ``command``
    (only its module is imported)."""
    from .commands.common import Parser
    from .runinfo import xptrain_version

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
    """Entry point of the ``xptrain`` command; returns the exit code. A Ctrl-C at any moment,
    while importing an array library at start-up too, is one line and exit code 130."""
    previous = _exit_on_interrupt_while_importing()
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


INTERRUPTED = "xptrain: interrupted"


def _exit_on_interrupt_while_importing() -> signal.Handlers | None:
    """Handle Ctrl-C with :func:`_on_interrupt` (where Python's own handler is in place, in the
    main thread: an ignored SIGINT stays ignored); the handler it replaced, or None."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    try:
        return signal.signal(signal.SIGINT, _on_interrupt)
    except ValueError:  # not the main thread (main called from a test's thread)
        return None


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C: KeyboardInterrupt, as Python's own handler raises it, except during an import
    (torch or JAX take seconds to start): raised there it was swallowed (JAX's gc callback
    ignored it and the run went on) or crashed an extension's initialisation (a segfault), so
    exit at once (results are written whole or not at all, bench records a line at a time)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            sys.stderr.write(INTERRUPTED + "\n")
            sys.stderr.flush()
            os._exit(130)
        frame = frame.f_back
    raise KeyboardInterrupt


def _run(argv: list[str]) -> int:
    """Parse ``argv`` and run its command; every refusal is one line."""
    args = build_parser(_command(argv)).parse_args(argv)
    try:
        return args.run(args)
    except OptionError as err:  # an option as the command line spells it: --exact, not exact=True
        from .options import cli_spelling  # imported already, by every command that has options

        print(f"xptrain {args.command}: error: {err.spelled(cli_spelling)}", file=sys.stderr)
        return 2
    except XptrainError as err:
        print(f"xptrain {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
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
