"""The exception families a user can act on; the CLI prints each as one line and exits 2 (1 for
a library's own failure, :class:`LibraryError`)."""

from __future__ import annotations

from collections.abc import Callable


class XptrainError(Exception):
    """Base of every error xptrain raises on purpose; its message says what to do."""

    exit_code = 2  # the command line's: bad input


class InvalidInput(XptrainError, ValueError):
    """Data, parameters, options or files that xptrain refuses to train on."""


def python_spelling(name: str, value: object = ...) -> str:
    """An option as a Python caller writes it: ``epochs``, ``exact=True``."""
    return name if value is ... else f"{name}={value!r}"


class OptionError(InvalidInput):
    """A bad option, its message written once and spelled per surface: ``message`` is called
    with a spelling function ``spell(name, value=...)`` (Python's, the command line's, an
    experiment file's: see :mod:`xptrain.options`); ``str()`` is the Python spelling."""

    def __init__(self, message: Callable[..., str]) -> None:
        self.message = message
        super().__init__(message(python_spelling))

    def spelled(self, spell: Callable[..., str]) -> str:
        """The message as a surface spells its options."""
        return self.message(spell)

    def __reduce__(self) -> tuple:
        # the message function does not pickle: across processes, the Python spelling
        return InvalidInput, (str(self),)


class BackendUnavailable(XptrainError, RuntimeError):
    """A backend that is not installed, or a device it does not have."""


class LibraryError(XptrainError, RuntimeError):
    """An array library (or a user's model running on it) failed during a run: its exception's
    type and first line, with the library named; the original is the ``__cause__``."""

    exit_code = 1  # not the input's fault

    @classmethod
    def of(cls, library: str, model: str, err: Exception) -> LibraryError:
        """The error for ``err``, raised by ``library`` running ``model`` (its message's first
        line only: torch.compile's run to dozens)."""
        return cls(f"{library} failed running model {model}: {first_line(err)}")


def first_line(err: BaseException) -> str:
    """``Type: message`` of an exception's root cause, in one line: the message's first line,
    and where it has one its "Explanation:" line (torch.compile's first line names only
    itself, "RuntimeError when making fake tensor call"; the failing call is explained below)."""
    while err.__cause__ is not None:
        err = err.__cause__
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    explained = [line for line in lines[1:] if line.startswith("Explanation:")]
    if explained:
        text += f" ({explained[0][:300]})"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class TrainingDiverged(XptrainError, ArithmeticError):
    """The loss (or the parameters) became NaN or infinite; ``epoch`` is where it was seen."""

    def __init__(self, message: str, epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
