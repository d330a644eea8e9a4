"""Prediction-powered means (PPI++, Angelopoulos et al. 2023/2024), vectorised over heads.

For a head, ``e_i`` is its exact effect on example ``i`` (known on the ``n`` labeled examples, a
random subsample) and ``a_i`` a cheap prediction of it (attribution, known on every example).
With the ``N_u`` other examples as the unlabeled set, the estimate of the mean exact effect is

    θ̂ = λ · mean_u(a) + mean_n(e − λ·a),

unbiased for any ``λ`` whatever the predictor's bias; as the two sets are disjoint random samples
its standard error is ``sqrt(λ²·Var_u(a)/N_u + Var_n(e − λ·a)/n)`` and its ``1 − α`` interval the
normal one (ppi_py's ``ppi_mean_ci``, variances with ``ddof=0``) or, for small labeled sets,
Student's t with ``n − 1`` degrees of freedom and ``ddof=1`` (what racing uses: at ``λ = 0`` it
is racing's t-interval). Power tuning picks ``λ = Cov_n(e, a) / ((1 + n/N_u)·Var(a))``, clipped to
[0, 1]; ``λ = 0`` is the plain mean of the exact effects, and so is every ``λ`` once every example
is labeled. Labeled examples are marked by the exact values that are not NaN, per head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from scipy.stats import norm
from scipy.stats import t as student_t
from torch import Tensor

from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class PPIEstimate:
    """Per head: the estimate, its standard error, the ``λ`` used, the labeled and all counts."""

    estimate: Float[Tensor, "*heads"]
    stderr: Float[Tensor, "*heads"]
    lam: Float[Tensor, "*heads"]
    n: Float[Tensor, "*heads"]
    n_predicted: int

    def interval(
        self, alpha: float, student: bool = False
    ) -> tuple[Float[Tensor, "*heads"], Float[Tensor, "*heads"]]:
        """The two-sided interval at level ``1 − alpha``: normal, or Student's t with ``n − 1``
        degrees of freedom (``±inf`` with fewer than two labeled examples)."""
        if student:
            df = (self.n - 1).clamp_min(1).flatten().tolist()
            quantile = torch.tensor([student_t.ppf(1 - alpha / 2, d) for d in df])
            quantile = quantile.reshape(self.n.shape).to(self.estimate.dtype)
        else:
            quantile = torch.full_like(self.estimate, float(norm.ppf(1 - alpha / 2)))
        bounded = self.n >= (2 if student else 1)
        infinite = torch.full_like(self.estimate, float("inf"))
        half = torch.where(bounded, quantile * self.stderr, infinite)
        return self.estimate - half, self.estimate + half


def _masked_mean(values: Tensor, mask: Tensor, n: Tensor) -> Tensor:
    return torch.where(mask, values, 0.0).sum(0) / n.clamp_min(1)


def tuned_lambda(
    exact: Float[Tensor, "n_examples ..."], predictions: Float[Tensor, "n_examples ..."]
) -> Float[Tensor, "*heads"]:
    """The power-tuned ``λ`` of every head (ppi_py's formula), clipped to [0, 1]; 0 where fewer
    than two examples are labeled, none is unlabeled, or the predictions do not vary."""
    labeled = ~torch.isnan(exact)
    n = labeled.sum(0).to(exact.dtype)
    n_unlabeled = predictions.shape[0] - n
    e = torch.where(labeled, exact, 0.0)
    mean_e, mean_a = _masked_mean(e, labeled, n), _masked_mean(predictions, labeled, n)
    covariance = _masked_mean((e - mean_e) * (predictions - mean_a), labeled, n)
    # the variance of the predictions on every example, labeled or not (ddof 1), as ppi_py pools
    variance = predictions.var(0, unbiased=True)
    lam = covariance / ((1 + n / n_unlabeled.clamp_min(1)) * variance)
    usable = (n >= 2) & (n_unlabeled >= 1) & (variance > 0)
    return torch.where(usable, lam, 0.0).nan_to_num(0.0).clamp(0.0, 1.0)


def ppi_mean(
    exact: Float[Tensor, "n_examples ..."],
    predictions: Float[Tensor, "n_examples ..."],
    lam: Float[Tensor, "*heads"] | float | None = None,
    ddof: int = 0,
) -> PPIEstimate:
    """The PPI++ mean of every head's exact effect: ``exact`` (NaN off the labeled examples) and
    ``predictions`` (all examples) share their first dimension; ``lam`` None: power-tuned;
    ``ddof`` of both variances (0: ppi_py's; 1: with ``interval(student=True)``, racing's)."""
    if exact.shape != predictions.shape:
        raise DpsLensError(
            f"exact values {tuple(exact.shape)} and predictions {tuple(predictions.shape)} must "
            "cover the same examples and heads"
        )
    if torch.isnan(predictions).any():
        raise DpsLensError("predictions must be known on every example (no NaN)")
    exact, predictions = exact.double(), predictions.double()
    labeled = ~torch.isnan(exact)
    unlabeled = ~labeled
    n = labeled.sum(0).to(exact.dtype)
    n_unlabeled = unlabeled.sum(0).to(exact.dtype)
    if lam is None:
        lam_t = tuned_lambda(exact, predictions)
    else:
        lam_t = torch.as_tensor(lam, dtype=exact.dtype).expand(exact.shape[1:])
    lam_t = torch.where(n_unlabeled > 0, lam_t, 0.0)  # every example labeled: the exact mean
    residual = torch.where(labeled, exact, 0.0) - lam_t * predictions
    mean_residual = _masked_mean(residual, labeled, n)
    imputed = _masked_mean(predictions, unlabeled, n_unlabeled)
    estimate = lam_t * imputed + mean_residual
    squares = torch.where(labeled, (residual - mean_residual) ** 2, 0.0).sum(0)
    rectifier_var = squares / (n - ddof).clamp_min(1)
    spread = torch.where(unlabeled, (predictions - imputed) ** 2, 0.0).sum(0)
    imputed_var = lam_t**2 * spread / (n_unlabeled - ddof).clamp_min(1)
    stderr = (imputed_var / n_unlabeled.clamp_min(1) + rectifier_var / n.clamp_min(1)).sqrt()
    stderr = torch.where(n >= 1, stderr, torch.full_like(stderr, float("inf")))
    return PPIEstimate(estimate, stderr, lam_t, n, predictions.shape[0])
