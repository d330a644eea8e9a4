"""Racing: the exact top-K heads from fewer head-example evaluations.

Examples come in seeded rounds that double the examples seen (``round_size``, ``round_size``,
``2·round_size``, ...). Every head still *undecided* is scored exactly
on each new round; then each head gets a confidence interval of its mean over the examples it was
scored on. A head whose upper bound is below the K-th largest lower bound is *out*; one whose lower
bound is above the (K+1)-th largest upper bound is *in*. Rounds stop when every head is decided or
the examples run out; the final contenders (in and undecided) are then scored on every example,
so their values and ranking are those of the full exact scan; heads that went out keep the
examples they had.

The guarantee: with probability at least ``1 − delta`` no head is put in or out wrongly, when
the per-example values of a head are independent draws (examples sampled at random) whose mean is
close to normal. The intervals are Student-t intervals at level ``1 − delta / (H · R)`` for ``H``
raced heads and ``R`` rounds (a union bound over every look at every head), so they stay valid
however many times the race looks at the data.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Float
from scipy.stats import t as student_t
from torch import Tensor

from dps_lens.heads import Head
from dps_lens.scoring.head_scores import IN, OUT, UNDECIDED
from dps_lens.scoring.planners import exact_cells_work
from dps_lens.scoring.scan import ScanState, Work, register_scan_method


def race_rounds(n_examples: int, round_size: int, seed: int) -> list[list[int]]:
    """A seeded order of the examples, cut into rounds that double the examples seen: the first
    two rounds have ``round_size`` examples, each later one as many as all before it (the last
    may be smaller). ``R = ⌈log2(n / round_size)⌉ + 1`` rounds, so few looks at the data."""
    order = list(range(n_examples))
    random.Random(seed).shuffle(order)
    rounds, start = [], 0
    while start < n_examples:
        size = max(round_size, start)
        rounds.append(order[start : start + size])
        start += size
    return rounds


def ranked_values(state: ScanState) -> Float[Tensor, "n_examples n_layers n_heads"]:
    """Per-example values of the raced quantity: PCS, or ΔPCS with ``select="specific"``."""
    values = state.checkpoint.per_example
    n = state.n_examples
    if state.config.select == "specific":
        return values[:n] - values[n:]
    return values[:n]


def bounds(
    values: Float[Tensor, "n_seen n_layers n_heads"], level: float
) -> tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]:
    """Two-sided Student-t bounds at confidence ``level`` of each head's mean over the examples
    it was scored on (non-NaN); ``±inf`` where a head has fewer than two."""
    scored = ~torch.isnan(values)
    n = scored.sum(0)
    mean = values.nan_to_num(0.0).sum(0) / n.clamp_min(1)
    squares = ((values - mean).nan_to_num(0.0) ** 2).sum(0)
    sd = (squares / (n - 1).clamp_min(1)).sqrt()
    quantile = torch.tensor(
        [student_t.ppf(0.5 + level / 2, df=max(int(m) - 1, 1)) for m in n.flatten()],
        dtype=values.dtype,
    ).reshape(n.shape)
    half = quantile * sd / n.clamp_min(1).sqrt()
    half = torch.where(n >= 2, half, torch.full_like(half, math.inf))
    return mean - half, mean + half


def decide(status: dict[Head, int], low: Tensor, high: Tensor, k: int) -> None:
    """Put undecided heads in or out of the top ``k`` where the bounds of all raced heads allow."""
    heads = list(status)
    if len(heads) <= k:
        status.update(dict.fromkeys(heads, IN))
        return
    lows = sorted((float(low[h]) for h in heads), reverse=True)
    highs = sorted((float(high[h]) for h in heads), reverse=True)
    kth_low, next_high = lows[k - 1], highs[k]
    for head in heads:
        if status[head] != UNDECIDED:
            continue
        if float(high[head]) < kth_low:
            status[head] = OUT
        elif float(low[head]) > next_high:
            status[head] = IN


@register_scan_method("racing")
def racing_work(state: ScanState) -> Iterator[Work]:
    """Rounds of exact scoring of the undecided heads, then the contenders on every example."""
    config, n = state.config, state.n_examples
    contrast = config.contrast == "no-profile"
    rounds = race_rounds(n, config.round_size, config.seed)
    level = 1 - config.delta / (len(state.heads) * len(rounds))
    status: dict[Head, int] = dict.fromkeys(state.heads, UNDECIDED)
    length = {row: len(state.encoded[row].input_ids) for row in range(len(state.encoded))}

    def rows_of(examples: Sequence[int]) -> list[int]:
        rows = [*examples, *(i + n for i in examples)] if contrast else list(examples)
        return sorted(rows, key=length.__getitem__)

    seen: list[int] = []
    for examples in rounds:
        seen += examples
        undecided = [head for head, code in status.items() if code == UNDECIDED]
        yield from exact_cells_work(state, undecided, rows_of(examples))
        state.share()  # under torchrun: the other ranks' cells of this round
        low, high = bounds(ranked_values(state)[seen], level)
        decide(status, low, high, config.k)
        if UNDECIDED not in status.values():
            break
    contenders = [head for head, code in status.items() if code != OUT]
    yield from exact_cells_work(state, contenders, rows_of(range(n)))
    for (layer, head), code in status.items():
        state.status[layer, head] = code
