"""``xptrain bench --compare A B``: two saved runs side by side, one row per configuration timed
in both, with the ratio of their epoch times and its spread (as pytest-benchmark's compare)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bench import load_records, record_key
from .bench_table import describe_config
from .errors import InvalidInput
from .terminal import align

_COLUMNS = ("configuration", "A ms", "B ms", "B/A", "B/A min-max")


def latest(records: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """The last record of each configuration (a file may hold several runs of one)."""
    return {record_key(r): r for r in records}


def records_of(spec: str, out: str | None) -> list[dict[str, Any]]:
    """A run to compare: a results file, or a run id in ``out`` (--out)."""
    if Path(spec).is_file():
        return load_records(Path(spec))
    if out is None or not Path(out).is_file():
        raise InvalidInput(f"--compare {spec!r}: no such file (a run id needs --out, its file)")
    records = [r for r in load_records(Path(out)) if r.get("run_id") == spec]
    if not records:
        ids = sorted({str(r.get("run_id")) for r in load_records(Path(out)) if r.get("run_id")})
        raise InvalidInput(
            f"--compare {spec!r}: no such file, nor a run id in {out} (its runs: "
            f"{', '.join(ids) or 'none with an id'})"
        )
    return records


def compare_table(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    """Configurations timed in both runs: each one's epoch time in A and in B (ms), B/A, and
    B/A's spread from the runs' fastest and slowest repeats; then what only one run has."""
    first, second = latest(a), latest(b)
    both = [k for k in first if k in second and _ok(first[k]) and _ok(second[k])]
    rows = [_COLUMNS, *(_row(first[k], second[k]) for k in both)]
    lines = align(rows) if both else ["no configuration was timed in both runs"]
    return "\n".join([*lines, *_only("A", first, second), *_only("B", second, first)])


def _only(name: str, run: dict[tuple, Any], other: dict[tuple, Any]) -> list[str]:
    return [f"only in {name}: {describe_config(r)}" for k, r in run.items() if k not in other]


def _ok(record: dict[str, Any]) -> bool:
    return record.get("status") == "ok"


def _row(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    low = b["epoch_s_min"] / a["epoch_s_max"]
    high = b["epoch_s_max"] / a["epoch_s_min"]
    return (
        describe_config(a),
        f"{a['epoch_s'] * 1e3:.3g}",
        f"{b['epoch_s'] * 1e3:.3g}",
        f"{b['epoch_s'] / a['epoch_s']:.2f}",
        f"{low:.2f}-{high:.2f}",
    )
