"""Each figure carries the data it is given, on the shared style (zero-centred signed scales)."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from dps_lens import plots
from dps_lens.data import ExampleRef
from dps_lens.scoring.head_scores import HeadScores


def scores_from(per_example: torch.Tensor, users: list[str]) -> HeadScores:
    ids = [ExampleRef(i, u) for i, u in enumerate(users)]
    return HeadScores(per_example, torch.zeros(len(users)), "m", "hash", ids, {"n_bootstrap": 50})


@pytest.fixture
def scores() -> HeadScores:
    torch.manual_seed(0)
    per_example = torch.randn(6, 3, 4) * 0.1
    per_example[:, 1, 2] += torch.tensor([2.0, 2.0, 2.0, -1.0, -1.0, -1.0])
    return scores_from(per_example, ["a", "a", "a", "b", "b", "b"])


def test_pcs_heatmap_shows_means_with_ci_and_a_zero_centred_scale(scores: HeadScores) -> None:
    figure = plots.pcs_heatmap(scores)
    heatmap = figure.data[0]
    np.testing.assert_allclose(heatmap.z, scores.mean.numpy())
    assert heatmap.zmid == 0 and heatmap.zmin == -heatmap.zmax
    np.testing.assert_allclose(np.asarray(heatmap.customdata)[..., 0], scores.ci_low.numpy())
    assert np.asarray(heatmap.customdata)[0, 0, 3] == scores.n_examples
    assert figure.layout.yaxis.autorange == "reversed"  # layer 0 on top


def test_pcs_grid_shares_one_symmetric_scale(scores: HeadScores) -> None:
    from dps_lens.scoring.groups import group_scores

    groups = group_scores(scores)
    figure = plots.pcs_grid(groups, columns=2)
    assert len(figure.data) == 2
    limit = max(float(g.mean.abs().max()) for g in groups.values())
    for trace in figure.data:
        assert trace.zmax == pytest.approx(limit) and trace.zmin == pytest.approx(-limit)
    assert [t.showscale for t in figure.data] == [True, False]
    assert "a (n = 3)" in figure.layout.annotations[0].text


def test_jaccard_heatmap_values() -> None:
    figure = plots.jaccard_heatmap({"u": [(0, 0), (1, 1)], "v": [(1, 1), (2, 2)], "w": [(3, 3)]})
    np.testing.assert_allclose(figure.data[0].z, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])


def test_jaccard_across_k_and_overlap_vs_k() -> None:
    first = [(0, 0), (0, 1), (0, 2), (0, 3)]
    second = [(0, 1), (0, 0), (1, 0), (1, 1)]
    figure = plots.jaccard_across_k(first, second, [1, 2, 4])
    np.testing.assert_allclose(
        figure.data[0].z, [[0, 1 / 2, 1 / 4], [1 / 2, 1, 1 / 2], [1 / 4, 2 / 4, 2 / 6]]
    )
    curves = plots.overlap_vs_k(
        {"pairs": [(first, second)], "same": [[first, first, first]]}, [1, 2]
    )
    assert list(curves.data[0].y) == [0.0, 1.0] and list(curves.data[1].y) == [1.0, 1.0]


def rows() -> list[dict]:
    out = [{"method": "plain", "k": None, "gamma": None, "m": 0.5, "m_low": 0.4, "m_high": 0.6}]
    for method, base in (("dps", 0.8), ("random_heads", 0.5)):
        for k in (1, 2, 4):
            value = base + 0.01 * k
            out.append(
                {
                    "method": method,
                    "k": k,
                    "gamma": float(k),
                    "m": value,
                    "m_low": value - 0.1,
                    "m_high": value + 0.1,
                }
            )
    for row in out:
        row.update(coherence_ppl=2.0, coherence_ppl_low=1.5, coherence_ppl_high=2.5)
    return out


def test_k_sweep_draws_a_band_and_a_line_per_method_and_a_baseline() -> None:
    figure = plots.k_sweep(rows(), "m")
    lines = [t for t in figure.data if t.mode == "lines+markers"]
    assert [t.name for t in lines] == ["dps", "random_heads"]
    assert list(lines[0].x) == [1, 2, 4] and list(lines[0].y) == pytest.approx([0.81, 0.82, 0.84])
    bands = [t for t in figure.data if t.fill == "toself"]
    assert list(bands[0].y) == pytest.approx([0.91, 0.92, 0.94, 0.74, 0.72, 0.71])
    baseline = [t for t in figure.data if t.line.dash == "dash"]
    assert (
        len(baseline) == 1 and list(baseline[0].y) == [0.5, 0.5] and list(baseline[0].x) == [1, 4]
    )


def test_gamma_sweep_has_metric_and_cost_panels() -> None:
    figure = plots.gamma_sweep(rows(), "m")
    assert {t.yaxis for t in figure.data} == {"y", "y2"}
    assert figure.layout.yaxis2.type == "log" and figure.layout.xaxis2.type == "log"


def test_method_comparison_sorted_with_asymmetric_errors() -> None:
    data = [
        {"method": "a", "m": 0.3, "m_low": 0.2, "m_high": 0.35},
        {"method": "b", "m": 0.7, "m_low": 0.5, "m_high": 0.9},
    ]
    figure = plots.method_comparison(data, "m")
    assert [t.y[0] for t in figure.data] == ["a", "b"]  # best last = drawn on top
    assert figure.data[0].error_x.array[0] == pytest.approx(0.05)
    assert figure.data[0].error_x.arrayminus[0] == pytest.approx(0.1)


def test_head_mask_maps_show_weights_and_labels() -> None:
    top = torch.zeros(2, 3)
    top[1, 2] = 1.0
    figure = plots.head_mask_maps(
        {"top": top, "random": torch.full((2, 3), 0.5)}, {"top": "rate 0.9"}
    )
    np.testing.assert_allclose(figure.data[0].z, top.numpy())
    assert figure.data[0].zmin == 0 and figure.data[0].zmax == 1
    assert "rate 0.9" in figure.layout.annotations[0].text


def test_write_html_is_self_contained_or_shares_plotlyjs(tmp_path, scores: HeadScores) -> None:
    figure = plots.pcs_heatmap(scores)
    alone = plots.write_html(figure, tmp_path / "a" / "alone.html")
    assert alone.stat().st_size > 1_000_000
    assert not re.search(r"<script[^>]+src=", alone.read_text())  # nothing fetched
    shared = plots.write_html(figure, tmp_path / "b" / "shared.html", shared_plotlyjs=True)
    assert shared.stat().st_size < 200_000 and (tmp_path / "b" / "plotly.min.js").exists()
    assert isinstance(figure, go.Figure)


def test_specificity_scatter_plots_pcs_with_against_without_profile(tmp_path) -> None:
    from dps_lens.data.example import ExampleRef
    from dps_lens.errors import DpsLensError
    from dps_lens.figures.builders import BUILDERS, Inputs
    from dps_lens.figures.study import FigureSpec, Study

    torch.manual_seed(0)
    per_example, no_profile = torch.randn(8, 3, 4) * 0.05, torch.randn(8, 3, 4) * 0.05
    per_example[:, 1, 2] += 2.0  # a preference head: PCS only with the profile
    per_example[:, 0, 0] += 3.0  # a generic head: the same PCS with and without it
    no_profile[:, 0, 0] += 3.0
    ids, config = [ExampleRef(i, "u") for i in range(8)], {"n_bootstrap": 50}
    scores = HeadScores(per_example, torch.zeros(8), "m", "h", ids, config, no_profile=no_profile)
    assert scores.summary_no_profile is not None and scores.summary_delta is not None
    figure = plots.specificity_scatter(scores, k=1)
    others, top, diagonal = figure.data
    assert list(top.text) == ["L1H2"] and len(others.x) == 11
    np.testing.assert_allclose(top.x, [float(scores.mean[1, 2])])
    np.testing.assert_allclose(top.y, [float(scores.summary_no_profile.mean[1, 2])])
    assert top.customdata[0][1] == pytest.approx(float(scores.summary_delta.mean[1, 2]))
    high = float(scores.ci_high[1, 2] - scores.mean[1, 2])
    assert top.error_x.array[0] == pytest.approx(high)
    assert diagonal.line.dash == "dash" and list(diagonal.x) == list(diagonal.y)
    assert "with the profile" in figure.layout.xaxis.title.text
    assert "without the profile" in figure.layout.yaxis.title.text
    with pytest.raises(DpsLensError, match="no-profile"):
        plots.specificity_scatter(HeadScores(per_example, torch.zeros(8), "m", "h", ids, config))

    scores.save(tmp_path / "scan")
    spec = FigureSpec(name="s", kind="specificity", options={"scores": "scan", "k": 1})
    study = Study("s", "s", tmp_path, tmp_path, {"scan": tmp_path / "scan"}, [spec])
    built = BUILDERS["specificity"](Inputs(study), spec)
    assert isinstance(built, go.Figure) and list(built.data[1].text) == ["L1H2"]


def test_eight_traces_that_are_not_methods_get_eight_colours():
    from dps_lens.plots.style import METHOD_COLOURS, method_colour

    colours = [method_colour(f"run {i}", i) for i in range(8)]
    assert len(set(colours)) == 8 and not set(colours) & set(METHOD_COLOURS.values())
