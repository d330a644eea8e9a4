"""Specificity scatter: each head's PCS with the profile against its PCS without it."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dps_lens.errors import DpsLensError
from dps_lens.heads import head_name
from dps_lens.names import name_from_id
from dps_lens.plots.style import styled
from dps_lens.scoring.head_scores import HeadScores

HIGHLIGHT, OTHER, DIAGONAL = "#d62728", "#7f7f7f", "#999"
_HOVER = (
    "%{customdata[0]}<br>PCS %{x:.4f} nats (profile)<br>PCS %{y:.4f} nats (no profile)"
    "<br>ΔPCS %{customdata[1]:.4f} [%{customdata[2]:.4f}, %{customdata[3]:.4f}]<extra></extra>"
)


def specificity_scatter(scores: HeadScores, k: int = 3, title: str | None = None) -> go.Figure:
    """Per head: PCS with the profile (x) against PCS without it (y), both with 95% CI error bars,
    and the diagonal y = x (no specificity). The top ``k`` heads by ΔPCS are highlighted; hover
    shows the head, ΔPCS and its interval. Needs a scan with ``contrast="no-profile"``."""
    profile, missing, delta = scores.summary, scores.summary_no_profile, scores.summary_delta
    if missing is None or delta is None:
        raise DpsLensError(
            "the specificity scatter needs scores with the no-profile contrast "
            "(discover --contrast no-profile)"
        )
    top = set(scores.top_k(min(k, len(scores.ranked("specific"))), by="specific"))
    figure = go.Figure()
    scored = [h for h in np.ndindex(*profile.mean.shape) if np.isfinite(float(profile.mean[h]))]
    for name, colour, heads in (
        ("other heads", OTHER, [h for h in scored if h not in top]),
        (f"top-{k} by ΔPCS", HIGHLIGHT, [h for h in scored if h in top]),
    ):
        if not heads:
            continue
        x = np.array([float(profile.mean[h]) for h in heads])
        y = np.array([float(missing.mean[h]) for h in heads])
        figure.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="markers+text" if colour == HIGHLIGHT else "markers",
                name=name,
                text=[head_name(h) for h in heads] if colour == HIGHLIGHT else None,
                textposition="top center",
                marker={"color": colour, "size": 9 if colour == HIGHLIGHT else 7},
                error_x=_bars([profile.ci_low[h] for h in heads], [profile.ci_high[h] for h in heads], x, colour),
                error_y=_bars([missing.ci_low[h] for h in heads], [missing.ci_high[h] for h in heads], y, colour),
                customdata=[
                    [head_name(h), float(delta.mean[h]), float(delta.ci_low[h]), float(delta.ci_high[h])]
                    for h in heads
                ],
                hovertemplate=_HOVER,
            )
        )  # fmt: skip
    bounds = [float(s.ci_low[h]) for s in (profile, missing) for h in scored]
    bounds += [float(s.ci_high[h]) for s in (profile, missing) for h in scored]
    low, high = min(0.0, *bounds), max(0.0, *bounds)
    pad = 0.05 * (high - low or 1.0)
    figure.add_trace(
        go.Scatter(
            x=[low - pad, high + pad],
            y=[low - pad, high + pad],
            mode="lines",
            name="y = x",
            line={"dash": "dash", "color": DIAGONAL, "width": 1},
            hoverinfo="skip",
        )
    )
    figure.update_xaxes(title="PCS with the profile (nats)", zeroline=True)
    figure.update_yaxes(title="PCS without the profile (nats)", zeroline=True)
    return styled(
        figure, title or f"Profile-specific heads — {name_from_id(scores.model_id)}", 560, 520
    )


def _bars(low: list, high: list, centre: np.ndarray, colour: str) -> dict:
    """Asymmetric error bars from interval bounds around ``centre``."""
    return {
        "type": "data",
        "symmetric": False,
        "array": np.maximum(np.array([float(v) for v in high]) - centre, 0.0),
        "arrayminus": np.maximum(centre - np.array([float(v) for v in low]), 0.0),
        "color": colour,
        "thickness": 1,
        "width": 0,
    }
