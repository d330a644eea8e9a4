"""One print-ready look for every figure: fonts, colour scales, sizes, method colours."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from dps_lens._io import atomic_write, atomic_write_text

FONT = {"family": "Helvetica, Arial, sans-serif", "size": 13, "color": "#222"}


def _template() -> go.layout.Template:
    """plotly's ``simple_white`` with visible shapes: its shape defaults draw lines of width 0,
    which hides every reference line (``add_vline``, ``add_hline``) not given a width."""
    template = go.layout.Template(pio.templates["simple_white"])
    template.update(layout={"shapedefaults": {"line": {"width": 1}, "opacity": 1.0}})
    return template


TEMPLATE = _template()
DIVERGING = "RdBu_r"  # signed scores, always centred at 0
SEQUENTIAL = "Blues"  # overlaps and fractions in [0, 1]
METHOD_COLOURS = {
    "plain": "#7f7f7f",
    "dps": "#d62728",
    "dps_global": "#d62728",
    "dps_shared_prefill": "#ff7f0e",
    "cluster_dps_hard": "#9467bd",
    "cluster_dps_soft": "#17becf",
    "cad": "#1f77b4",
    "random_heads": "#2ca02c",
    "decore": "#8c564b",
    "reference": "#e377c2",
}
_FALLBACK = ("#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#ce6dbd", "#6b6ecf", "#e7ba52")
"""Colours of traces that are not methods (runs, head sets), none a method's colour."""


def method_colour(name: str, index: int = 0) -> str:
    """The colour of the method named exactly ``name``; another name gets the ``index``-th fallback."""
    return METHOD_COLOURS.get(name, _FALLBACK[index % len(_FALLBACK)])


TITLE_CHAR_PX = 9.5  # average advance of a title character at the title size


def wrap_title(title: str, width: int) -> str:
    """Break ``title`` (with ``<br>``) so that each line fits ``width`` pixels."""
    per_line = max(20, int((width - 40) / TITLE_CHAR_PX))
    lines: list[str] = []
    for word in title.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= per_line:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def styled(
    figure: go.Figure,
    title: str,
    width: int = 640,
    height: int = 420,
    margin_top: int = 0,
    margin_bottom: int = 0,
) -> go.Figure:
    """Apply the shared template, font, size and title (wrapped to the width) to ``figure``;
    ``margin_top`` adds room above the plot (for subplot titles), ``margin_bottom`` below it (for
    a legend at the figure's foot)."""
    text = wrap_title(title, width)
    extra = 22 * text.count("<br>")
    figure.update_layout(
        title={"text": text, "x": 0.02, "xanchor": "left"},
        font=FONT,
        template=TEMPLATE,
        width=width,
        height=height + extra,
        margin={"l": 70, "r": 30, "t": 70 + extra + margin_top, "b": 60 + margin_bottom},
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
    )
    return figure


def write_html(figure: go.Figure, path: str | Path, shared_plotlyjs: bool = False) -> Path:
    """HTML that opens offline, written atomically: plotly.js embedded (~4.8 MB), or with
    ``shared_plotlyjs`` one ``plotly.min.js`` beside it that every figure of the folder loads."""
    if not shared_plotlyjs:
        return atomic_write_text(path, figure.to_html(include_plotlyjs=True, full_html=True))
    return atomic_write(path, lambda tmp: figure.write_html(tmp, include_plotlyjs="directory"))
