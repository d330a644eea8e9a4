"""Parameter sweeps as data: each point is one method config at one setting of a sweep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dps_lens.data.example import PreferenceExample
from dps_lens.errors import DpsLensError
from dps_lens.evaluation import EvalConfig, MethodResult, evaluate_methods
from dps_lens.steering import MethodConfig, SteeringContext

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge


@dataclass(frozen=True)
class SweepPoint:
    """``config`` at one setting: γ and K (heads) as the result rows record them. ``label`` only
    names the result file (``methods/<label>.jsonl``); ``variant`` tells apart rows of one method
    in one table (``dps_global``, ``cluster_dps_soft_tau0.05``)."""

    label: str
    config: MethodConfig
    sweep: str = ""
    gamma: float | None = None
    k: int | None = None
    variant: str = ""

    @property
    def method(self) -> str:
        """The method name result rows record."""
        return self.config.name + self.variant


def evaluate_points(
    model: TransformerBridge,
    examples: Sequence[PreferenceExample],
    points: Sequence[SweepPoint],
    context: Callable[[SweepPoint], SteeringContext],
    config: EvalConfig,
    out: Path,
    progress: bool,
    pairs: Sequence[tuple[str, Sequence[str]]] | None = None,
) -> list[MethodResult]:
    """Build each point's ``Steering`` with ``context(point)`` and evaluate them all on
    ``examples``; the results are in the order of ``points``. ``pairs`` names the paired
    comparisons by label (default: every point against ``plain``)."""
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise DpsLensError(f"sweep labels must be unique, got {labels}")
    methods = {p.label: p.config.build(context(p)) for p in points}
    return evaluate_methods(model, examples, methods, config, out, progress, pairs)
