"""A check's configurations run side by side in worker processes: independent runs on a
machine's cores instead of one after another (each configuration still runs twice in one
process, so repeatability is still tested where it can fail).

What runs in a worker: single-device CPU configurations of the built-in problems, dealt out
one at a time, so the workers finish together (a backend's configurations kept together left
one core idle while the other ran Dask's); a worker imports each library it meets once, holds
its share of the cores (each library's threads limited before it starts: pools as wide as
the machine in every worker made them spin against each other), and compiled code is shared
through the libraries' caches on disk (``check --compile-cache``).
What stays in this process, run while the workers work: GPU configurations (one device:
workers would contend for its memory), data-parallel and process-group ones, and users' own
models (an object or file registered here is not in a fresh process). Workers are spawned,
never forked (JAX and torch may already run threads here).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import queue
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import backends, check, problems
from .backends import threads
from .check import Config, Row, error_row

Done = tuple[int, Row, dict[str, Any]]  # (the configuration's index, its row, its info)


def default_jobs() -> int:
    """The cores this process may use, at most 4 (every worker holds its libraries)."""
    return max(1, min(4, threads.cores()))


def worker_threads(workers: int) -> int:
    """Each of ``workers`` processes' threads: an equal share of the cores, at least one (two
    workers each running pools as wide as the machine made a check's torch rows 2.6-9x
    slower: :mod:`xptrain.backends.threads`)."""
    return max(1, threads.cores() // workers)


def results(
    configs: Sequence[Config],
    jobs: int,
    explain: bool,
    meanwhile: Callable[[], None] | None = None,
) -> Iterator[Done]:
    """Every configuration's row and info, as each finishes. With ``jobs`` > 1 and more than
    one backend to spread, the workers start first, each taking the next configuration as it
    finishes one (so no core idles while another works through a long backend); the ones that
    must stay here run meanwhile, then ``meanwhile()``, this process's other work. Otherwise
    all run here, in order (one backend gains nothing from workers but their start-up), and
    ``meanwhile`` is not called."""
    spread = _spread(configs, jobs)
    here = sorted(set(range(len(configs))) - set(spread))
    if not spread:
        for i in here:
            yield (i, *_one(configs[i], explain))
        return
    yield from _in_workers(configs, [[i] for i in spread], jobs, explain, here, meanwhile)


def _spread(configs: Sequence[Config], jobs: int) -> list[int]:
    """The configurations the workers run: none for one job or one backend."""
    spread = [i for i, c in enumerate(configs) if jobs > 1 and _may_spread(c)]
    return spread if len({configs[i].backend for i in spread}) > 1 else []


def workers_note(configs: Sequence[Config], jobs: int) -> str | None:
    """How ``jobs`` shared the cores, for the report (None: all ran in this process)."""
    spread = _spread(configs, jobs)
    if not spread:
        return None
    workers = min(jobs, len(spread))
    each = worker_threads(workers)
    return (
        f"{len(spread)} configurations ran in {workers} worker processes side by side, "
        f"{each} thread{'s' if each > 1 else ''} each (JAX's pool excepted; "
        f"{threads.cores()} cores here; --jobs 1: one after another in one process)"
    )


def _may_spread(config: Config) -> bool:
    single = config.data_parallel is None and config.processes is None
    return single and config.device == "cpu" and problems.get(config.problem).model is None


def _in_workers(
    configs: Sequence[Config],
    groups: list[list[int]],
    jobs: int,
    explain: bool,
    here: Sequence[int] = (),
    meanwhile: Callable[[], None] | None = None,
    work: Callable[[list[tuple[int, Config]], bool], None] | None = None,
) -> Iterator[Done]:
    """The groups in ``jobs`` spawned workers (a free worker takes the next group), each row
    back through a queue as soon as it is done; ``here`` run in this process meanwhile, then
    ``meanwhile()``. A worker that dies fails the rows it had not sent (the check fails
    closed). ``work``: what a worker runs (default :func:`run_group`)."""
    context = multiprocessing.get_context("spawn")
    done: Any = context.Queue()
    workers = min(jobs, len(groups))
    share = worker_threads(workers)
    kept = backends.kept_compiled()
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_connect, initargs=(done, kept, share)
    )
    try:
        job = work or run_group
        futures = {pool.submit(job, [(i, configs[i]) for i in g], explain): g for g in groups}
        for i in here:
            yield (i, *_one(configs[i], explain))
        if meanwhile is not None:
            meanwhile()
        pending = {i for group in groups for i in group}
        while pending:
            try:
                i, row, info = done.get(timeout=0.5)
            except queue.Empty:
                yield from _lost(configs, futures, pending)
                continue
            pending.discard(i)
            yield i, row, info
    finally:  # every row is in (or the check stops): the report need not wait while the
        # workers' libraries tear down (~1-3 s); the process's exit still joins them
        pool.shutdown(wait=False, cancel_futures=True)


def _lost(configs: Sequence[Config], futures: dict, pending: set[int]) -> Iterator[Done]:
    """Error rows for the configurations of groups whose worker failed and never sent them."""
    for future, group in futures.items():
        if future.done() and future.exception() is not None:
            for i in sorted(pending & set(group)):
                pending.discard(i)
                yield i, error_row(configs[i], None, future.exception()), {}


_DONE: Any = None  # a worker's queue back to the check


def _connect(done: Any, kept: tuple[Path | None, ...], share: int) -> None:
    """A worker's start: its queue back, its share of the cores (before any library starts
    its threads), and its libraries' compiled code kept as here."""
    global _DONE
    _DONE = done
    threads.share(share)
    if kept:
        backends.keep_compiled(*kept)


def run_group(configs: list[tuple[int, Config]], explain: bool) -> None:
    """A worker's job: its configurations one after another, each row sent back when done."""
    for i, config in configs:
        _DONE.put((i, *_one(config, explain)))


def _one(config: Config, explain: bool) -> tuple[Row, dict[str, Any]]:
    row, info = check.run_config(config)  # looked up on the module: a test may replace it
    return (check.with_culprit(row) if explain else row), info
