"""Layer × head maps: PCS heatmaps (one scan or a grid of users/clusters) and head-mask maps."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import torch
from jaxtyping import Float
from plotly.subplots import make_subplots
from torch import Tensor

from dps_lens.names import name_from_id
from dps_lens.plots.style import DIVERGING, SEQUENTIAL, styled
from dps_lens.scoring.head_scores import STATUS_NAMES, HeadScores

_HOVER = (
    "layer %{y}, head %{x}<br>PCS %{z:.4f} nats<br>95% CI [%{customdata[0]:.4f}, "
    "%{customdata[1]:.4f}]<br>s.e. %{customdata[2]:.4f}, n = %{customdata[3]}%{text}<extra></extra>"
)


def _limit(*means: np.ndarray) -> float:
    finite = np.concatenate([m[np.isfinite(m)] for m in means])
    return float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0


def integer_ticks(figure: go.Figure, n_layers: int, n_heads: int) -> None:
    """Layer 0 on top; one tick per layer/head on small models, no half-integer ticks."""
    figure.update_yaxes(autorange="reversed", dtick=1 if n_layers <= 16 else None, tick0=0)
    figure.update_xaxes(dtick=1 if n_heads <= 16 else None, tick0=0)


def _heatmap(scores: HeadScores, limit: float, show_scale: bool) -> go.Heatmap:
    """The heatmap trace; hover: CI, s.e., the head's own n, (racing) its status and
    (ppi-racing) its prediction-powered estimate with λ and the examples attribution scored."""
    status = (
        np.vectorize(lambda code: f", {STATUS_NAMES.get(int(code), 'not raced')}")(
            scores.status.numpy()
        )
        if scores.status is not None
        else np.full(scores.mean.shape, "")
    )
    ppi = scores.ppi("pcs")
    if ppi is not None:
        low, high = ppi.interval(0.05, student=True)
        status = status.astype(object)
        for index in np.ndindex(*scores.mean.shape):
            status[index] += (
                f"<br>PPI {float(ppi.estimate[index]):.4f} [{float(low[index]):.4f}, "
                f"{float(high[index]):.4f}], λ {float(ppi.lam[index]):.2f}, "
                f"N = {ppi.n_predicted} predicted"
            )
    numbers = [scores.ci_low, scores.ci_high, scores.stderr, scores.summary.n.float()]
    custom = np.stack([values.numpy() for values in numbers], axis=-1)
    return go.Heatmap(
        z=scores.mean.numpy(),
        customdata=custom,
        text=status,
        zmid=0.0,
        zmin=-limit,
        zmax=limit,
        colorscale=DIVERGING,
        showscale=show_scale,
        colorbar={"title": {"text": "PCS (nats)"}},
        hovertemplate=_HOVER,
    )


def pcs_heatmap(scores: HeadScores, title: str | None = None) -> go.Figure:
    """Layer × head grid of mean PCS (nats), diverging colours centred at 0; hover shows CI and n."""
    figure = go.Figure(_heatmap(scores, _limit(scores.mean.numpy()), show_scale=True))
    figure.update_xaxes(title="head", dtick=1 if scores.n_heads <= 16 else None)
    figure.update_yaxes(
        title="layer", dtick=1 if scores.n_layers <= 16 else None, autorange="reversed"
    )
    return styled(
        figure,
        title or f"Preference contribution score — {name_from_id(scores.model_id)}",
        width=max(440, 90 + 30 * scores.n_heads),
        height=max(360, 150 + 22 * scores.n_layers),
    )


def pcs_grid(
    scores_by_group: Mapping[str, HeadScores], columns: int = 4, title: str = "PCS per user"
) -> go.Figure:
    """One PCS heatmap per user or cluster on a shared colour scale centred at 0."""
    groups = list(scores_by_group.items())
    if not groups:
        raise ValueError("pcs_grid needs at least one group of scores")
    columns = min(columns, len(groups))
    rows = math.ceil(len(groups) / columns)
    limit = _limit(*(s.mean.numpy() for _, s in groups))
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"{name} (n = {s.n_examples})" for name, s in groups],
        horizontal_spacing=0.04,
        vertical_spacing=0.12 / max(rows - 1, 1) + 0.04,
        shared_xaxes=True,
        shared_yaxes=True,
    )
    for i, (_, scores) in enumerate(groups):
        figure.add_trace(
            _heatmap(scores, limit, show_scale=i == 0), i // columns + 1, i % columns + 1
        )
    integer_ticks(figure, groups[0][1].n_layers, groups[0][1].n_heads)
    for c in range(1, columns + 1):
        figure.update_xaxes(title_text="head", row=rows, col=c)
    for r in range(1, rows + 1):
        figure.update_yaxes(title_text="layer", row=r, col=1)
    return styled(figure, title, width=120 + 230 * columns, height=120 + 230 * rows, margin_top=30)


def head_mask_maps(
    maps: Mapping[str, Float[Tensor, "n_layers n_heads"]],
    labels: Mapping[str, str] | None = None,
    title: str = "Which heads each method masks",
) -> go.Figure:
    """Side-by-side layer × head maps of mask weights in [0, 1] (1 = fully masked), e.g. the
    discovered top-K heads next to random heads and a random mask; ``labels`` annotate panels."""
    names = list(maps)
    figure = make_subplots(
        rows=1,
        cols=len(names),
        subplot_titles=[f"{n}<br><sup>{(labels or {}).get(n, '')}</sup>" for n in names],
        horizontal_spacing=0.05,
        shared_yaxes=True,
    )
    for i, name in enumerate(names):
        weights = torch.as_tensor(maps[name], dtype=torch.float32).numpy()
        figure.add_trace(
            go.Heatmap(
                z=weights,
                zmin=0.0,
                zmax=1.0,
                colorscale=SEQUENTIAL,
                showscale=i == len(names) - 1,
                colorbar={"title": {"text": "mask weight"}},
                xgap=1,
                ygap=1,
                hovertemplate="layer %{y}, head %{x}<br>weight %{z:.2f}<extra></extra>",
            ),
            1,
            i + 1,
        )
        figure.update_xaxes(title_text="head", row=1, col=i + 1)
    figure.update_yaxes(title_text="layer", row=1, col=1)
    integer_ticks(figure, *weights.shape)
    return styled(figure, title, width=160 + 260 * len(names), height=460, margin_top=50)
