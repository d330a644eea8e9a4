"""The audit's figures: each head's profile attention share (a layer × head map, and against its
PCS and ΔPCS), and what each method does to the output (profile lift and the task metric, paired
against plain)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dps_lens.errors import DpsLensError
from dps_lens.heads import all_heads, head_name
from dps_lens.names import name_from_id
from dps_lens.plots.heads import integer_ticks
from dps_lens.plots.style import SEQUENTIAL, method_colour, styled
from dps_lens.profile_attention import ProfileAttention
from dps_lens.scoring.head_scores import HeadScores

HIGHLIGHT, OTHER = "#d62728", "#7f7f7f"


def profile_attention_heatmap(shares: ProfileAttention, title: str | None = None) -> go.Figure:
    """Layer × head map of the profile attention share (0–1); hover shows the standard error."""
    n_layers, n_heads = shares.mean.shape
    figure = go.Figure(
        go.Heatmap(
            z=shares.mean.numpy(),
            customdata=shares.stderr.numpy(),
            zmin=0.0,
            zmax=max(float(shares.mean.max()), 1e-6),
            colorscale=SEQUENTIAL,
            colorbar={"title": {"text": "share"}},
            hovertemplate="layer %{y}, head %{x}<br>profile share %{z:.3f} ± %{customdata:.3f}"
            "<extra></extra>",
        )
    )
    figure.update_xaxes(title="head")
    figure.update_yaxes(title="layer")
    integer_ticks(figure, n_layers, n_heads)
    return styled(
        figure,
        title
        or f"Attention from the answer onto the profile — {name_from_id(shares.model_id)} "
        f"({shares.n_examples} examples)",
        width=max(440, 90 + 30 * n_heads),
        height=max(360, 150 + 22 * n_layers),
    )


def profile_attention_scatter(
    shares: ProfileAttention, scores: HeadScores, k: int = 10, title: str | None = None
) -> go.Figure:
    """Per head: its PCS (left) and, for a scan with the no-profile contrast, its ΔPCS (right)
    against its profile attention share. The top ``k`` heads by share are in red; in each panel
    the five heads of largest score are named (every head's name is in the hover)."""
    if tuple(scores.mean.shape) != tuple(shares.mean.shape):
        raise DpsLensError(
            f"attention shares {tuple(shares.mean.shape)} and scores {tuple(scores.mean.shape)} "
            "come from models of different shapes"
        )
    panels: dict[str, Any] = {"PCS (nats)": scores.mean}
    if scores.summary_delta is not None:
        panels["ΔPCS (nats)"] = scores.summary_delta.mean
    figure = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, horizontal_spacing=0.06)
    top = set(shares.ranked()[:k])
    heads = [h for h in all_heads(*shares.mean.shape) if np.isfinite(float(scores.mean[h]))]
    for column, (label, values) in enumerate(panels.items(), 1):
        named = set(sorted(heads, key=lambda h: -float(values[h]))[:5])
        for name, colour, chosen in (
            ("other heads", OTHER, [h for h in heads if h not in top]),
            (f"top {k} by share", HIGHLIGHT, [h for h in heads if h in top]),
        ):
            figure.add_trace(
                go.Scatter(
                    x=[float(values[h]) for h in chosen],
                    y=[float(shares.mean[h]) for h in chosen],
                    mode="markers+text",
                    text=[head_name(h) if h in named else "" for h in chosen],
                    textposition="top center",
                    marker={"color": colour, "size": 8 if colour == HIGHLIGHT else 6},
                    name=name,
                    legendgroup=name,
                    showlegend=column == 1,
                    customdata=[head_name(h) for h in chosen],
                    hovertemplate=f"%{{customdata}}<br>{label} %{{x:.4f}}<br>"
                    "share %{y:.3f}<extra></extra>",
                ),
                1,
                column,
            )
        finite = [float(values[h]) for h in heads]
        pad = 0.12 * (max(finite) - min(finite) or 1.0)
        figure.update_xaxes(
            title_text=label, zeroline=True, range=[min(finite) - pad, max(finite) + pad],
            row=1, col=column,
        )  # fmt: skip
    figure.update_yaxes(title_text="profile attention share", row=1, col=1)
    return styled(
        figure,
        title or "Do the heads that read the profile matter? Attention share against PCS",
        width=380 * len(panels) + 120,
        height=440,
    )


def audit_dots(report: Mapping[str, Any], title: str | None = None) -> go.Figure:
    """Per method, with 95% intervals: its profile lift (left; plain, no_profile and the gold
    outputs as reference lines) and its paired difference to plain on the task metric (right)."""
    rows = list(report["rows"])
    if not rows:
        raise DpsLensError("the audit report has no methods to draw")
    names = [row["method"] for row in rows]
    metric = report["metric"]
    figure = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.05,
        subplot_titles=["profile lift (share of output words from the profile)",
                        f"Δ {metric} against plain (paired)"],
    )  # fmt: skip
    for column, key in ((1, "lift"), (2, "metric_vs_plain")):
        values = [row[key] for row in rows]
        figure.add_trace(
            go.Scatter(
                x=[v["value"] for v in values],
                y=names,
                mode="markers",
                marker={"size": 9, "color": [method_colour(n, i) for i, n in enumerate(names)]},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [v["high"] - v["value"] for v in values],
                    "arrayminus": [v["value"] - v["low"] for v in values],
                },
                showlegend=False,
                hovertemplate="%{y}: %{x:.4f}<extra></extra>",
            ),
            1,
            column,
        )
    references = {"gold outputs": report["gold"]["lift"]["value"]}
    references |= {n: r["lift"]["value"] for n, r in zip(names, rows, strict=True)
                   if n in ("plain", "no_profile")}  # fmt: skip
    for i, (label, value) in enumerate(references.items()):
        figure.add_trace(
            go.Scatter(
                x=[value, value], y=[names[0], names[-1]], mode="lines",
                line={"dash": ("dot", "dash", "dashdot")[i % 3], "color": "#444", "width": 1},
                name=f"lift of {label}", hoverinfo="skip",
            ),
            1, 1,
        )  # fmt: skip
    # plotly annotates add_vline's row and col as str; it takes subplot numbers too
    figure.add_vline(x=0.0, line_color="#999", row=1, col=2)  # pyright: ignore[reportArgumentType]
    figure.update_layout(legend={"orientation": "h", "y": -0.12, "x": 0})
    figure.update_yaxes(autorange="reversed", row=1, col=1)
    return styled(
        figure,
        title or f"What each method does to the output — {report['n_examples']} examples",
        width=980,
        height=200 + 34 * len(names),
        margin_top=30,
    )
