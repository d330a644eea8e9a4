"""Where in depth a model's head scores lie: the share of Σ|PCS| per layer, on relative depth so
that models with different numbers of layers share one axis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from dps_lens.plots.style import method_colour, styled


def depth_profiles(
    shares: Mapping[str, Sequence[float]],
    top_depths: Mapping[str, Sequence[float]] | None = None,
    title: str = "Share of Σ|PCS| by relative depth",
) -> go.Figure:
    """One line per label: layer ``l`` of ``L`` at relative depth ``(l + 0.5) / L``, its share of
    the summed |PCS| of all heads; ``top_depths`` (each top-K head's ``layer / L``) marks each
    label's top-K heads as ticks along the bottom, at their layer's point of the line."""
    figure = go.Figure()
    for i, (label, per_layer) in enumerate(shares.items()):
        n_layers = len(per_layer)
        colour = method_colour(label, i)
        figure.add_trace(
            go.Scatter(
                x=[(layer + 0.5) / n_layers for layer in range(n_layers)],
                y=list(per_layer),
                mode="lines+markers",
                name=label,
                legendgroup=label,
                line={"color": colour},
                hovertemplate=f"{label}<br>depth %{{x:.2f}}<br>share %{{y:.3f}}<extra></extra>",
            )
        )
        if top_depths and label in top_depths:
            figure.add_trace(
                go.Scatter(
                    x=[depth + 0.5 / n_layers for depth in top_depths[label]],
                    y=[-0.02 * (i + 1)] * len(top_depths[label]),
                    mode="markers",
                    marker={"symbol": "line-ns-open", "size": 12, "color": colour},
                    name=f"{label}: top-K heads",
                    legendgroup=label,
                    showlegend=False,
                    hovertemplate=f"{label} top head<br>depth %{{x:.2f}}<extra></extra>",
                )
            )
    figure.update_xaxes(title="relative depth (layer / layers)", range=[0, 1])
    figure.update_yaxes(title="share of Σ|PCS|", rangemode="tozero")
    styled(figure, title, width=720, height=420 + 24 * len(shares))
    figure.update_layout(
        legend={
            "x": 0,
            "y": -0.2,
            "yanchor": "top",
            "title": {"text": "run (ticks: its top-K heads)"},
        }
    )
    return figure
