"""The exception families a user can act on; the CLI prints each as one line and exits 2."""


class XptrainError(Exception):
    """Base of every error xptrain raises on purpose; its message says what to do."""


class InvalidInput(XptrainError, ValueError):
    """Data, parameters, options or files that xptrain refuses to train on."""


class BackendUnavailable(XptrainError, RuntimeError):
    """A backend that is not installed, or a device it does not have."""


class TrainingDiverged(XptrainError, ArithmeticError):
    """The loss (or the parameters) became NaN or infinite; ``epoch`` is where it was seen."""

    def __init__(self, message: str, epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch
