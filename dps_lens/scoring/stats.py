"""Uncertainty of per-head scores across examples: standard error and bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class ScoreSummary:
    """Per-head mean over examples, its standard error, and a bootstrap percentile interval."""

    mean: Float[Tensor, "n_layers n_heads"]
    stderr: Float[Tensor, "n_layers n_heads"]
    ci_low: Float[Tensor, "n_layers n_heads"]
    ci_high: Float[Tensor, "n_layers n_heads"]


def summarize(
    per_example: Float[Tensor, "n_examples n_layers n_heads"],
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ScoreSummary:
    """Mean, standard error (``std / sqrt(n)``, 0 for one example) and a seeded bootstrap CI.

    Heads never scored (all-NaN columns) stay NaN in every field.
    """
    values = per_example.double()
    n = values.shape[0]
    mean = values.mean(0)
    stderr = values.std(0, correction=1) / n**0.5 if n > 1 else torch.zeros_like(mean)
    generator = torch.Generator().manual_seed(seed)
    flat = values.reshape(n, -1)
    boot_means = []
    for start in range(0, n_bootstrap, 256):
        size = min(256, n_bootstrap - start)
        index = torch.randint(0, n, (size, n), generator=generator)
        boot_means.append(flat[index].mean(1))
    boots = torch.cat(boot_means)
    alpha = (1 - confidence) / 2
    bounds = torch.quantile(boots, torch.tensor([alpha, 1 - alpha], dtype=torch.float64), dim=0)
    shape = mean.shape
    return ScoreSummary(
        mean=mean.float(),
        stderr=stderr.float(),
        ci_low=bounds[0].reshape(shape).float(),
        ci_high=bounds[1].reshape(shape).float(),
    )
