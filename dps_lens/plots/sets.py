"""Overlap of head sets: user × user Jaccard, Jaccard across K, stability of the top-K set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dps_lens.heads import Head
from dps_lens.headsets import jaccard, mean_pairwise_jaccard, pairwise_jaccard
from dps_lens.plots.style import SEQUENTIAL, method_colour, styled


def _jaccard_map(matrix: np.ndarray, labels: list[str], hover: str, annotate: bool) -> go.Figure:
    """A [0, 1] heatmap of Jaccard indices, row 0 on top, values written in the cells on request."""
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=labels,
            y=labels,
            zmin=0.0,
            zmax=1.0,
            colorscale=SEQUENTIAL,
            colorbar={"title": {"text": "Jaccard"}},
            hovertemplate=hover + "<br>Jaccard %{z:.2f}<extra></extra>",
            text=np.round(matrix, 2) if annotate else None,
            texttemplate="%{text}" if annotate else None,
        )
    )
    figure.update_yaxes(autorange="reversed")
    return figure


def jaccard_heatmap(
    head_sets: Mapping[str, Sequence[Head]], title: str = "Jaccard index of top-K head sets"
) -> go.Figure:
    """Group × group Jaccard index of their head sets (users, clusters, splits)."""
    names = list(head_sets)
    figure = _jaccard_map(pairwise_jaccard(head_sets), names, "%{y} vs %{x}", len(names) <= 12)
    size = 200 + 24 * len(names)
    return styled(
        figure, title, width=min(max(size + 120, 520), 1100), height=min(max(size, 420), 1000)
    )


def jaccard_across_k(
    first: Sequence[Head],
    second: Sequence[Head],
    ks: Sequence[int],
    names: tuple[str, str] = ("A", "B"),
    title: str = "Jaccard of top-K sets across K",
) -> go.Figure:
    """``J(top-K_i of first, top-K_j of second)`` for every pair of K in ``ks``."""
    matrix = np.array([[jaccard(first[:a], second[:b]) for b in ks] for a in ks])
    hover = f"K({names[0]}) = %{{y}}, K({names[1]}) = %{{x}}"
    figure = _jaccard_map(matrix, [str(k) for k in ks], hover, annotate=True)
    figure.update_xaxes(title=f"K, {names[1]}", type="category")
    figure.update_yaxes(title=f"K, {names[0]}", type="category")
    return styled(figure, title, width=520, height=460)


def overlap_vs_k(
    families: Mapping[str, Sequence[Sequence[Sequence[Head]]]],
    ks: Sequence[int],
    title: str = "Stability of the top-K head set",
) -> go.Figure:
    """Mean pairwise Jaccard of top-K sets against K, one line per family of rankings.

    ``families[name]`` is a list of groups of rankings; for each K the Jaccard is averaged over
    pairs inside each group, then over groups (e.g. split-half pairs, or all users together).
    """
    figure = go.Figure()
    for i, (name, groups) in enumerate(families.items()):
        values = [
            float(np.nanmean([mean_pairwise_jaccard([r[:k] for r in group]) for group in groups]))
            for k in ks
        ]
        figure.add_trace(
            go.Scatter(
                x=list(ks),
                y=values,
                name=name,
                mode="lines+markers",
                line={"color": method_colour(name, i)},
                hovertemplate=f"{name}<br>K = %{{x}}<br>mean Jaccard %{{y:.2f}}<extra></extra>",
            )
        )
    figure.update_xaxes(title="K (heads in the set)")
    figure.update_yaxes(title="mean pairwise Jaccard", range=[0, 1.02])
    return styled(figure, title)
