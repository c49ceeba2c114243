"""Analytic gradients through a model's ``backward``, written against the Array API: the
full-batch form (the seed's arithmetic for its model), and a one-pass blocked form that reads X
once per epoch."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import in_turn, python_fold
from .loss import Loss
from .models import Params, backward, forward_for_backward

# The targets of a padding row: data-parallel runs pad the rows to a multiple of the devices,
# and a masked gradient leaves these rows out (NaN: no loss has it as a real target).
PAD_LABEL = float("nan")

# fold(body, init, count): body(i, carry) -> carry for i = 0 .. count-1, the last carry back.
Fold = Callable[[Callable[[Any, Any], Any], Any, int], Any]
# spread(fn, count): [fn(0), ..., fn(count-1)], independent pieces, perhaps on threads.
Spread = Callable[[Callable[[int], Any], int], list[Any]]


def loss_and_grads(
    xp: Any, model: Any, loss: Loss, params: Params, X: Any, y: Any
) -> tuple[Any, Params]:
    """The metrics (:func:`metric_means`: the loss, and the accuracy for a loss with classes)
    and every parameter's gradient, full batch, through the model's ``backward``:
    ``G = ∂Σterms/∂outputs`` (the seed's ``dz = A - y`` for bce), the model's gradient sums,
    each divided by the loss's count once (the seed's ``1/N * X.T·dz``: its bits)."""
    outputs, residuals = forward_for_backward(model, xp, params, X)
    terms, G = loss.terms_and_grad(xp, y, outputs)
    scale = 1 / loss.count(y)
    sums = backward(model, xp, params, X, G, residuals)
    metrics = metric_means(xp, loss, metric_sums(xp, loss, y, outputs, terms), *y.shape)
    return metrics, tuple(scale * s for s in sums)


def metric_sums(
    xp: Any, loss: Loss, y: Any, outputs: Any, terms: Any, keep: Any = None
) -> tuple[Any, ...]:
    """``(Σ terms,)``, or for a loss with classes ``(Σ terms, Σ hits)``: 0-d sums that row
    blocks and replicas add up as they add gradients; ``keep``: the rows that count."""
    if not loss.classifies:
        return (xp.sum(terms),)
    hits = loss.hits(xp, y, outputs)
    if keep is not None:
        hits = xp.where(keep, hits, xp.zeros_like(hits))
    return xp.sum(terms), xp.sum(hits)


def metric_means(xp: Any, loss: Loss, sums: Any, rows: int, columns: int) -> Any:
    """The epoch's metrics, one device vector, from :func:`metric_sums` (or their stack) over
    ``rows`` rows of ``columns`` targets: ``[loss]`` (``1/count · Σ terms``, the seed's bits)
    or ``[loss, accuracy]``."""
    scale = 1 / (rows * (columns if loss.per_element else 1))
    if isinstance(sums, tuple):  # 0-d sums: scaled one by one, then put in one vector
        means = (scale * sums[0], sums[1] / rows) if loss.classifies else (scale * sums[0],)
        return _vector(xp, means)
    value = scale * sums[:1]
    return xp.concat([value, sums[1:] / rows]) if loss.classifies else value


def _vector(xp: Any, values: tuple[Any, ...]) -> Any:
    """0-d values as one vector. NumPy's reductions give host scalars (``np.float64``), which
    ``asarray`` copies in ~0.5 µs; ``stack`` takes ~4 µs, a tenth of a small problem's epoch
    (bench/call_overhead.py). Any other library's 0-d arrays are stacked."""
    if all(isinstance(v, np.generic) for v in values):
        return xp.asarray(values, dtype=values[0].dtype)
    return xp.stack(values)


# -- one pass over row blocks ---------------------------------------------------------------------


def masked_targets(xp: Any, y: Any) -> tuple[Any, Any]:
    """``(keep, y)``: which rows are not padding (N × 1 booleans; a padding row's targets are
    :data:`PAD_LABEL`, NaN) and the targets with padding set to 0, so nothing computed from
    them is NaN (a zero cotangent times NaN would still be NaN)."""
    keep = y[:, :1] == y[:, :1]
    return keep, xp.where(keep, y, xp.zeros_like(y))


def _block_step(
    xp: Any,
    model: Any,
    loss: Loss,
    params: Params,
    X: Any,
    y: Any,
    masked: bool,
    carry: tuple,
) -> tuple:
    """Add one block's loss sum and gradient sums to ``carry``; ``masked``: padding rows
    (targets :data:`PAD_LABEL`) add nothing."""
    total, sums = carry
    keep = None
    if masked:
        keep, y = masked_targets(xp, y)
    outputs, residuals = forward_for_backward(model, xp, params, X)
    terms, G = loss.terms_and_grad(xp, y, outputs)
    if keep is not None:
        terms = xp.where(keep, terms, xp.zeros_like(terms))
        G = xp.where(keep, G, xp.zeros_like(G))
    grads = backward(model, xp, params, X, G, residuals)
    block = metric_sums(xp, loss, y, outputs, terms, keep)
    total = tuple(t + b for t, b in zip(total, block, strict=True))
    return total, tuple(s + g for s, g in zip(sums, grads, strict=True))


def blocked_loss_and_grads(
    xp: Any,
    model: Any,
    loss: Loss,
    params: Params,
    X: Any,
    y: Any,
    block: int | None = None,
    fold: Fold | None = None,
    spread: Spread | None = None,
    workers: int = 1,
) -> tuple[Any, Params]:
    """The loss and every parameter's gradient in ONE pass over X, ``block`` rows at a time.

    Each block ``X[start:stop]`` goes forward through the model, its loss terms are *summed*,
    and the model's backward adds its gradient sums to running sums; the loss and the sums are
    divided by the loss's count once, at the end. So a block of X is read twice while it is
    still in cache, X is read from memory once, and no temporary is bigger than a block (the
    full-batch path reads X twice and makes N-sized outputs and gradients).

    ``block`` rows per block (default :func:`block_rows`); the ``N // block`` full blocks run
    under ``fold`` (a backend's :meth:`~xptrain.backends.Backend.fold`, e.g. ``jax.lax.fori_loop``
    so a compiled step is not unrolled; default a Python loop), indexing a
    ``(blocks, block, D)`` view with the loop counter; the remainder block, if any, is done once
    after it, with static shapes. With ``workers`` > 1 the full blocks are cut into that many
    contiguous groups, folded independently by ``spread`` (a backend's
    :meth:`~xptrain.backends.Backend.spread`: threads on NumPy) and their sums added in order,
    so the result depends on ``workers`` only through the summation order.

    Returns ``(metrics, grads)`` like :func:`loss_and_grads`: the same values and gradients, summed
    in another order (float64: ~1e-15 relative apart; float32: a few ulps·√N). With ``block >=
    N`` it is one block, which is *not* guaranteed to round as the full batch does: callers that
    must reproduce the seed bit for bit use the full-batch path when one block covers N. For
    JAX, pass ``block=block_rows(..., compiled=True)``.
    """
    total, sums = blocked_sums(xp, model, loss, params, X, y, block, fold, spread, workers)
    scale = 1 / loss.count(y)
    return metric_means(xp, loss, total, *y.shape), tuple(scale * s for s in sums)


def blocked_sums(
    xp: Any,
    model: Any,
    loss: Loss,
    params: Params,
    X: Any,
    y: Any,
    block: int | None = None,
    fold: Fold | None = None,
    spread: Spread | None = None,
    workers: int = 1,
    masked: bool = False,
) -> tuple[Any, Params]:
    """:func:`blocked_loss_and_grads` before its division by the count: the loss terms (and
    hits) *summed* over the rows (:func:`metric_sums`) and every parameter's gradient sums. A
    data-parallel run adds these over its replicas and divides by the global count.
    ``masked``: rows whose targets are :data:`PAD_LABEL` (the padding that makes rows divide
    evenly over devices) add nothing."""
    n, d = X.shape
    block = block_rows(n, d, _itemsize(xp, X)) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be ≥ 1 row, got {block}")
    block = min(block, n)
    fold = python_fold if fold is None else fold
    full, rest = divmod(n, block)
    # zeros_like of a 0-d slice: X's dtype and device without asking for the device
    # (array_api_compat's device() is an lru_cache'd helper that torch.compile warns about)
    zero = xp.zeros_like(X[0, 0])
    init = ((zero, zero) if loss.classifies else (zero,), tuple(xp.zeros_like(p) for p in params))

    def step(X_part: Any, y_part: Any, carry: tuple) -> tuple:
        return _block_step(xp, model, loss, params, X_part, y_part, masked, carry)

    def body(i: Any, carry: tuple) -> tuple:
        # The (blocks, block, ·) views are taken inside the body: outside it, XLA copies the
        # slice X[:full·block] (all of X again) before the loop whenever N % block != 0.
        Xs = xp.reshape(X[: full * block, ...], (full, block, d))
        ys = xp.reshape(y[: full * block, ...], (full, block, y.shape[1]))
        return step(Xs[i, ...], ys[i, ...], carry)

    def group(g: int) -> tuple:
        # blocks lo .. hi-1, folded in order: contiguous rows, a fixed summation order
        lo, hi = g * full // groups, (g + 1) * full // groups
        if hi - lo == 1:
            return step(X[lo * block : hi * block, ...], y[lo * block : hi * block, ...], init)
        return fold(lambda i, c: body(lo + i, c), init, hi - lo)

    groups = max(1, min(workers, full))
    partials = [group(0)] if groups == 1 else (spread or in_turn)(group, groups)
    carry = functools.reduce(_add, partials) if full else init
    if rest:
        start = full * block
        carry = step(X[start:, ...], y[start:, ...], carry)
    totals, sums = carry
    return xp.stack(totals), sums  # one vector: what replicas add up


def _add(a: tuple, b: tuple) -> tuple:
    """Two partial (metric sums, gradient sums) pairs added."""
    return tuple(x + y for x, y in zip(a[0], b[0], strict=True)), tuple(
        x + y for x, y in zip(a[1], b[1], strict=True)
    )


# -- block size -----------------------------------------------------------------------------------

# Where sysfs cannot be read (other systems, containers that hide it): common sizes per level.
_FALLBACK_CACHE = {1: 32 << 10, 2: 1 << 20, 3: 8 << 20}
MIN_ROWS = 256  # below this, per-block dispatch outweighs any cache win


@functools.cache  # sysfs is read once per process, not on every run
def cache_bytes(level: int = 2, cpu: str = "/sys/devices/system/cpu/cpu0/cache") -> int:
    """The size of CPU 0's data (or unified) cache at ``level``, from Linux sysfs; a common size
    (L1 32 KiB, L2 1 MiB, L3 8 MiB) where it cannot be read."""
    try:
        for index in sorted(Path(cpu).glob("index*")):
            if int((index / "level").read_text()) != level:
                continue
            if (index / "type").read_text().strip() == "Instruction":
                continue
            return _parse_size((index / "size").read_text())
    except (OSError, ValueError):
        pass
    return _FALLBACK_CACHE.get(level, 1 << 20)


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    number = int(text[:-1] if scale != 1 else text)
    if number <= 0:
        raise ValueError(text)
    return number * scale


def block_rows(
    n: int, d: int, itemsize: int, *, compiled: bool = False, cache: int | None = None
) -> int:
    """Rows per block for :func:`blocked_loss_and_grads`: a power of two, at least
    :data:`MIN_ROWS`, at most ``n``, whose slice of X (``rows·d·itemsize`` bytes) fills a cache
    budget, so the backward pass re-reads the block from cache, not from memory:

    - ``compiled`` (the block loop runs inside compiled code, JAX's ``fold``; an iteration costs
      microseconds): half the per-core L2, the other half for the block's temporaries. 1 MiB
      L2, D = 64, float32: 2048 rows (512 KiB).
    - eager (NumPy, torch: every operation of a block is a library call, ~20 per block at 1-5
      µs each): an eighth of the shared L3, so the calls are amortised over a block that takes
      ~100 µs to read from memory, and the block and its temporaries still stay in L3 beside
      another core's. 32 MiB L3, D = 64, float32: 16384 rows (4 MiB).

    ``cache`` overrides the budget's cache size in bytes (default: read from sysfs).
    Measured on a 2-core AMD EPYC (L2 1 MiB, L3 32 MiB), N = 2**20, D = 64, float32: NumPy and
    torch are fastest at 16384-32768 rows and 1.4x slower at 2048; see bench/test_fastpath.py.
    When the result covers all N rows, callers may as well use the full-batch path.
    """
    if cache is None:
        cache = cache_bytes(2) if compiled else cache_bytes(3)
    budget = cache // 2 if compiled else cache // 8
    rows = max(1, budget // max(1, d * itemsize))
    rows = max(MIN_ROWS, 1 << int(math.log2(rows)))
    return max(1, min(n, rows))


def _itemsize(xp: Any, X: Any) -> int:
    return xp.finfo(X.dtype).bits // 8
