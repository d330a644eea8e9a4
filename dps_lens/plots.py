"""Plotly figures of head scores; every function returns a ``go.Figure``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from dps_lens._io import atomic_write_text
from dps_lens.scoring.head_scores import HeadScores

FONT = {"family": "Helvetica, Arial, sans-serif", "size": 13}


def pcs_heatmap(scores: HeadScores, title: str | None = None) -> go.Figure:
    """Layer × head grid of mean PCS (nats), diverging colours centred at 0; hover shows CI and n."""
    mean = scores.mean.numpy()
    custom = np.stack([scores.ci_low.numpy(), scores.ci_high.numpy(), scores.stderr.numpy()], -1)
    limit = float(np.nanmax(np.abs(mean))) if np.isfinite(mean).any() else 1.0
    figure = go.Figure(
        go.Heatmap(
            z=mean,
            customdata=custom,
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu_r",
            colorbar={"title": {"text": "PCS (nats)"}},
            hovertemplate=(
                "layer %{y}, head %{x}<br>PCS %{z:.4f} nats<br>"
                "95% CI [%{customdata[0]:.4f}, %{customdata[1]:.4f}]<br>"
                f"s.e. %{{customdata[2]:.4f}}, n = {scores.n_examples}<extra></extra>"
            ),
        )
    )
    figure.update_layout(
        title=title or f"Preference Contribution Score — {scores.model_id}",
        xaxis={"title": "head", "dtick": 1},
        yaxis={"title": "layer", "dtick": 1, "autorange": "reversed"},
        font=FONT,
        template="simple_white",
        width=max(420, 60 + 28 * scores.n_heads),
        height=max(360, 140 + 22 * scores.n_layers),
    )
    return figure


def write_html(figure: go.Figure, path: str | Path) -> Path:
    """Self-contained HTML (plotly.js embedded, so it opens offline), written atomically."""
    return atomic_write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))
