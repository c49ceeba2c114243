"""The ``xptrain bench`` table: one row per record (``-`` where it has no timing), then, per GPU
configuration, where it overtakes the best CPU configuration (the crossover)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .terminal import align

_COLUMNS = (
    "backend",
    "model",
    "device",
    "mode",
    "path",
    "N",
    "D",
    "epoch ms",
    "min-max ms",
    "Msamples/s",
    "GB/s",
    "bound",
    "ratio",
    "compile s",
    "transfer s",
    "status",
)


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as a table, then a crossover line per GPU backend."""
    lines = [_COLUMNS, *(_table_row(r) for r in records)]
    out = align(lines)
    out += ["", *crossover(records)]
    return "\n".join(out)


def _table_row(r: dict[str, Any]) -> tuple[str, ...]:
    """One record's cells of the table ("-" where it has no timing)."""
    return (*_where(r), *_timings(r), r["status"][:60])


_ONE = {"devices": "device", "processes": "process", "workers": "worker"}


def _where(r: dict[str, Any]) -> tuple[str, ...]:
    """The configuration cells of a record: backend, model, device (× replicas), mode, path,
    N, D."""
    spread = ""
    if r.get("spread"):  # ×2 devices, ×1 device
        kind = _ONE.get(r["spread"], r["spread"]) if r["replicas"] == 1 else r["spread"]
        spread = f" ×{r['replicas']} {kind}"
    model = r.get("model", "logistic").rpartition(":")[2]  # a user's model: its NAME
    where = (r["backend"], model, r["device"] + spread, r["mode"], _path(r), str(r["n"]))
    return (*where, str(r["d"]))


def describe_config(r: dict[str, Any]) -> str:
    """A record's configuration in one cell: ``numpy logistic cpu eager fast 65536x64``."""
    backend, model, device, mode, path, n, d = _where(r)
    return f"{backend} {model} {device} {mode} {path} {n}x{d} {r.get('dtype', '')}".strip()


def _timings(r: dict[str, Any]) -> tuple[str, ...]:
    """The timing cells of a record."""
    bound = (
        _bound(r),
        f"{r['ratio_to_bound']:.2f}" if r.get("ratio_to_bound") else "-",
    )
    if r["status"] != "ok":
        return ("-",) * 4 + bound + ("-",) * 2
    return (
        f"{r['epoch_s'] * 1e3:.3g}",
        f"{r['epoch_s_min'] * 1e3:.3g}-{r['epoch_s_max'] * 1e3:.3g}",
        f"{r['samples_per_s'] / 1e6:.3g}",
        f"{r['gbps']:.3g}",
        *bound,
        f"{r['compile_s']:.3g}",
        f"{r['transfer_s']:.3g}",
    )


def _bound(r: dict[str, Any]) -> str:
    """The bound's cell: its GB/s and who read it (``12.3 torch``), ``in cache`` where X fits
    in the last-level cache (no memory bound claimed), ``-`` where there is none."""
    if r.get("bound_gbps"):
        by = f" {r['bound_by']}" if r.get("bound_by") else ""
        return f"{r['bound_gbps']:.3g}{by}"
    return "in cache" if (r.get("bound") or {}).get("in_cache") else "-"


def _path(record: dict[str, Any]) -> str:
    if record.get("path") == "exact":
        return "exact"
    return f"block {record['block']}" if record.get("block") else "full"


def best_cpu_times(records: Sequence[dict[str, Any]]) -> dict[tuple[int, int], float]:
    """The fastest CPU epoch (seconds) of each size (N, D) among finished records."""
    best: dict[tuple[int, int], float] = {}
    for r in records:
        if r["status"] == "ok" and r["device"] == "cpu":
            size = (r["n"], r["d"])
            best[size] = min(best.get(size, math.inf), r["epoch_s"])
    return best


def crossover(records: Sequence[dict[str, Any]]) -> list[str]:
    """Per GPU configuration: the smallest N at which it beats the best CPU configuration, and
    its speedup over that at the largest N both ran."""
    ok = [r for r in records if r["status"] == "ok"]
    best_cpu = best_cpu_times(ok)
    gpu = {(r["backend"], r["device"], r["mode"]) for r in ok if r["device"] != "cpu"}
    if not gpu:
        return ["crossover: no GPU configurations in these records"]
    return [_crossover(key, ok, best_cpu) for key in sorted(gpu)]


def _crossover(key: tuple[str, str, str], ok: list[dict], best_cpu: dict) -> str:
    """The crossover line of one GPU configuration (backend, device, mode)."""
    same = (r for r in ok if (r["backend"], r["device"], r["mode"]) == key)
    runs = sorted((r for r in same if (r["n"], r["d"]) in best_cpu), key=lambda r: (r["d"], r["n"]))
    wins = [r for r in runs if r["epoch_s"] < best_cpu[(r["n"], r["d"])]]
    first = f"N={wins[0]['n']} (D={wins[0]['d']})" if wins else "never, in these sizes"
    if runs:
        last = runs[-1]
        speedup = best_cpu[(last["n"], last["d"])] / last["epoch_s"]
        at_largest = f"{speedup:.3g}x at N={last['n']}, D={last['d']}"
    else:
        at_largest = "no CPU run of the same sizes"
    where = f"{key[0]}/{key[1]} {key[2]}"
    return f"crossover: {where} beats the best CPU configuration from {first}; {at_largest}"
