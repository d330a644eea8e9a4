"""Paired comparisons of decoding methods on the same examples.

Two methods decoded for the same users are compared example by example: the statistic is the
mean over examples of ``metric(method) − metric(reference)``, and its interval comes from one
bootstrap over examples, the same resampled examples for both methods. That interval is much
narrower than what two overlapping marginal intervals suggest when the methods' scores move
together across examples, and it is the interval that decides whether one method beats another.
A reference of several runs (random heads drawn with several seeds) is their mean per example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dps_lens.errors import DpsLensError
from dps_lens.evaluation.metrics import Estimate, bootstrap

Rows = Sequence[Mapping[str, Any]]

PAIRED_METRICS: dict[str, tuple[str, ...]] = {
    "generation": ("rouge1", "rougeL", "meteor"),
    "dialogue": ("f1", "rougeL"),
    "organism": ("personalized",),
    "classification": ("accuracy",),
    "regression": ("abs_error",),
}
"""The per-example metric values of each task that a paired difference is taken of."""


def _values(rows: Rows, metric: str) -> np.ndarray:
    """``[n]`` metric values of rows in example order (``nan`` where undefined)."""
    return np.array([float(row[metric]) for row in rows], dtype=float)


def paired_difference(
    rows: Rows,
    references: Sequence[Rows],
    metric: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> Estimate:
    """Mean of ``metric(rows) − mean over references of metric(reference)``, example by example
    (every run's rows in the same example order), over the examples where every value is
    defined; interval from resampling those examples."""
    if not references:
        raise DpsLensError("a paired difference needs at least one reference run")
    mine = _values(rows, metric)
    lengths = sorted({len(reference) for reference in references} - {len(mine)})
    if lengths:
        raise DpsLensError(
            f"paired runs cover different examples: {len(mine)} against {lengths[0]}"
        )
    theirs = np.stack([_values(reference, metric) for reference in references])
    difference = mine - theirs.mean(0)
    kept = difference[~np.isnan(difference)]
    return bootstrap(lambda i: float(kept[i].mean()), len(kept), n_bootstrap, seed)


@dataclass(frozen=True)
class PairedComparison:
    """``method`` against ``reference`` (one run or the mean of several) on one metric."""

    method: str
    reference: str
    metric: str
    difference: Estimate

    @property
    def excludes_zero(self) -> bool:
        return self.difference.low > 0 or self.difference.high < 0

    def as_row(self) -> dict[str, Any]:
        d = self.difference
        return {"method": self.method, "reference": self.reference, "metric": self.metric,
                "difference": d.value, "low": d.low, "high": d.high, "n": d.n,
                "excludes_zero": self.excludes_zero}  # fmt: skip


def compare_methods(
    runs: Mapping[str, Rows],
    pairs: Sequence[tuple[str, Sequence[str]]],
    task: str,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> list[PairedComparison]:
    """Every ``(method, reference runs)`` pair of ``pairs`` on every paired metric of ``task``;
    ``runs`` maps a run's name to its per-example rows (metric values), in example order."""
    metrics = PAIRED_METRICS.get(task)
    if metrics is None:
        raise DpsLensError(f"unknown task {task!r}; use one of {', '.join(PAIRED_METRICS)}")
    missing = sorted({n for m, refs in pairs for n in (m, *refs)} - set(runs))
    if missing:
        raise DpsLensError(f"no runs named {', '.join(missing)} to compare")
    return [
        PairedComparison(
            method,
            "mean of " + ", ".join(references) if len(references) > 1 else references[0],
            metric,
            paired_difference(
                runs[method], [runs[r] for r in references], metric, n_bootstrap, seed
            ),
        )
        for method, references in pairs
        for metric in metrics
    ]


def comparisons_markdown(comparisons: Sequence[PairedComparison]) -> str:
    """One row per ``(method, reference)``, one column per metric: the mean paired difference
    and its 95% interval, in bold where the interval excludes 0."""
    metrics = list(dict.fromkeys(c.metric for c in comparisons))
    rows: dict[tuple[str, str], dict[str, PairedComparison]] = {}
    for c in comparisons:
        rows.setdefault((c.method, c.reference), {})[c.metric] = c
    header = ["method", "against", "n", *(f"Δ {m} [95% CI]" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (method, reference), by_metric in rows.items():
        n = min(c.difference.n for c in by_metric.values())
        cells = [method, reference, str(n)]
        for metric in metrics:
            c = by_metric.get(metric)
            if c is None:
                cells.append("–")
                continue
            d = c.difference
            text = f"{d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
            cells.append(f"**{text}**" if c.excludes_zero else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
