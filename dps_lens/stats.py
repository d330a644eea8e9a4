"""Seeded bootstrap percentile intervals over examples (head scores and evaluation metrics)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

CHUNK = 256  # resamples drawn per call of the statistic


def bootstrap_interval(
    statistic: Callable[[Int[Tensor, "draws n"]], Tensor],
    n: int,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[Float[Tensor, "*stat"], Float[Tensor, "*stat"]]:
    """Percentile interval ``(low, high)`` of ``statistic`` over ``n_bootstrap`` resamples.

    Each resample draws ``n`` example indices with replacement (seeded by ``seed``, in chunks of
    ``CHUNK``); ``statistic`` maps a chunk of index rows ``[draws, n]`` to one value (or one
    vector) per row, ``[draws, *stat]``. Resamples whose statistic is NaN are left out of the quantiles.
    """
    generator = torch.Generator().manual_seed(seed)
    values = [
        statistic(torch.randint(0, n, (min(CHUNK, n_bootstrap - start), n), generator=generator))
        for start in range(0, n_bootstrap, CHUNK)
    ]
    alpha = (1 - confidence) / 2
    quantiles = torch.tensor([alpha, 1 - alpha], dtype=torch.float64)
    low, high = torch.nanquantile(torch.cat(values).double(), quantiles, dim=0)
    return low, high
