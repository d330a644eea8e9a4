"""Figure builders: each turns a study's saved results into one figure, recomputing nothing
but cheap summaries (group means, Jaccard indices); only ``attention`` runs a model forward."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import plotly.graph_objects as go

from dps_lens import plots
from dps_lens.attention_view import AttentionView, attention_view
from dps_lens.clusters.groups_io import load_groups
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.figures.study import FigureSpec, Study
from dps_lens.heads import Head, draw_random_heads
from dps_lens.headsets import ranking, split_half_rankings
from dps_lens.interventions import HeadMask
from dps_lens.profile_attention import ProfileAttention
from dps_lens.scoring.groups import group_scores
from dps_lens.scoring.head_scores import HeadScores

T = TypeVar("T")
Figure = go.Figure | AttentionView
Row = dict[str, Any]


class Inputs:
    """Reads a study's inputs once per build."""

    def __init__(self, study: Study) -> None:
        self.study = study
        self._cache: dict[Path, Any] = {}

    def path(self, spec: FigureSpec, option: str) -> Path:
        return self.named(spec, option, spec.options.get(option))

    def named(self, spec: FigureSpec, option: str, name: Any) -> Path:
        """The path of the study input ``name``, given in ``spec``'s option ``option``."""
        if name not in self.study.inputs:
            raise DataFormatError(
                f"figure {spec.name!r}: option `{option}` must name one of the study inputs "
                f"{sorted(self.study.inputs)}, got {name!r}"
            )
        return self.study.inputs[name]

    def read(self, path: Path, reader: Callable[[Path], T]) -> T:
        if path not in self._cache:
            if not path.exists():
                raise DpsLensError(f"input {path} does not exist; run the study's produce step")
            self._cache[path] = reader(path)
        return self._cache[path]

    def scores(self, spec: FigureSpec) -> HeadScores:
        return self.read(self.path(spec, "scores"), HeadScores.load)

    def rows(self, spec: FigureSpec, option: str) -> list[Row]:
        """Result rows from a sweep JSON (``{"rows": [...]}``) or a results CSV."""
        return self.read(self.path(spec, option), _read_rows)


def _number(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _read_rows(path: Path) -> list[Row]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8") as handle:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["rows"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: expected a JSON object with `rows` ({exc})") from None


def _select(rows: Sequence[Row], where: Mapping[str, Any]) -> list[Row]:
    """Rows whose every ``where`` key equals the value (a row's None is a baseline: kept)."""
    return [r for r in rows if all(r.get(k) is None or r.get(k) == v for k, v in where.items())]


def _groups(inputs: Inputs, spec: FigureSpec) -> dict[str, HeadScores]:
    """Saved groups (option ``groups``: a `discover --by user|cluster` folder), else the scan's
    users (option ``scores``) with at least ``min_examples`` examples; at most ``max_groups``."""
    minimum = int(spec.options.get("min_examples", 1))
    if "groups" in spec.options:
        saved = inputs.read(inputs.path(spec, "groups"), load_groups)
        grouped = {name: s for name, s in saved.items() if s.n_examples >= minimum}
    else:
        grouped = group_scores(inputs.scores(spec), min_examples=minimum)
    return dict(list(grouped.items())[: int(spec.options.get("max_groups", 12))])


def _pcs_heatmap(inputs: Inputs, spec: FigureSpec) -> Figure:
    return plots.pcs_heatmap(inputs.scores(spec), spec.options.get("title"))


def _specificity(inputs: Inputs, spec: FigureSpec) -> Figure:
    return plots.specificity_scatter(
        inputs.scores(spec), int(spec.options.get("k", 3)), spec.options.get("title")
    )


def _pcs_grid(inputs: Inputs, spec: FigureSpec) -> Figure:
    return plots.pcs_grid(
        _groups(inputs, spec),
        columns=int(spec.options.get("columns", 4)),
        title=spec.options.get("title", "PCS per user"),
    )


def _jaccard_groups(inputs: Inputs, spec: FigureSpec) -> Figure:
    k = int(spec.options.get("k", 3))
    sets = {name: ranking(s)[:k] for name, s in _groups(inputs, spec).items()}
    return plots.jaccard_heatmap(
        sets, spec.options.get("title", f"Jaccard of users' top-{k} heads")
    )


