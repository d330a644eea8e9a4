"""The leaderboard's figures: every method's paired difference to plain on each run's held-out
users (with the random head sets of head-set methods beside it), and the profile lift a method
adds against what it gains on the task's metric."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dps_lens.errors import DpsLensError
from dps_lens.plots.style import method_colour, styled

VERDICT_COLOURS = {"above": "#2ca02c", "level": "#7f7f7f", "below": "#d62728"}


def _errors(values: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    return {
        "type": "data",
        "symmetric": False,
        "array": [v["high"] - v["value"] for v in values],
        "arrayminus": [v["value"] - v["low"] for v in values],
    }


def _panels(
    runs: Mapping[str, Any], columns: int
) -> tuple[go.Figure, list[tuple[int, int]], int, int]:
    """An empty grid of one panel per run, titled by the run's label: (figure, each run's
    (row, col) in ``runs``' order, columns, rows)."""
    if not runs:
        raise DpsLensError("a leaderboard figure needs at least one run")
    if columns < 1:
        raise DpsLensError(f"columns must be at least 1, got {columns}")
    columns = min(columns, len(runs))
    rows = math.ceil(len(runs) / columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=list(runs), horizontal_spacing=0.12,
        vertical_spacing=0.16 / max(rows - 1, 1) + 0.06,
    )  # fmt: skip
    cells = [(i // columns + 1, i % columns + 1) for i in range(len(runs))]
    return figure, cells, columns, rows


def leaderboard_dots(
    runs: Mapping[str, Mapping[str, Any]], columns: int = 3, title: str | None = None
) -> go.Figure:
    """One panel per run (``label: leaderboard report``): each method's Δ of the main metric
    against plain with its 95% paired interval, coloured by its verdict; grey dots are the
    method's random head sets at the same setting."""
    figure, cells, columns, rows = _panels(runs, columns)
    for i, ((row, col), report) in enumerate(zip(cells, runs.values(), strict=True)):
        methods = [r for r in report["rows"] if r["method"] != "plain"]
        names = [r["method"] for r in methods]
        randoms = [(r["method"], v) for r in methods for v in r.get("random_vs_plain", [])]
        if randoms:
            figure.add_trace(
                go.Scatter(
                    x=[v["value"] for _, v in randoms], y=[m for m, _ in randoms], mode="markers",
                    marker={"color": "#bbbbbb", "size": 6}, name="random heads (same K, setting)",
                    legendgroup="random", showlegend=i == 0,
                    hovertemplate="%{y} with random heads: %{x:+.4f}<extra></extra>",
                ),
                row, col,
            )  # fmt: skip
        figure.add_trace(
            go.Scatter(
                x=[r["vs_plain"]["value"] for r in methods], y=names, mode="markers",
                marker={"size": 10, "color": [VERDICT_COLOURS[r["verdict_plain"]] for r in methods]},
                error_x=_errors([r["vs_plain"] for r in methods]), showlegend=False,
                customdata=[r["setting"] for r in methods],
                hovertemplate="%{y} (%{customdata}): %{x:+.4f}<extra></extra>",
            ),
            row, col,
        )  # fmt: skip
        figure.add_vline(x=0.0, line_color="#999", row=row, col=col)  # pyright: ignore[reportArgumentType]
        figure.update_xaxes(title_text=f"Δ {report['metric']} vs plain", row=row, col=col)
        figure.update_yaxes(autorange="reversed", row=row, col=col)
    # the legend sits at the figure's foot, below the axis titles (in the plots' coordinates it
    # would overlap them)
    figure.update_layout(
        legend={"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0}
    )
    return styled(
        figure,
        title or "Every method on held-out users, against plain (green above, red below)",
        width=360 * columns + 160,
        height=330 * rows + 90,
        margin_top=30,
        margin_bottom=30,
    )


def lift_against_gain(
    runs: Mapping[str, Mapping[str, Any]], columns: int = 3, title: str | None = None
) -> go.Figure:
    """One panel per run: each method's profile lift over plain (x, the share of its output
    words taken from the profile) against its Δ of the run's main metric over plain (y), both
    with 95% paired intervals; a method keeps its colour across panels."""
    figure, cells, columns, rows = _panels(runs, columns)
    for (row, col), report in zip(cells, runs.values(), strict=True):
        methods = [r for r in report["rows"] if r["method"] != "plain"]
        names = [r["method"] for r in methods]
        figure.add_trace(
            go.Scatter(
                x=[r["lift_vs_plain"]["value"] for r in methods],
                y=[r["vs_plain"]["value"] for r in methods],
                mode="markers+text", text=names, textposition="top center", textfont={"size": 10},
                marker={"size": 9, "color": [method_colour(n, j) for j, n in enumerate(names)]},
                error_x=_errors([r["lift_vs_plain"] for r in methods]) | {"thickness": 1, "color": "#bbb"},
                error_y=_errors([r["vs_plain"] for r in methods]) | {"thickness": 1, "color": "#bbb"},
                customdata=[r["setting"] for r in methods], showlegend=False,
                hovertemplate="%{customdata}: lift %{x:+.3f}, Δ metric %{y:+.4f}<extra></extra>",
            ),
            row, col,
        )  # fmt: skip
        figure.add_hline(y=0.0, line_color="#999", row=row, col=col)  # pyright: ignore[reportArgumentType]
        figure.add_vline(x=0.0, line_color="#999", row=row, col=col)  # pyright: ignore[reportArgumentType]
        figure.update_xaxes(title_text="Δ profile lift vs plain", row=row, col=col)
        figure.update_yaxes(title_text=f"Δ {report['metric']} vs plain", row=row, col=col)
    return styled(
        figure,
        title or "Does taking more from the profile pay? Profile lift against metric gain, per run",
        width=400 * columns + 80,
        height=360 * rows + 60,
        margin_top=30,
    )
