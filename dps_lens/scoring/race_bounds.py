"""The confidence bounds a race decides with, by name (``ScanConfig.bounds``).

A race looks at each head after every round it was scored on; its decisions hold with
probability ``1 − δ`` if every head's bounds hold at every look at once.

* ``t-union`` (the default): Student-t intervals (with attribution's predictions, the PPI++
  interval with ``n − 1`` degrees of freedom) at level ``1 − δ / (H·R)``: a union bound over the
  ``H`` raced heads and the ``R`` looks the rounds allow. The looks are few (rounds double the
  examples seen), so the union costs little.
* ``asymptotic-cs``: an asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy &
  Ramdas, *Time-uniform central limit theory and asymptotic confidence sequences*, Ann. Statist.
  2024), valid at every look at once however many there are, at level ``1 − δ / H``: the radius
  ``σ̂_t·sqrt(2(tρ² + 1)/(t²ρ²) · log(sqrt(tρ² + 1)/α))`` after ``t`` examples, ``ρ`` tuned to be
  tightest at ``t_opt``. With predictions, the rectifier's running mean gets the sequence at
  ``α/2`` and the mean of the predictions over all ``N`` examples a fixed normal interval at
  ``α/2`` (it does not change as the race goes on).

Both are valid as the examples' values are independent draws whose means are close to normal
(the t-interval) or have a finite variance (the sequence, asymptotically); neither assumes
anything of the predictor, whose bias the PPI estimate removes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from jaxtyping import Float
from scipy.stats import norm
from torch import Tensor

from dps_lens.errors import DpsLensError
from dps_lens.scoring.ppi import ppi_mean

Bounds = tuple[Float[Tensor, "n_layers n_heads"], Float[Tensor, "n_layers n_heads"]]


def t_bounds(values: Float[Tensor, "n_seen n_layers n_heads"], level: float) -> Bounds:
    """Two-sided Student-t bounds at confidence ``level`` of each head's mean over the examples
    it was scored on (non-NaN); ``±inf`` where a head has fewer than two."""
    estimate = ppi_mean(values, torch.zeros_like(values).nan_to_num(0.0), lam=0.0, ddof=1)
    low, high = estimate.interval(1 - level, student=True)
    return low.to(values.dtype), high.to(values.dtype)


def asymptotic_cs_radius(
    sd: Float[Tensor, "*heads"], t: Float[Tensor, "*heads"], alpha: float, t_opt: float
) -> Float[Tensor, "*heads"]:
    """The two-sided asymptotic confidence sequence's radius after ``t`` observations of standard
    deviation ``sd``, at level ``1 − alpha``, tightest at ``t_opt`` (Waudby-Smith et al. 2024,
    the normal-mixture boundary with ρ² = (−2 log α + log(−2 log α + 1)) / t_opt)."""
    if not 0 < alpha < 1 or t_opt <= 0:
        raise DpsLensError(f"alpha must be in (0, 1) and t_opt > 0, got {alpha}, {t_opt}")
    log_alpha = -2 * math.log(alpha)
    rho2 = (log_alpha + math.log(log_alpha + 1)) / t_opt
    t = t.to(sd.dtype).clamp_min(1)
    inner = (t * rho2 + 1).sqrt() / alpha
    radius = sd * (2 * (t * rho2 + 1) / (t * t * rho2) * inner.log()).sqrt()
    return torch.where(t >= 2, radius, torch.full_like(radius, float("inf")))


class RaceBounds(ABC):
    """How a race bounds each head's mean at a look."""

    name: ClassVar[str]

    @abstractmethod
    def bounds(
        self,
        values: Float[Tensor, "n_examples n_layers n_heads"],
        predictions: Float[Tensor, "n_examples n_layers n_heads"] | None,
        delta: float,
        n_heads: int,
        n_looks: int,
        t_opt: float,
    ) -> Bounds:
        """Bounds of every head from its exact ``values`` (NaN where not looked at) and, for a
        prediction-powered race, the ``predictions`` of every example."""


class UnionT(RaceBounds):
    name = "t-union"

    def bounds(self, values, predictions, delta, n_heads, n_looks, t_opt) -> Bounds:
        level = 1 - delta / (n_heads * n_looks)
        if predictions is None:
            return t_bounds(values, level)
        low, high = ppi_mean(values, predictions, ddof=1).interval(1 - level, student=True)
        return low.to(values.dtype), high.to(values.dtype)


class AsymptoticCS(RaceBounds):
    name = "asymptotic-cs"

    def bounds(self, values, predictions, delta, n_heads, n_looks, t_opt) -> Bounds:
        alpha = delta / n_heads
        if predictions is None:
            estimate = ppi_mean(values, torch.zeros_like(values).nan_to_num(0.0), lam=0.0, ddof=1)
            radius = asymptotic_cs_radius(
                estimate.stderr * estimate.n.sqrt(), estimate.n, alpha, t_opt
            )
        else:
            estimate = ppi_mean(values, predictions, ddof=1)
            labeled = ~torch.isnan(values)
            residual = (
                torch.where(labeled, values, 0.0).double() - estimate.lam * predictions.double()
            )
            mean = torch.where(labeled, residual, 0.0).sum(0) / estimate.n.clamp_min(1)
            squares = torch.where(labeled, (residual - mean) ** 2, 0.0).sum(0)
            sd = (squares / (estimate.n - 1).clamp_min(1)).sqrt()
            sequence = asymptotic_cs_radius(sd, estimate.n, alpha / 2, t_opt)
            spread = predictions.double().std(0) / math.sqrt(predictions.shape[0])
            radius = sequence + estimate.lam * float(norm.ppf(1 - alpha / 4)) * spread
        low, high = estimate.estimate - radius, estimate.estimate + radius
        return low.to(values.dtype), high.to(values.dtype)


RACE_BOUNDS: dict[str, RaceBounds] = {b.name: b for b in (UnionT(), AsymptoticCS())}


def race_bounds(name: str) -> RaceBounds:
    """The bounds registered as ``name``."""
    try:
        return RACE_BOUNDS[name]
    except KeyError:
        raise DpsLensError(f"unknown bounds {name!r}; use {' or '.join(RACE_BOUNDS)}") from None