def _stability(inputs: Inputs, spec: FigureSpec) -> Figure:
    ks = spec.options.get("ks", [1, 2, 3, 5, 10])
    name = "between clusters" if "groups" in spec.options else "between users"
    scores = inputs.scores(spec)
    families: dict[str, Sequence[Sequence[Sequence[Head]]]] = {
        "split halves": split_half_rankings(scores, int(spec.options.get("n_splits", 20)))
    }
    users = [ranking(s) for s in _groups(inputs, spec).values()]
    if len(users) >= 2:
        families[name] = [users]
    return plots.overlap_vs_k(families, ks, spec.options.get("title", "Stability of the top-K set"))


def _jaccard_across_k(inputs: Inputs, spec: FigureSpec) -> Figure:
    first, second = split_half_rankings(inputs.scores(spec), n_splits=1)[0]
    return plots.jaccard_across_k(
        first,
        second,
        spec.options.get("ks", [1, 2, 3, 5, 10]),
        names=("half 1", "half 2"),
        title=spec.options.get("title", "Top-K sets of two halves of the examples"),
    )


def _sweep(inputs: Inputs, spec: FigureSpec, name: str) -> list[Row]:
    """Rows of one sweep of a study file; files holding a single sweep carry no ``sweep`` key."""
    return [r for r in inputs.rows(spec, "sweep") if r.get("sweep", name) == name]


def _gamma_sweep(inputs: Inputs, spec: FigureSpec) -> Figure:
    metric = spec.options.get("metric", "personalization")
    return plots.gamma_sweep(_sweep(inputs, spec, "gamma"), metric, title=spec.options.get("title"))


def _k_sweep(inputs: Inputs, spec: FigureSpec) -> Figure:
    metric = spec.options.get("metric", "personalization")
    return plots.k_sweep(_sweep(inputs, spec, "k"), metric, title=spec.options.get("title"))


def _method_comparison(inputs: Inputs, spec: FigureSpec) -> Figure:
    rows = _select(inputs.rows(spec, "results"), spec.options.get("select", {}))
    if not rows:
        raise DpsLensError(
            f"figure {spec.name!r}: no result rows match {spec.options.get('select')}"
        )
    return plots.method_comparison(rows, spec.options["metric"], title=spec.options.get("title"))


def _head_masks(inputs: Inputs, spec: FigureSpec) -> Figure:
    scores, k = inputs.scores(spec), int(spec.options.get("k", 3))
    top = ranking(scores)[:k]
    drawn = draw_random_heads(
        top, scores.n_layers, scores.n_heads, int(spec.options.get("seed", 0))
    )
    maps = {
        f"top-{k} heads (PCS)": HeadMask.from_heads(top, scores.n_layers, scores.n_heads).weights,
        f"{k} random heads": HeadMask.from_heads(drawn, scores.n_layers, scores.n_heads).weights,
    }
    labels = {}
    if "sweep" in spec.options:
        metric = spec.options.get("metric", "personalization")
        rows = {r["method"]: r for r in _sweep(inputs, spec, "k") if r.get("k") == k}
        for panel, method in zip(maps, ("dps", "random_heads"), strict=True):
            if method in rows:
                labels[panel] = f"{metric} {rows[method][metric]:.3f}"
    return plots.head_mask_maps(maps, labels, spec.options.get("title", "Masked heads"))


def _attention(inputs: Inputs, spec: FigureSpec) -> Figure:
    from dps_lens.data.loaders import load_examples
    from dps_lens.models import load_model
    from dps_lens.organism.train import trained_world

    scores = inputs.scores(spec)
    model = load_model(spec.options.get("model", scores.model_id), device="cpu")
    if "examples" in spec.options:
        examples = load_examples(inputs.path(spec, "examples"))
    else:
        examples = trained_world(model).split_examples(
            spec.options.get("world_split", "evaluation"), 4, queries_per_user=1
        )
    example = examples[int(spec.options.get("example", 0))]
    return attention_view(
        model,
        example,
        ranking(scores)[: int(spec.options.get("k", 3))],
        template=spec.options.get("template", scores.config.get("template", "history")),
        max_length=spec.options.get("max_length", scores.config.get("max_length")),
        scores=scores,
    )


