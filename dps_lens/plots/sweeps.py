"""Metric curves and method comparisons with 95% confidence intervals.

Rows are dicts as written by the evaluation runner and the studies: a metric ``m`` comes with
``m_low`` and ``m_high`` (bootstrap 95% CI bounds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dps_lens.plots.style import method_colour, styled

Row = Mapping[str, Any]


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _add_curves(
    figure: go.Figure,
    rows: Sequence[Row],
    x: str,
    metric: str,
    group: str,
    row: int | None = None,
    show_legend: bool = True,
) -> None:
    col = 1 if row else None
    for i, name in enumerate(dict.fromkeys(r[group] for r in rows)):
        points = sorted(
            (r for r in rows if r[group] == name and r[x] is not None), key=lambda r: r[x]
        )
        if not points:
            continue
        colour = method_colour(str(name), i)
        xs = [p[x] for p in points]
        low, high = [p[f"{metric}_low"] for p in points], [p[f"{metric}_high"] for p in points]
        figure.add_trace(
            go.Scatter(
                x=xs + xs[::-1],
                y=high + low[::-1],
                mode="lines",
                fill="toself",
                fillcolor=_rgba(colour, 0.15),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                legendgroup=str(name),
            ),
            row=row or None,
            col=col,
        )
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=[p[metric] for p in points],
                name=str(name),
                mode="lines+markers",
                line={"color": colour},
                legendgroup=str(name),
                showlegend=show_legend,
                customdata=list(zip(low, high, strict=True)),
                hovertemplate=(
                    f"{name}<br>{x} = %{{x}}<br>{metric} %{{y:.3f}} "
                    "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>"
                ),
            ),
            row=row or None,
            col=col,
        )


def _add_baselines(
    figure: go.Figure,
    rows: Sequence[Row],
    x_range: Sequence[float],
    metric: str,
    row: int | None = None,
) -> None:
    """Methods without a sweep value (``plain``) as dashed lines across the swept range."""
    for i, r in enumerate(rows):
        name = str(r["method"])
        figure.add_trace(
            go.Scatter(
                x=[min(x_range), max(x_range)],
                y=[r[metric], r[metric]],
                name=f"{name} ({r[metric]:.3f})" if row in (None, 1) else name,
                mode="lines",
                line={"dash": "dash", "color": method_colour(name, i), "width": 1.5},
                legendgroup=name,
                showlegend=row in (None, 1),
                hovertemplate=f"{name}: {metric} {r[metric]:.3f}<extra></extra>",
            ),
            row=row or None,
            col=1 if row else None,
        )


def metric_curve(
    rows: Sequence[Row],
    x: str,
    metric: str,
    title: str,
    x_title: str,
    y_title: str,
    group: str = "method",
    log_x: bool = False,
) -> go.Figure:
    """``metric`` against ``x`` with a 95% CI band per ``group``; rows whose ``x`` is None
    (e.g. the unsteered model) are drawn as dashed reference lines."""
    figure = go.Figure()
    _add_curves(figure, rows, x, metric, group)
    values = sorted({r[x] for r in rows if r[x] is not None})
    _add_baselines(figure, [r for r in rows if r[x] is None], values, metric)
    figure.update_xaxes(title=x_title, type="log" if log_x else "linear", tickvals=values)
    figure.update_yaxes(title=y_title)
    return styled(figure, title)


def k_sweep(
    rows: Sequence[Row], metric: str = "personalization", title: str | None = None
) -> go.Figure:
    """Metric against K, the number of heads steered (γ fixed), true vs random heads."""
    return metric_curve(
        rows,
        "k",
        metric,
        title or f"{metric.capitalize()} vs number of steered heads",
        "K (heads masked)",
        f"{metric} (95% CI)",
    )


def gamma_sweep(
    rows: Sequence[Row],
    metric: str = "personalization",
    cost: str = "coherence_ppl",
    title: str | None = None,
) -> go.Figure:
    """Two stacked panels against γ: the metric, and its cost (coherence perplexity, log axis)."""
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    _add_curves(figure, rows, "gamma", metric, "method", row=1)
    _add_curves(figure, rows, "gamma", cost, "method", row=2, show_legend=False)
    baselines = [r for r in rows if r["gamma"] is None]
    gammas = sorted({r["gamma"] for r in rows if r["gamma"] is not None})
    _add_baselines(figure, baselines, gammas, metric, row=1)
    _add_baselines(figure, baselines, gammas, cost, row=2)
    figure.update_yaxes(title_text=f"{metric} (95% CI)", row=1, col=1)
    figure.update_yaxes(
        title_text="coherence perplexity" if cost == "coherence_ppl" else cost,
        type="log",
        tickvals=[1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000],
        row=2,
        col=1,
    )
    figure.update_xaxes(type="log", tickvals=gammas, ticktext=[f"{g:g}" for g in gammas])
    figure.update_xaxes(title_text="γ (contrast strength, log scale)", row=2, col=1)
    return styled(figure, title or f"{metric.capitalize()} and coherence vs γ", height=620)


def method_comparison(
    rows: Sequence[Row], metric: str, title: str | None = None, name: str = "method"
) -> go.Figure:
    """One point per method with its 95% CI, sorted by the metric (best on top)."""
    ordered = sorted(rows, key=lambda r: r[metric])
    figure = go.Figure()
    for i, r in enumerate(ordered):
        figure.add_trace(
            go.Scatter(
                x=[r[metric]],
                y=[str(r[name])],
                mode="markers",
                marker={"size": 11, "color": method_colour(str(r[name]), i)},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [r[f"{metric}_high"] - r[metric]],
                    "arrayminus": [r[metric] - r[f"{metric}_low"]],
                    "thickness": 2,
                },
                showlegend=False,
                hovertemplate=(
                    f"{r[name]}<br>{metric} {r[metric]:.3f} "
                    f"[{r[f'{metric}_low']:.3f}, {r[f'{metric}_high']:.3f}]<extra></extra>"
                ),
            )
        )
    figure.update_xaxes(title=f"{metric} (95% CI)")
    figure.update_yaxes(title="", type="category")
    return styled(figure, title or f"{metric} by method", height=140 + 42 * len(rows))
