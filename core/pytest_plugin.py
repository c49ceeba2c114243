"""The pytest plugin (entry point ``pytest11``): ``pytest --xptrain-backend=NAME`` adds xptrain's
conformance checks for the array library NAME to any project's test run, one test per
configuration (reference problem × dtype × gradient engine × mode), each held to the float64
reference under xptrain's tolerance model. NAME is a built-in backend or any importable module
that is an Array API namespace. Without the option the plugin does nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from xptrain import check

_OPTION = "--xptrain-backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--xptrain-*`` options."""
    group = parser.getgroup("xptrain", "xptrain conformance checks")
    group.addoption(
        _OPTION,
        action="append",
        default=[],
        metavar="NAME",
        help="check this array library against xptrain's reference runs "
        "(repeatable; a built-in backend or an importable Array API module)",
    )
    group.addoption(
        "--xptrain-problems",
        default=None,
        metavar="A,B",
        help="reference problems to run (default: all whose data is installed)",
    )
    group.addoption(
        "--xptrain-dtypes", default=None, metavar="A,B", help="float64, float32 (default: both)"
    )
    group.addoption(
        "--xptrain-model",
        default=None,
        metavar="FILE.py:NAME",
        help="check your own model (with --xptrain-data, --xptrain-loss) instead of the "
        "reference problems",
    )
    group.addoption(
        "--xptrain-model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an argument for your model's class (repeatable)",
    )
    group.addoption("--xptrain-data", default="seed", metavar="SPEC", help="its data spec")
    group.addoption("--xptrain-loss", default="bce", metavar="LOSS", help="its loss")


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """With ``--xptrain-backend``: one test per configuration, after the project's own."""
    names = config.getoption(_OPTION)
    if not names:
        return
    from xptrain import check
    from xptrain.commands.common import listed
    from xptrain.errors import XptrainError

    def option(name: str) -> list[str] | None:
        value = config.getoption(name)
        return None if value is None else listed([value], name)

    try:
        problem_names = option("--xptrain-problems")
        if config.getoption("--xptrain-model") is not None:
            problem_names = [_own_problem(config).name]
            check.ready(problem_names[0])
        configs, _ = check.plan(
            problem_names,
            listed(names, _OPTION),
            None,
            option("--xptrain-dtypes"),
        )
    except XptrainError as err:
        raise pytest.UsageError(f"{_OPTION}: {err}") from None
    items.extend(
        ConformanceItem.from_parent(
            session, name=f"xptrain[{c.label}]", nodeid=f"xptrain::{c.label}", check_config=c
        )
        for c in configs
    )


def _own_problem(config: pytest.Config) -> Any:
    """The user's model of ``--xptrain-model`` as a problem of the check."""
    from xptrain import problems
    from xptrain.options import key_value

    return problems.custom(
        config.getoption("--xptrain-model"),
        config.getoption("--xptrain-data"),
        config.getoption("--xptrain-loss"),
        model_args=tuple(key_value(text) for text in config.getoption("--xptrain-model-arg")),
    )


class ConformanceFailure(AssertionError):
    """A configuration outside the tolerance (or one that could not run)."""


class ConformanceItem(pytest.Item):
    """One configuration of ``xptrain check`` as a test."""

    def __init__(self, *, check_config: check.Config, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_config = check_config

    def runtest(self) -> None:
        """Run the configuration (twice) and fail with its one-sentence description."""
        from xptrain import check, check_table

        row, _ = check.run_config(self.check_config)
        if not row.passed:
            row = check.with_culprit(row)  # the sentence names the operation to blame
            raise ConformanceFailure(check_table.describe_failure(row))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """A conformance failure as its sentence, not a traceback into xptrain."""
        if isinstance(excinfo.value, ConformanceFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        """How pytest names the test in its reports."""
        return self.path, None, f"xptrain conformance: {self.check_config.label}"
