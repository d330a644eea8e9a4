"""Exported figures, attention views and the widget notebook, drawn by a real (headless) browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch

from dps_lens.data import ExampleRef
from dps_lens.figures import find_chromium
from tests.headless import render

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("DPS_LENS_BROWSER_ASSETS", ROOT / ".cache" / "browser"))
BROWSER = find_chromium()
pytestmark = [
    pytest.mark.skipif(BROWSER is None, reason="needs Chromium: apt-get install chromium"),
    pytest.mark.slow,
]


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Screenshots go to $DPS_LENS_SCREENSHOTS when set (to look at them), else a temp dir."""
    folder = Path(os.environ.get("DPS_LENS_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_checker_catches_javascript_errors_and_blank_pages(tmp_path: Path, shots: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    rendered = render(BROWSER, page, shots / "broken.png")
    assert any("undefinedFunction" in e for e in rendered.js_errors)
    assert rendered.ink() < 0.001


def test_exported_plotly_figure_draws(tmp_path: Path, shots: Path) -> None:
    from dps_lens.plots import pcs_heatmap, write_html
    from dps_lens.scoring.head_scores import HeadScores

    torch.manual_seed(0)
    scores = HeadScores(
        torch.randn(4, 3, 4),
        torch.zeros(4),
        "m",
        "h",
        [ExampleRef(i, "u") for i in range(4)],
    )
    page = write_html(pcs_heatmap(scores), tmp_path / "heatmap.html")
    rendered = render(BROWSER, page, shots / "heatmap.png")
    assert rendered.js_errors == []
    assert 'class="main-svg"' in rendered.dom and "heatmaplayer" in rendered.dom
    assert rendered.ink() > 0.05


def test_attention_view_draws_offline(planted, examples, tmp_path: Path, shots: Path) -> None:
    from dps_lens.attention_view import attention_view

    page = attention_view(planted, examples[0], [(1, 1), (1, 3)]).save(tmp_path / "view.html")
    rendered = render(BROWSER, page, shots / "attention.png")
    assert rendered.js_errors == []
    assert "Head Selector" in rendered.dom  # drawn by circuitsvis, not in the page source
    assert rendered.ink() > 0.05


@pytest.mark.skipif(
    not (ASSETS / "embed-amd.js").exists(),
    reason=f"widget rendering in exported HTML needs {ASSETS}/embed-amd.js and require.js: make browser-assets",
)
def test_widget_notebook_html_export_draws_the_widget(tmp_path: Path, shots: Path) -> None:
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(
        ROOT / "notebooks" / "03_interactive_head_toggling.ipynb", as_version=4
    )
    NotebookClient(
        notebook, timeout=600, resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    assert notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    exporter = HTMLExporter(require_js_url="require.js", widget_renderer_url="embed-amd.js")
    body, _ = exporter.from_notebook_node(notebook)
    for asset in ("require.js", "embed-amd.js"):
        shutil.copy(ASSETS / asset, tmp_path / asset)
    page = tmp_path / "03.html"
    page.write_text(body, encoding="utf-8")
    rendered = render(BROWSER, page, shots / "widget_notebook.png", size=(1100, 1000))
    assert rendered.js_errors == []
    assert rendered.dom.count("widget-button") >= 12 + 3  # the 3 × 4 head grid and the controls
    assert "×" in rendered.dom  # the top-3 heads are shown masked
    assert rendered.ink() > 0.05
