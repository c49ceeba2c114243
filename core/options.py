"""Every run option, declared once: its type, default, help, command-line flag, experiment-file
key, whether a resumed run must match it, and its validation. ``Options`` (the frozen set a run
is made with), ``train()``'s keyword arguments, the ``train`` command's flags, the experiment
file's schema, checkpoint compatibility and the result's JSON are all derived from the
declarations below; adding an option is one ``option(...)`` line here (plus its use).

Errors name an option as its caller spelled it: ``epochs=0`` from Python, ``--epochs`` on the
command line, ``[train] epochs`` in an experiment file (:class:`OptionError`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from numbers import Integral, Real
from typing import Any

import numpy as np

from .backends import DTYPES
from .errors import InvalidInput, OptionError, python_spelling
from .files import parse_toml, tomllib
from .loss import AUTO, LOSSES, for_labels
from .models import ACTIVATIONS, BUILT_IN, DEFAULT_HIDDEN, describe, is_model
from .optim import OPTIMIZERS

GRADS = ("analytic", "autodiff")


class Invalid(ValueError):
    """Raised by a validator: what is wrong with a value, as the words that follow the
    option's name ("must be a whole number ≥ 1, got 0")."""


@dataclass(frozen=True)
class Spec:
    """How one option is checked and where it appears (``field`` metadata of :class:`Options`)."""

    help: str
    check: Callable[[Any], Any]  # the value → the normalised value; raises Invalid
    flag: str | None = None  # the ``train`` command's flag (None: none)
    parse: Callable[[str], Any] | None = None  # text → value for the flag (None: a switch)
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    toml: str | None = None  # "section.key" in an experiment file (None: not there)
    # must a resumed run have the same value? True, or a test of the resumed run's options
    resume: bool | Callable[[Any], bool] = False
    many: bool = False  # the flag may be repeated, each value one more item


def option(default: Any, help: str, check: Callable[[Any], Any], **spec: Any) -> Any:
    """A field of :class:`Options` with its :class:`Spec`."""
    return field(default=default, metadata={"spec": Spec(help, check, **spec)})


# -- validators: small, each of one value -----------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def whole(low: int = 1, high: int | None = None) -> Callable[[Any], int]:
    """A whole number from ``low`` (to ``high``, exclusive)."""

    def check(value: Any) -> int:
        if not _is_int(value) or value < low or (high is not None and value >= high):
            upto = f"from {low} to {_power(high)} - 1" if high is not None else f"≥ {low}"
            raise Invalid(f"must be a whole number {upto}, got {value!r}")
        return int(value)

    return check


