"""Uncertainty of per-head scores across examples: standard error and bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from dps_lens.stats import bootstrap_interval


@dataclass(frozen=True)
class ScoreSummary:
    """Per-head mean over examples, its standard error, a bootstrap percentile interval, and the
    number of examples each head was scored on."""

    mean: Float[Tensor, "n_layers n_heads"]
    stderr: Float[Tensor, "n_layers n_heads"]
    ci_low: Float[Tensor, "n_layers n_heads"]
    ci_high: Float[Tensor, "n_layers n_heads"]
    n: Int[Tensor, "n_layers n_heads"]


def summarize(
    per_example: Float[Tensor, "n_examples n_layers n_heads"],
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ScoreSummary:
    """Mean, standard error (``std / sqrt(n)``, 0 for one example) and a seeded bootstrap CI of
    every head over the examples it was scored on (NaN marks an example a head was not scored on).

    Heads scored on the same examples share their bootstrap resamples; heads never scored stay NaN
    in every field, with ``n = 0``.
    """
    values = per_example.double()
    shape = values.shape[1:]
    flat = values.reshape(values.shape[0], -1)
    scored = ~torch.isnan(flat)
    mean = torch.full(flat.shape[1:], float("nan"), dtype=torch.float64)
    stderr, ci_low, ci_high = mean.clone(), mean.clone(), mean.clone()
    patterns, group_of = torch.unique(scored.T, dim=0, return_inverse=True)
    for g, rows in enumerate(patterns):
        n = int(rows.sum())
        if n == 0:
            continue
        heads = torch.nonzero(group_of == g).flatten()
        sub = flat[rows][:, heads]
        mean[heads] = sub.mean(0)
        stderr[heads] = (
            sub.std(0, correction=1) / n**0.5
            if n > 1
            else torch.zeros(len(heads), dtype=torch.float64)
        )
        ci_low[heads], ci_high[heads] = bootstrap_interval(
            lambda draws, rows=sub: rows[draws].mean(1), n, n_bootstrap, confidence, seed
        )
    return ScoreSummary(
        mean=mean.reshape(shape).float(),
        stderr=stderr.reshape(shape).float(),
        ci_low=ci_low.reshape(shape).float(),
        ci_high=ci_high.reshape(shape).float(),
        n=scored.sum(0).reshape(shape),
    )
