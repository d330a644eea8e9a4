"""The paper-figure pipeline: ``STUDY.toml`` → figures from saved results, rebuilt on change."""

from dps_lens.figures.builders import BUILDERS
from dps_lens.figures.export import Built, build_study, find_chromium, static_export_available
from dps_lens.figures.study import FigureSpec, Study, load_study

__all__ = [
    "BUILDERS",
    "Built",
    "FigureSpec",
    "Study",
    "build_study",
    "find_chromium",
    "load_study",
    "static_export_available",
]
