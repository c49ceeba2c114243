"""``xptrain run experiment.toml``: every run of an experiment file into one folder, then the
agreement table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import check_table, experiment
from ..errors import InvalidInput
from ..files import check_output_dir, json_writer, write_all
from ..plot import agreement_figure, figure_writer, history_figure

DESCRIPTION = (
    "Run the experiment a TOML file describes (data, model, optimizer, epochs, and the "
    "backends × devices × dtypes to run it on) into one folder: each run's history "
    "(runs/*.json, written as each finishes), the agreement table against the float64 NumPy "
    "run (agreement.txt, agreement.json) and plots. Exit code 0 when every run agrees, 1 when "
    "any does not, 2 for bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``run``'s arguments: the file, the folder, resuming."""
    parser.add_argument("file", metavar="EXPERIMENT.toml")
    parser.add_argument(
        "--out", metavar="DIR", help="the results folder (default: the experiment's name)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="finish an interrupted run of the same file in --out"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Every run into the folder, then the table; exit 1 when any run disagrees."""
    exp = experiment.read(args.file)
    folder = check_output_dir(args.out or exp.name, "--out")
    report = experiment.run(exp, folder, resume=args.resume, progress_bar=not args.quiet)
    table = check_table.format_table(report)
    document = {"experiment": exp.settings, "name": exp.name, **report.to_dict()}
    outputs = [
        (folder / "agreement.json", json_writer(document)),
        (folder / "agreement.txt", lambda tmp: Path(tmp).write_text(table + "\n", "utf-8")),
    ]
    try:
        runs = experiment.histories(folder, exp)
        outputs += [
            (folder / "losses.png", figure_writer(history_figure(runs, exp.name))),
            (folder / "agreement.png", figure_writer(agreement_figure(report))),
        ]
    except InvalidInput as err:  # no matplotlib: the results stand without their plots
        print(f"xptrain run: no plots: {err}", file=sys.stderr)
    write_all(outputs)
    print(table)
    line = check_table.summary(report)
    print(f"{line}\nresults in {folder}")
    if not report.passed:
        print(f"xptrain run: {line}", file=sys.stderr)
        return 1
    return 0
