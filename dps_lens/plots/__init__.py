"""Plotly figures; every function returns a ``go.Figure`` in one print-ready style."""

from dps_lens.plots.audit import audit_dots, profile_attention_heatmap, profile_attention_scatter
from dps_lens.plots.depth import depth_profiles
from dps_lens.plots.heads import head_mask_maps, pcs_grid, pcs_heatmap
from dps_lens.plots.leaderboard import leaderboard_dots, lift_against_gain
from dps_lens.plots.sets import jaccard_across_k, jaccard_heatmap, overlap_vs_k
from dps_lens.plots.specificity import specificity_scatter
from dps_lens.plots.style import styled, write_html
from dps_lens.plots.sweeps import gamma_sweep, k_sweep, method_comparison, metric_curve

__all__ = [
    "audit_dots",
    "depth_profiles",
    "gamma_sweep",
    "head_mask_maps",
    "jaccard_across_k",
    "jaccard_heatmap",
    "k_sweep",
    "leaderboard_dots",
    "lift_against_gain",
    "method_comparison",
    "metric_curve",
    "overlap_vs_k",
    "pcs_grid",
    "pcs_heatmap",
    "profile_attention_heatmap",
    "profile_attention_scatter",
    "specificity_scatter",
    "styled",
    "write_html",
]
