"""The one spec of run options: every declared option reaches every surface (train()'s keywords,
train's flags, the experiment file, the result's JSON, checkpoint compatibility), and errors
name an option as each surface spells it."""

from __future__ import annotations

import inspect
import json

import pytest
from helpers import xptrain

import xptrain as xp_train
from xptrain import experiment, options
from xptrain.api import train_problem
from xptrain.cli import build_parser
from xptrain.data import SEED_Y, load
from xptrain.errors import OptionError
from xptrain.options import Options

DECLARED = [name for name, _, _ in options.declared()]


def test_every_option_reaches_every_surface():
    flags = build_parser("train")._subparsers._group_actions[0].choices["train"]
    dests = {a.dest: a for a in flags._actions}
    signature = inspect.signature(xp_train.train).parameters
    schema = {f"{s}.{k}" for s, keys in experiment.SCHEMA.items() for k in keys or ()}
    schema |= {s for s, keys in experiment.SCHEMA.items() if keys is None}  # free tables
    record = xp_train.train([[0.0, 1.0], [1.0, 0.0]], [0, 1], epochs=1).to_dict()
    for name, spec, default in options.declared():
        assert name in signature and signature[name].default == default, name
        assert name in record, name
        if spec.flag is not None:
            assert dests[name].option_strings == [spec.flag], name
        if spec.toml is not None:
            assert spec.toml in schema, name


def test_flags_left_out_give_the_declared_defaults():
    args = build_parser("train").parse_args(["train"])
    assert options.from_flags(args) == Options()
    args = build_parser("train").parse_args(["train", "--hidden", "4,2", "--exact"])
    assert options.from_flags(args) == Options(hidden=(4, 2), exact=True)


def test_model_and_hidden_settle_the_same_way_everywhere():
    assert (Options().model, Options().hidden) == ("logistic", ())
    assert Options(hidden=(4,)).model == "mlp"
    assert Options(model="mlp").hidden == options.DEFAULT_HIDDEN
    with pytest.raises(OptionError, match=r"hidden and activation need model='mlp'"):
        Options(model="logistic", hidden=(4,))
    assert Options(activation="tanh").hidden == options.DEFAULT_HIDDEN
    with pytest.raises(OptionError, match=r"need model='mlp'"):
        Options(model="logistic", activation="tanh")
    # new layers settle the model anew; a model given stays
    assert Options().replace(hidden=(4,)).model == "mlp"
    with pytest.raises(OptionError, match=r"need model='mlp'"):
        Options().replace(hidden=(4,), model="logistic")


@pytest.mark.parametrize(
    "given, python, flags, toml",
    [
        (
            {"epochs": 0},
            "epochs must be a whole number ≥ 1, got 0",
            ["--epochs", "0"],
            "[train]\nepochs = 0\n",
        ),
        ({"lr": -1.0}, "lr must be a finite number > 0", ["--lr=-1"], "[train]\nlr = -1.0\n"),
        (
            {"seed": -1},
            "seed must be a whole number from 0 to 2**32 - 1",
            ["--seed=-1"],
            "[train]\nseed = -1\n",
        ),
        (
            {"val_split": 1.5},
            "val_split must be a fraction between 0 and 1",
            ["--val-split", "1.5"],
            "[data]\nval_split = 1.5\n",
        ),
    ],
)
def test_errors_name_the_option_as_each_surface_spells_it(tmp_path, given, python, flags, toml):
    with pytest.raises(OptionError) as err:
        Options(**given)
    assert str(err.value).startswith(python)
    run = xptrain("train", *flags)
    flag = flags[0].split("=")[0]
    assert run.returncode == 2 and f"error: {flag} {python.split(' ', 1)[1]}" in run.stderr
    path = tmp_path / "exp.toml"
    path.write_text(toml)
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path)
    section, key = toml.split("\n")[0], toml.split("\n")[1].split(" ")[0]
    assert run.returncode == 2 and f"{section} {key} must" in run.stderr, run.stderr


def test_rules_between_options_are_spelled_too():
    with pytest.raises(
        OptionError, match=r"drop exact=True and grad='autodiff', or path='block:8'"
    ):
        Options(exact=True, path="block:8")
    run = xptrain("train", "--exact", "--path", "block:8")
    assert run.returncode == 2
    assert "--path block:8 needs the one-pass analytic gradient: drop --exact" in run.stderr


# A checkpoint of BASE, resumed with each option that must match changed: every one refused,
# naming it. Every option declared resume-must-match needs a row here.
BASE = {"model": "mlp", "hidden": (3,), "batch_size": 2, "val_split": 0.25, "epochs": 2}
CHANGED = {
    "lr": 0.5,
    "seed": 2,
    "optimizer": "momentum",
    "hidden": (4,),
    "activation": "tanh",
    "batch_size": 3,
    "loss": "bce-logits",
    "val_split": 0.5,
    "standardize": True,
}


def test_every_resume_rule_is_declared_and_enforced():
    from xptrain import backends

    # model and model_args too (a model change needs other options: below, and test_models)
    assert set(Options(**BASE).must_match()) == set(CHANGED) | {"model", "model_args"}
    problem, bk, saved = load("seed"), backends.get("numpy"), []
    train_problem(problem, bk, "cpu", Options(**BASE), on_checkpoint=saved.append)
    for name, value in CHANGED.items():
        other = Options(**{**BASE, "epochs": 3, name: value})
        with pytest.raises(OptionError, match=f"made with {name} .*resume with the same {name}$"):
            train_problem(problem, bk, "cpu", other, start=saved[-1])
    # options a resume may change: the precision, compilation, length
    again = Options(**{**BASE, "epochs": 3, "dtype": "float32", "exact": True})
    assert len(train_problem(problem, bk, "cpu", again, start=saved[-1]).losses) == 3
    other = Options(epochs=3, batch_size=2, val_split=0.25)  # the logistic model
    with pytest.raises(OptionError, match=r"made with model mlp; resume with the same model$"):
        train_problem(problem, bk, "cpu", other, start=saved[-1])


def test_the_json_record_holds_every_option(tmp_path):
    out = tmp_path / "r.json"
    run = xptrain("train", "--epochs", "2", "--standardize", "--json", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    settled = Options(epochs=2, standardize=True).for_labels(SEED_Y)  # 0/1 labels: bce
    assert {k: record[k] for k in DECLARED} == settled.to_json() and settled.loss == "bce"
    assert record["data"] == "seed" and len(record["scaling"]["mean"][0]) == 3