def _depth_profile(inputs: Inputs, spec: FigureSpec) -> Figure:
    from dps_lens.studies.lamp_compare import distinct_run_labels, read_report

    names = spec.options.get("reports")
    if not isinstance(names, list) or not names:
        raise DataFormatError(
            f"figure {spec.name!r}: option `reports` must list study inputs (lamp report.json)"
        )
    select = spec.options.get("select", "pcs")
    if select not in ("pcs", "specific"):
        raise DataFormatError(
            f"figure {spec.name!r}: option `select` must be pcs or specific, got {select!r}"
        )
    reports = [inputs.read(inputs.named(spec, "reports", name), read_report) for name in names]
    shares, depths = {}, {}
    for label, report in zip(distinct_run_labels(reports), reports, strict=True):
        found = report["discovery"][select]
        shares[label], depths[label] = found["layer_share"], found["depths"]
    kind = "ΔPCS" if select == "specific" else "PCS"
    title = spec.options.get("title", f"Share of Σ|PCS| by relative depth ({kind} top-K marked)")
    return plots.depth_profiles(shares, depths, title)


def _read_audit(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not an audit report ({exc})") from None
    if not isinstance(report, dict) or not {"rows", "gold", "metric"} <= set(report):
        raise DataFormatError(
            f"{path}: not an audit report (rows, gold, metric); rerun dps-lens audit"
        )
    return report


def _profile_attention(inputs: Inputs, spec: FigureSpec) -> Figure:
    shares = inputs.read(inputs.path(spec, "attention"), ProfileAttention.load)
    return plots.profile_attention_heatmap(shares, spec.options.get("title"))


def _profile_attention_scatter(inputs: Inputs, spec: FigureSpec) -> Figure:
    shares = inputs.read(inputs.path(spec, "attention"), ProfileAttention.load)
    return plots.profile_attention_scatter(
        shares, inputs.scores(spec), int(spec.options.get("k", 10)), spec.options.get("title")
    )


def _audit(inputs: Inputs, spec: FigureSpec) -> Figure:
    report = inputs.read(inputs.path(spec, "report"), _read_audit)
    return plots.audit_dots(report, spec.options.get("title"))


def _leaderboards(inputs: Inputs, spec: FigureSpec) -> dict[str, dict[str, Any]]:
    """The runs named by option ``reports`` (leaderboard.json inputs), by their labels."""
    from dps_lens.studies.leaderboard_compare import read_leaderboard, run_label

    names = spec.options.get("reports")
    if not isinstance(names, list) or not names:
        raise DataFormatError(
            f"figure {spec.name!r}: option `reports` must list study inputs (leaderboard.json)"
        )
    reports = [inputs.read(inputs.named(spec, "reports", name), read_leaderboard) for name in names]
    return {run_label(report): report for report in reports}


def _leaderboard(inputs: Inputs, spec: FigureSpec) -> Figure:
    return plots.leaderboard_dots(
        _leaderboards(inputs, spec), int(spec.options.get("columns", 3)), spec.options.get("title")
    )


def _lift_gain(inputs: Inputs, spec: FigureSpec) -> Figure:
    return plots.lift_against_gain(
        _leaderboards(inputs, spec), int(spec.options.get("columns", 3)), spec.options.get("title")
    )


VIEW_KINDS = frozenset({"attention"})  # circuitsvis views: HTML only
BUILDERS: dict[str, Callable[[Inputs, FigureSpec], Figure]] = {
    "pcs_heatmap": _pcs_heatmap,
    "pcs_grid": _pcs_grid,
    "specificity": _specificity,
    "jaccard_groups": _jaccard_groups,
    "stability": _stability,
    "jaccard_across_k": _jaccard_across_k,
    "gamma_sweep": _gamma_sweep,
    "k_sweep": _k_sweep,
    "method_comparison": _method_comparison,
    "head_masks": _head_masks,
    "attention": _attention,
    "depth_profile": _depth_profile,
    "profile_attention": _profile_attention,
    "profile_attention_scatter": _profile_attention_scatter,
    "audit": _audit,
    "leaderboard": _leaderboard,
    "lift_gain": _lift_gain,
}