def _power(n: int) -> str:
    return f"2**{n.bit_length() - 1}" if n & (n - 1) == 0 else str(n)


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check``, or None (the option left out)."""
    return lambda value: None if value is None else check(value)


def one_of(choices: Any) -> Callable[[Any], str]:
    """One of ``choices`` (names)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise Invalid(f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    return check


def positive_number(value: Any) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise Invalid(f"must be a finite number > 0, got {value!r}")
    if value <= 0:
        raise Invalid(f"must be a finite number > 0, got {value!r}")
    return float(value)


LONGEST_WAIT = 1e6  # seconds (11.6 days): torch's and dask's clocks overflow far above


def seconds(text: str) -> float:
    """A timeout flag's value (``--scheduler-timeout``, ``--distributed-timeout``): a finite
    number of seconds > 0, at most :data:`LONGEST_WAIT` (``inf`` broke dask, ``-1`` torch)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= LONGEST_WAIT:
        raise InvalidInput(
            f"must be a number of seconds > 0 and at most {LONGEST_WAIT:g}, got {text!r}"
        )
    return value


def fraction(value: Any) -> float:
    """Strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < 1:
        raise Invalid(f"must be a fraction between 0 and 1, got {value!r}")
    return float(value)


def gradient_path(value: Any) -> str:
    """``auto``, ``full`` or ``block:ROWS`` (ROWS a whole number ≥ 1)."""
    if value in ("auto", "full"):
        return value
    kind, _, rows = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind != "block" or not rows.isdigit() or int(rows) < 1:
        raise Invalid(f"must be auto, full or block:ROWS (ROWS a whole number ≥ 1), not {value!r}")
    return f"block:{int(rows)}"


def switch(value: Any) -> bool:
    """True or False (NumPy's booleans too)."""
    if not isinstance(value, (bool, np.bool_)):
        raise Invalid(f"must be true or false, got {value!r}")
    return bool(value)


def layer_sizes(value: Any) -> tuple[int, ...]:
    """Hidden layer sizes: whole numbers ≥ 1 (a list or tuple)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise Invalid(f"must be a list of hidden layer sizes, e.g. [32, 16], got {value!r}")
    sizes = tuple(value)
    if not all(_is_int(h) and h >= 1 for h in sizes):
        raise Invalid(f"must be hidden layer sizes, whole numbers ≥ 1, got {value!r}")
    return tuple(int(h) for h in sizes)


def model_spec(value: Any) -> Any:
    """A built-in model's name, ``FILE.py:NAME`` / ``package.module:NAME``, or a model object
    (a class, an instance or a module with ``init`` and ``forward``)."""
    if isinstance(value, str):
        if value in BUILT_IN or (":" in value and value.rpartition(":")[2]):
            return value
        raise Invalid(
            f"must be {', '.join(BUILT_IN)}, FILE.py:NAME or package.module:NAME, not {value!r}"
        )
    if not is_model(value):
        raise Invalid(f"must be a model with init and forward methods, got {value!r}")
    return value


_SCALARS = (str, int, float, bool)


def model_arguments(value: Any) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments for a model class: a mapping (or ``(key, value)`` pairs) of names to
    TOML scalars (strings, numbers, booleans, or lists of them), as sorted pairs."""
    pairs = value.items() if isinstance(value, dict) else value
    try:
        items = [(k, v) for k, v in pairs]
    except (TypeError, ValueError):
        raise Invalid(f"must be a table of names to values, got {value!r}") from None
    return tuple(sorted((_argument_name(key), _argument_value(key, v)) for key, v in items))


def _argument_name(key: Any) -> str:
    if not isinstance(key, str) or not key.isidentifier():
        raise Invalid(f"must name arguments with Python identifiers, got {key!r}")
    return key


def _argument_value(key: str, item: Any) -> Any:
    """A TOML scalar, or a list of them (as a tuple: options are hashable)."""
    if isinstance(item, (list, tuple)) and all(isinstance(v, _SCALARS) for v in item):
        return tuple(item)
    if not isinstance(item, _SCALARS):
        raise Invalid(f"{key}: must be a string, number, boolean or list, got {item!r}")
    return item


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a TOML scalar (``32``, ``0.5``, ``true``, ``"tanh"``,
    ``[8, 8]``); a bare word is a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"{text!r}: give KEY=VALUE, e.g. width=32")
    try:
        value = parse_toml(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: the string it spells
    return key.strip(), value


def positive_ints(text: str) -> tuple[int, ...]:
    """``64,32`` as whole numbers ≥ 1 (the flags' form of a list of sizes)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"{text!r}: give whole numbers, e.g. 64,32") from None
    if min(values) < 1:
        raise InvalidInput(f"{text!r}: every value must be ≥ 1")
    return values


def _batch_or_split(options: Options) -> bool:
    return options.batch_size is not None or options.val_split is not None


# -- the options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """How to train: precision, length, step size, seed, compilation, gradients, optimizer,
    model and data handling — every option of a run, checked on construction (so a bad one is
    refused before any data is touched) and normalised (``model`` and ``hidden`` settled)."""

    dtype: str = option(
        "float64", "floating-point precision", one_of(DTYPES),
        flag="--dtype", parse=str, choices=DTYPES,
    )  # fmt: skip
    epochs: int = option(
        20, "epochs to train", whole(1), flag="--epochs", parse=int, toml="train.epochs"
    )
    lr: float = option(
        1.0, "learning rate (the seed's alpha)", positive_number,
        flag="--lr", parse=float, toml="train.lr", resume=True,
    )  # fmt: skip
    seed: int = option(
        1, "seed for the initial weights (the seed's np.random.seed), the batch order and the "
        "validation rows", whole(0, 2**32),
        flag="--seed", parse=int, toml="train.seed", resume=_batch_or_split,
    )  # fmt: skip
    jit: bool = option(
        False, "compile the training step (jax.jit, torch.compile)", switch, flag="--jit"
    )
    grad: str = option(
        "analytic", "analytic backprop (the seed's) or the backend's autodiff",
        one_of(GRADS), flag="--grad", parse=str, choices=GRADS,
    )  # fmt: skip
    optimizer: str = option(
        "sgd", "sgd (the seed's), momentum (0.9) or adam (0.9, 0.999, 1e-8)",
        one_of(OPTIMIZERS), flag="--optimizer", parse=str,
        choices=tuple(OPTIMIZERS), toml="train.optimizer", resume=True,
    )  # fmt: skip
    model: Any = option(  # noqa: RUF009 (option() is a dataclass field)
        None, "logistic (the seed's regressor), mlp, or your own: FILE.py:NAME or "
        "package.module:NAME (importing FILE.py runs it) (default: mlp when hidden layers "
        "are given, else logistic)", optional(model_spec),
        flag="--model", parse=str, metavar="MODEL", toml="model.kind", resume=True,
    )  # fmt: skip
    model_args: tuple[tuple[str, Any], ...] = option(
        (), "an argument for your model's class, KEY=VALUE with VALUE a TOML value "
        "(repeatable)", model_arguments,
        flag="--model-arg", parse=key_value, metavar="KEY=VALUE", toml="model_args",
        resume=True, many=True,
    )  # fmt: skip
    hidden: tuple[int, ...] | None = option(
        None, f"MLP hidden layer sizes (default {','.join(map(str, DEFAULT_HIDDEN))})",
        optional(layer_sizes), flag="--hidden", parse=positive_ints, metavar="H,...",
        toml="model.hidden", resume=True,
    )  # fmt: skip
    activation: str = option(
        "sigmoid", "the MLP's hidden activation", one_of(ACTIVATIONS),
        flag="--activation", parse=str, choices=tuple(ACTIVATIONS), toml="model.activation",
        resume=True,
    )  # fmt: skip
    batch_size: int | None = option(
        None, "minibatches of B rows, in an order drawn on the host from the seed and the "
        "epoch (default: full batch, as the seed)", optional(whole(1)),
        flag="--batch-size", parse=int, metavar="B", toml="train.batch_size", resume=True,
    )  # fmt: skip
    loss: str = option(
        AUTO, "auto (from the labels: bce for 0/1, softmax-ce for classes 0..K-1, mse for "
        "other numbers), bce (the seed's binary cross-entropy), bce-logits (the same from "
        "logits, stable when probabilities saturate), softmax-ce (K classes, labels 0..K-1) or "
        "mse (regression)", one_of((AUTO, *LOSSES)),
        flag="--loss", parse=str, choices=(AUTO, *LOSSES), toml="train.loss", resume=True,
    )  # fmt: skip
    val_split: float | None = option(
        None, "hold out this fraction of the rows (drawn from the seed) and report their loss "
        "and accuracy after every epoch", optional(fraction),
        flag="--val-split", parse=float, metavar="F", toml="data.val_split", resume=True,
    )  # fmt: skip
    standardize: bool = option(
        False, "scale every feature to mean 0, standard deviation 1 (with the training rows' "
        "statistics when rows are held out)", switch,
        flag="--standardize", toml="data.standardize", resume=True,
    )  # fmt: skip
    exact: bool = option(
        False, "the seed's full-batch arithmetic (default: on the CPU, large problems read X "
        "once per epoch in cache-sized blocks: the same numbers up to rounding)", switch,
        flag="--exact",
    )  # fmt: skip
    path: str = option(
        "auto", "the gradient's path: full (the whole batch at once), block:ROWS (the "
        "one-pass gradient, X read once per epoch ROWS rows at a time: the same numbers up to "
        "rounding) or auto (on the CPU, the faster of them for a large problem, measured once "
        "per machine and size and cached)", gradient_path,
        flag="--path", parse=str, metavar="auto|full|block:ROWS", toml="train.path",
    )  # fmt: skip
    data_parallel: int | None = option(
        None, "spread the rows over N devices of this process (jax: sharded, gradients added "
        "by psum; CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N)",
        optional(whole(1)), flag="--data-parallel", parse=int, metavar="N",
    )  # fmt: skip
    distributed: bool = option(
        False, "join the launcher's process group (torchrun for torch and jax; RANK, "
        "WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and spread the rows over its processes; rank 0 "
        "prints and writes", switch, flag="--distributed",
    )  # fmt: skip

    def __post_init__(self) -> None:
        for f in fields(self):
            try:
                value = f.metadata["spec"].check(getattr(self, f.name))
            except Invalid as err:
                raise OptionError(lambda s, name=f.name, why=str(err): f"{s(name)} {why}") from None
            object.__setattr__(self, f.name, value)
        layers = self.hidden or self.activation != "sigmoid"  # what only an MLP has
        model = self.model or ("mlp" if layers else "logistic")
        object.__setattr__(self, "model", model)
        for rule in RULES:
            rule(self)
        object.__setattr__(self, "hidden", self.hidden or DEFAULT_HIDDEN if model == "mlp" else ())

    def replace(self, **changes: Any) -> Options:
        """These options with ``changes`` (checked again); new hidden layers or activation
        settle the model anew unless ``model`` is given too."""
        if {"hidden", "activation"} & set(changes):
            changes.setdefault("model", None)
        return replace(self, **changes)

    @property
    def block(self) -> int | None:
        """The rows per block ``path="block:ROWS"`` asks for (None for auto and full)."""
        return int(self.path[6:]) if self.path.startswith("block:") else None

    def for_labels(self, y: np.ndarray) -> Options:
        """These options with ``loss="auto"`` settled by the targets ``y``
        (:func:`xptrain.loss.for_labels`); every run settles it before training."""
        return self if self.loss != AUTO else replace(self, loss=for_labels(y))

    def to_json(self) -> dict[str, Any]:
        """Every option, JSON-ready (tuples as lists, the model as its spec)."""
        out = {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((f.name, getattr(self, f.name)) for f in fields(self))
        }
        out["model"] = describe(self.model)
        out["model_args"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_args}
        return out

    def must_match(self) -> list[str]:
        """The options a run resumed with these options must share with its checkpoint."""
        out = []
        for f in fields(self):
            resume = f.metadata["spec"].resume
            if resume is True or (callable(resume) and resume(self)):
                out.append(f.name)
        return out


# -- rules between options --------------------------------------------------------------------


def _model_has_layers(o: Options) -> None:
    if o.model != "mlp" and (o.hidden or o.activation != "sigmoid"):
        raise OptionError(
            lambda s: (
                f"{s('hidden')} and {s('activation')} need {s('model', 'mlp')}"
                + ("" if o.model == "logistic" else f"; give your model's {s('model_args')}")
            )
        )


def _mlp_has_a_hidden_layer(o: Options) -> None:
    # hidden = [] given for an MLP: the default layers would silently replace "none"
    if o.model == "mlp" and o.hidden == ():
        raise OptionError(
            lambda s: (
                f"{s('model', 'mlp')} needs at least one layer in {s('hidden')}; an MLP "
                f"without hidden layers is {s('model', 'logistic')}"
            )
        )


def _args_need_own_model(o: Options) -> None:
    if o.model_args and o.model in BUILT_IN:
        raise OptionError(
            lambda s: f"{s('model_args')} are for your own model's class, not {o.model}"
        )


def _block_needs_one_pass(o: Options) -> None:
    if o.block is not None and (o.exact or o.grad != "analytic"):
        raise OptionError(
            lambda s: (
                f"{s('path', o.path)} needs the one-pass analytic gradient: drop "
                f"{s('exact', True)} and {s('grad', 'autodiff')}, or {s('path', o.path)}"
            )
        )


def _exact_is_one_device(o: Options) -> None:
    if o.exact and (o.data_parallel is not None or o.distributed):
        raise OptionError(
            lambda s: (
                f"{s('exact', True)} is the seed's single-device arithmetic; a "
                f"data-parallel run sums each replica's rows: drop one of them"
            )
        )


RULES: tuple[Callable[[Options], None], ...] = (
    _model_has_layers,
    _mlp_has_a_hidden_layer,
    _args_need_own_model,
    _block_needs_one_pass,
    _exact_is_one_device,
)


# -- the surfaces' spellings ------------------------------------------------------------------


def cli_spelling(name: str, value: Any = ...) -> str:
    """``--epochs``, ``--exact``, ``--model mlp``: as the ``train`` command's flag."""
    spec = _SPECS.get(name)
    flag = spec.flag if spec and spec.flag else f"--{name.replace('_', '-')}"
    return flag if value is ... or value is True else f"{flag} {value}"


def toml_spelling(name: str, value: Any = ...) -> str:
    """``[train] epochs``, ``[model] kind = "mlp"``: as an experiment file's key."""
    where = _SPECS[name].toml if name in _SPECS else None
    if where is None:
        return python_spelling(name, value)
    if "." not in where:  # a whole table
        return f"[{where}]"
    section, key = where.split(".")
    if value is ...:
        return f"[{section}] {key}"
    shown = f'"{value}"' if isinstance(value, str) else str(value).lower()
    return f"[{section}] {key} = {shown}"


_SPECS: dict[str, Spec] = {f.name: f.metadata["spec"] for f in fields(Options)}


def declared() -> Iterator[tuple[str, Spec, Any]]:
    """Every option as ``(name, spec, default)``, in declaration order."""
    for f in fields(Options):
        yield f.name, f.metadata["spec"], f.default


# -- derived: the train command's flags, the experiment file's keys ----------------------------


def add_flags(parser: argparse.ArgumentParser, convert: Callable[[Callable], Callable]) -> None:
    """Every option with a flag, as ``parser``'s argument (left out: None, so the option's
    own default applies). ``convert`` wraps a parse function for argparse."""
    for name, spec, default in declared():
        if spec.flag is None:
            continue
        shown = "" if default in (None, False, ()) else f" (default {default})"
        kwargs: dict[str, Any] = {"dest": name, "help": spec.help + shown, "default": None}
        if spec.parse is None:
            kwargs["action"] = "store_true"
        else:
            kwargs |= {"type": convert(spec.parse), "choices": spec.choices}
            kwargs["metavar"] = spec.metavar
            if spec.many:
                kwargs["action"] = "append"
        parser.add_argument(spec.flag, **kwargs)


def from_flags(args: argparse.Namespace) -> Options:
    """The options of a parsed command line (flags left out take their defaults); errors
    spelled as flags."""
    given = {name: getattr(args, name) for name, spec, _ in declared() if spec.flag is not None}
    given = {name: value for name, value in given.items() if value is not None}
    return Options(**given)  # errors: the command line spells them (cli.main)


def toml_schema() -> dict[str, dict[str, Any]]:
    """The experiment file's run keys, by section, with their defaults."""
    schema: dict[str, dict[str, Any]] = {}
    for _, spec, default in declared():
        if spec.toml is not None and "." in spec.toml:
            section, key = spec.toml.split(".")
            schema.setdefault(section, {})[key] = default
    return schema


def toml_tables() -> dict[str, str]:
    """The experiment file's sections that are one option each, a free table (``[model_args]``):
    section → option."""
    return {
        spec.toml: name
        for name, spec, _ in declared()
        if spec.toml is not None and "." not in spec.toml
    }


def from_toml(settings: dict[str, dict[str, Any]]) -> Options:
    """The options an experiment file's sections give; errors spelled as its keys."""
    given = {}
    for name, spec, _ in declared():
        if spec.toml is not None and "." not in spec.toml:
            if settings.get(spec.toml):
                given[name] = settings[spec.toml]
        elif spec.toml is not None:
            section, key = spec.toml.split(".")
            if key in settings.get(section, {}):
                given[name] = settings[section][key]
    try:
        return Options(**given)
    except OptionError as err:
        raise InvalidInput(err.spelled(toml_spelling)) from None
