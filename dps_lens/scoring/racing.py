"""Racing: the exact top-K heads from fewer head-example evaluations.

Examples come in seeded rounds that double the examples seen (``round_size``, ``round_size``,
``2·round_size``, ...). Every head still *undecided* is scored exactly on each new round in turn
(``race_allocation="uniform"``), or only the ``k`` undecided heads with the highest upper bounds
get their next round at each step (``"boundary"``); then each head gets a confidence interval of
its mean over the rounds it was scored on. A head whose upper bound is below the K-th largest lower
bound is *out*; one whose lower bound is above the (K+1)-th largest upper bound is *in*. Rounds
stop when every head is decided or the examples run out; the final contenders (in and undecided)
are then scored on every example, so their values and ranking are those of the full exact scan;
heads that went out keep the examples they had.

The guarantee: with probability at least ``1 − delta`` no head is put in or out wrongly, when the
per-example values of a head are independent draws (examples sampled at random) whose mean is close
to normal. The bounds are ``race_bounds`` (``ScanConfig.bounds``): Student-t intervals at level
``1 − delta / (H · R)`` for ``H`` raced heads and ``R`` rounds (a union bound over every look at
every head), or an asymptotic confidence sequence valid at every look at level ``1 − delta / H``.

``ppi-racing`` races the same way on prediction-powered estimates: attribution scores every head
on every example first (``predictions``), and each look's estimate of a head is the PPI++ mean of
its exact cells rectifying those predictions (``dps_lens.scoring.ppi``), unbiased whatever
attribution's bias and narrower when attribution tracks the exact effect. With an indifference
zone ``epsilon`` (nats, or a share of the K-th head's estimate: ``"10%"``) a head may be called in
when it is within ``epsilon`` of the K-th (the (ε, δ)-PAC top K).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.heads import Head
from dps_lens.scoring.head_scores import IN, OUT, UNDECIDED
from dps_lens.scoring.planners import exact_cells_work
from dps_lens.scoring.race_bounds import race_bounds
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


def race_looks(rounds: Sequence[Sequence[int]]) -> tuple[Tensor, list[int]]:
    """The race's order of the examples (the rounds one after another) and the examples seen
    after each round: a head is only ever looked at on a prefix ``order[:seen[r]]``."""
    order = torch.tensor([i for examples in rounds for i in examples])
    return order, torch.tensor([len(examples) for examples in rounds]).cumsum(0).tolist()


def ranked_values(state: ScanState) -> Float[Tensor, "n_examples n_layers n_heads"]:
    """Per-example values of the raced quantity: PCS, or ΔPCS with ``select="specific"``."""
    values = state.checkpoint.per_example
    n = state.n_examples
    if state.config.select == "specific":
        return values[:n] - values[n:]
    return values[:n]


def decide(
    status: dict[Head, int], low: Tensor, high: Tensor, k: int, epsilon: float = 0.0
) -> None:
    """Put undecided heads in or out of the top ``k`` where the bounds of all raced heads allow:
    out when its upper bound is below the K-th largest lower bound of the *other* heads (plus
    ``epsilon``), in when its lower bound is above the K-th largest upper bound of the other heads
    (minus ``epsilon``). With every bound holding, a head put in has a mean above the K-th largest
    mean − ``epsilon`` and a head put out one below the (K+1)-th + ``epsilon``; at most K heads
    are ever in and all but K out. At ``epsilon`` = 0 these are the K-th largest lower and the
    (K+1)-th largest upper bound of all heads, and no head can meet both rules or the limits."""
    heads = list(status)
    if len(heads) <= k:
        status.update(dict.fromkeys(heads, IN))
        return
    lows = sorted((float(low[h]) for h in heads), reverse=True)
    highs = sorted((float(high[h]) for h in heads), reverse=True)
    places = {IN: k, OUT: len(heads) - k}  # an indifference zone may not decide more than these
    for code in status.values():
        if code in places:
            places[code] -= 1
    for head in sorted(heads, key=lambda h: -float(low[h])):  # in: the strongest first
        other_high = _kth_of_others(highs, float(high[head]), k)
        if status[head] == UNDECIDED and places[IN] > 0 and low[head] > other_high - epsilon:
            status[head], places[IN] = IN, places[IN] - 1
    for head in sorted(heads, key=lambda h: float(high[h])):  # out: the weakest first
        other_low = _kth_of_others(lows, float(low[head]), k)
        if status[head] == UNDECIDED and places[OUT] > 0 and high[head] < other_low + epsilon:
            status[head], places[OUT] = OUT, places[OUT] - 1


def _kth_of_others(ordered: list[float], own: float, k: int) -> float:
    """The K-th largest of ``ordered`` (all heads' values, largest first, ``own`` among them)
    once one head of value ``own`` is left out."""
    return ordered[k] if own >= ordered[k - 1] else ordered[k - 1]


def fewest_race_evaluations(
    values: Float[Tensor, "n_examples n_layers n_heads"],
    k: int,
    delta: float,
    round_size: int,
    seed: int = 0,
    bounds: str = "t-union",
    predictions: Float[Tensor, "n_examples n_layers n_heads"] | None = None,
    epsilon: float = 0.0,
) -> int:
    """A floor on what racing can save on a full exact scan's per-example ``values``: the fewest
    head × example evaluations any race could reach with these ``bounds`` (and, for
    ``ppi-racing``, attribution's ``predictions`` of every example), example order and rounds,
    however it allocated the rounds to heads. No head can go out before its upper bound falls
    below the K-th largest lower bound that any other head reaches at any round (plus an indifference
    zone ``epsilon``, in nats), and contenders cost every example; so head ``h`` costs at least
    the examples seen at the first round where that happens (every example if it never does), and
    the K heads of largest such cost are contenders, which cost every example."""
    n, n_heads = values.shape[0], values[0].numel()
    if n_heads <= k:
        return n * n_heads
    rounds = race_rounds(n, round_size, seed)
    order, seen = race_looks(rounds)
    chosen = race_bounds(bounds)

    def look(m: int) -> tuple[Tensor, Tensor]:
        partial = torch.full_like(values, math.nan)
        partial[order[:m]] = values[order[:m]]
        return chosen.bounds(
            partial, predictions, delta, n_heads, len(rounds), race_t_opt(n, round_size)
        )

    looks = [look(m) for m in seen]
    best_low = torch.stack([low for low, _ in looks]).amax(0).flatten()
    ordered = best_low.topk(k + 1).values  # the K-th largest of the other heads, per head
    kth_low = torch.where(best_low >= ordered[k - 1], ordered[k], ordered[k - 1])
    cost = torch.full_like(best_low, n, dtype=torch.long)
    for m, (_, high) in reversed(list(zip(seen, looks, strict=True))):
        cost = torch.where(high.flatten() < kth_low + epsilon, m, cost)
    cost[cost.topk(k).indices] = n  # at least K heads end in (or undecided): every example
    return int(cost.sum())


def allocate(
    allocation: str, waiting: list[Head], status: dict[Head, int], low: Tensor, high: Tensor, k: int
) -> list[Head]:
    """The undecided heads that get the next round: all (``uniform``), the ``k`` with the highest
    upper bounds (``boundary``), or LUCB's pair (``lucb``): among the current top ``k`` by
    estimate the one of lowest lower bound, and among the rest the one of highest upper bound."""
    if allocation == "uniform" or not waiting:
        return waiting
    if allocation == "boundary":
        return sorted(waiting, key=lambda h: float(high[h]), reverse=True)[:k]
    estimate = {h: float(low[h] + high[h]) / 2 for h in status}
    top = set(sorted(status, key=estimate.__getitem__, reverse=True)[:k])
    inside = [h for h in waiting if h in top]
    outside = [h for h in waiting if h not in top]
    pair = []
    if inside:
        pair.append(min(inside, key=lambda h: float(low[h])))
    if outside:
        pair.append(max(outside, key=lambda h: float(high[h])))
    return pair


def record_bounds(state: ScanState, low: Tensor, high: Tensor) -> None:
    """Keep the latest bounds of every raced head in ``state`` (saved with the scores)."""
    state.race_low.copy_(low.float().nan_to_num(nan=math.nan))
    state.race_high.copy_(high.float().nan_to_num(nan=math.nan))


def seen_values(
    state: ScanState, position: Int[Tensor, " n_examples"], seen: Int[Tensor, "n_layers n_heads"]
) -> Float[Tensor, "n_examples n_layers n_heads"]:
    """The raced values each head has been looked at on: the first ``seen[layer, head]`` examples
    of the race's order (``position``: each example's place in it), NaN elsewhere."""
    values = ranked_values(state)
    looked = position[:, None, None] < seen[None]
    return values.where(looked, torch.full_like(values, math.nan))


def race_t_opt(n_examples: int, round_size: int) -> float:
    """Where a race's confidence sequence is tightest: between the first round and all examples
    (their geometric mean), where most heads are decided."""
    return math.sqrt(round_size * n_examples)


def ppi_predictions(state: ScanState) -> Float[Tensor, "n_examples n_layers n_heads"]:
    """Attribution's predictions of the raced quantity (PCS, or ΔPCS with ``select="specific"``)."""
    predictions = state.predictions
    assert predictions is not None
    n = state.n_examples
    return (
        predictions[:n] - predictions[n:] if state.config.select == "specific" else predictions[:n]
    )


@register_scan_method("ppi-racing")
@register_scan_method("racing")
def racing_work(state: ScanState) -> Iterator[Work]:
    """Rounds of exact scoring of undecided heads, then the contenders on every example.

    ``race_allocation="uniform"``: every undecided head is scored on each round in turn.
    ``"boundary"``: after the first round, each step gives the next round of examples to the
    ``k`` undecided heads with the highest upper bounds only; the likely top heads reach every
    example first, which raises the K-th lower bound that sends the others out. ``"lucb"``: each
    step to LUCB's pair (the current top K's weakest, the rest's strongest). Either way a head is
    looked at only after whole rounds, so the union bound over heads and rounds holds. Under
    ``ppi-racing`` the bounds are of the prediction-powered estimates (``state.predictions``)."""
    config, n = state.config, state.n_examples
    contrast = config.contrast == "no-profile"
    rounds = race_rounds(n, config.round_size, config.seed)
    chosen_bounds = race_bounds(config.bounds)
    predictions = ppi_predictions(state) if state.predictions is not None else None
    status: dict[Head, int] = dict.fromkeys(state.heads, UNDECIDED)
    looks: dict[Head, int] = dict.fromkeys(state.heads, 0)  # rounds each head was scored on
    length = {row: len(state.encoded[row].input_ids) for row in range(len(state.encoded))}
    order, sizes = race_looks(rounds)
    position = torch.empty(n, dtype=torch.long)
    position[order] = torch.arange(n)

    def rows_of(examples: Sequence[int]) -> list[int]:
        rows = [*examples, *(i + n for i in examples)] if contrast else list(examples)
        return sorted(rows, key=length.__getitem__)

    chosen = list(state.heads)
    while chosen:
        for step in sorted({looks[head] for head in chosen}):
            heads = [head for head in chosen if looks[head] == step]
            yield from exact_cells_work(state, heads, rows_of(rounds[step]))
        for head in chosen:
            looks[head] += 1
        state.share()  # under torchrun: the other ranks' cells of this step
        latest = max(looks.values())  # uniform: every head's cells of the rounds so far
        seen = torch.zeros(state.status.shape, dtype=torch.long)
        for head, count in looks.items():
            rounds_seen = count if config.race_allocation == "boundary" else latest
            seen[head] = sizes[rounds_seen - 1] if rounds_seen else 0
        low, high = chosen_bounds.bounds(
            seen_values(state, position, seen), predictions, config.delta, len(state.heads),
            len(rounds), race_t_opt(n, config.round_size),
        )  # fmt: skip
        middle = sorted((float(low[h] + high[h]) / 2 for h in state.heads), reverse=True)
        epsilon = config.epsilon_value(middle[min(config.k, len(middle)) - 1])
        decide(status, low, high, config.k, epsilon)
        record_bounds(state, low, high)
        if state.on_look is not None:
            state.on_look(dict(status))
        waiting = [h for h, code in status.items() if code == UNDECIDED and looks[h] < len(rounds)]
        chosen = allocate(config.race_allocation, waiting, status, low, high, config.k)
    contenders = [head for head, code in status.items() if code != OUT]
    yield from exact_cells_work(state, contenders, rows_of(range(n)))
    for (layer, head), code in status.items():
        state.status[layer, head] = code
