"""Across LaMP study runs: do a model's heads carry over from one task to the other, and where in
depth do two model families keep them?

Reads the ``report.json`` of several ``dps-lens study lamp`` runs and writes, for every two runs of
one model (two tasks, or one task at two sizes), the Jaccard index of their top-K head sets (PCS and
ΔPCS), and per run the mean relative depth of the top-K heads, the top-4% share of Σ|PCS| and the
split-half stability. Per run, too, the steering verdicts of its paired tests: which DPS runs beat
plain decoding, and whether DPS at γ = 1 beats, matches or falls below the mean random draw, with
their tally over all runs.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from dps_lens.errors import DataFormatError
from dps_lens.headsets import jaccard
from dps_lens.names import dtype_label, name_from_id
from dps_lens.studies.lamp import (
    SELECTIONS,
    dps_label,
    report_dtype,
    report_model_name,
    report_run_name,
)

VERDICTS = ("above", "level", "below", "mixed")
"""A method against a reference over its metrics: some paired interval above 0 and none below it,
none excluding 0, some below and none above, or both."""

_COMPARISON_KEYS = {"method", "reference", "metric", "difference", "excludes_zero"}


def read_report(path: str | Path) -> dict[str, Any]:
    """A study's ``report.json`` (or the folder holding it), checked for what comparisons read."""
    path = Path(path)
    path = path / "report.json" if path.is_dir() else path
    fix = "pass a study's output folder or its report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path} cannot be read as JSON ({exc}); {fix}") from None
    needed = ("top", "depths", "layer_share", "top_share", "split_half_jaccard")
    found = report.get("discovery") if isinstance(report, dict) else None
    config = report.get("config") if isinstance(report, dict) else None
    if (
        not isinstance(found, dict)
        or not {"model", "task"} <= set(report)
        or not isinstance(config, dict)
        or not {"discovery_users", "evaluation_users"} <= set(config)
        or not isinstance(report.get("dtype", "float32"), str)
        or not isinstance(report.get("comparisons"), list)
        or any(
            not isinstance(c, dict) or not set(c) >= _COMPARISON_KEYS for c in report["comparisons"]
        )
        or any(
            not isinstance(found.get(s), dict) or not set(needed) <= set(found[s])
            for s in SELECTIONS
        )
    ):
        raise DataFormatError(f"{path} is not the report of `dps-lens study lamp`; {fix}")
    return report


def task_label(report: dict[str, Any]) -> str:
    """The task and the run's size, e.g. ``lamp4 · 64/100 users`` (discovery / evaluation)."""
    config = report["config"]
    return f"{report['task']} · {config['discovery_users']}/{config['evaluation_users']} users"


def run_label(report: dict[str, Any]) -> str:
    """The model, its dtype, the task and the sizes: ``SmolLM2-135M-Instruct · bf16 · lamp7 ·
    64/100 users``."""
    return f"{report_run_name(report)} · {task_label(report)}"


def distinct_run_labels(reports: Sequence[dict[str, Any]]) -> list[str]:
    """``run_label`` of each report; two runs of one model, task and size cannot be told apart."""
    labels = [run_label(report) for report in reports]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise DataFormatError(
            f"two reports are both {repeated[0]!r} (model, task, users and dtype); pass each run once"
        )
    return labels


def verdict(comparisons: Sequence[dict[str, Any]]) -> str | None:
    """One of ``VERDICTS`` for a method's paired comparisons with one reference (one row per
    metric); ``None`` when there are none (a run without γ = 1 has no random-heads test)."""
    if not comparisons:
        return None
    positive = {c["difference"] > 0 for c in comparisons if c["excludes_zero"]}
    if not positive:
        return "level"
    if len(positive) == 2:
        return "mixed"
    return "above" if positive == {True} else "below"


def steering_verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """The DPS runs above plain (``dps_above_plain``: each run and the metrics whose paired
    interval is above 0) and, per head set, DPS at γ = 1 against the mean random draw."""
    rows = report["comparisons"]
    above: dict[str, list[str]] = {}
    for c in rows:
        dps_against_plain = c["method"].startswith("dps_") and c["reference"] == "plain"
        if dps_against_plain and c["excludes_zero"] and c["difference"] > 0:
            above.setdefault(c["method"], []).append(c["metric"])
    verdicts: dict[str, Any] = {
        "dps_above_plain": [{"method": m, "metrics": metrics} for m, metrics in above.items()]
    }
    settings = report.get("config", {})
    recipe = {"adaptive": bool(settings.get("adaptive", False)), "beta": settings.get("beta")}
    for select in SELECTIONS:
        label = dps_label(select, 1.0, **recipe)
        against_random = [c for c in rows if c["method"] == label and c["reference"] != "plain"]
        verdicts[f"{select}_vs_random"] = verdict(against_random)
    return verdicts


def compare_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The Jaccard index of the top sets of every two runs of one model (``pairs``), one
    summary row per run (``runs``) and the tally of DPS-against-random verdicts
    (``dps_vs_random``: count per verdict over runs and head sets)."""
    runs = []
    for label, report in zip(distinct_run_labels(reports), reports, strict=True):
        row: dict[str, Any] = {"run": label, "model": report["model"],
                               "task": report["task"]}  # fmt: skip
        for select in SELECTIONS:
            found = report["discovery"][select]
            row[f"{select}_depth"] = sum(found["depths"]) / len(found["depths"])
            row[f"{select}_top_share"] = found["top_share"]
            row[f"{select}_stability"] = found["split_half_jaccard"]
        row |= steering_verdicts(report)
        runs.append(row)
    tally = Counter(row[f"{select}_vs_random"] for row in runs for select in SELECTIONS)
    pairs = [
        {
            "model": a["model"],
            "model_name": report_model_name(a),
            "tasks": [a["task"], b["task"]],
            "runs": [f"{task_label(r)} · {dtype_label(report_dtype(r))}" for r in (a, b)],
            **{
                select: jaccard(a["discovery"][select]["top"], b["discovery"][select]["top"])
                for select in SELECTIONS
            },
        }
        for a, b in combinations(reports, 2)
        if a["model"] == b["model"]
    ]
    return {"runs": runs, "pairs": pairs, "dps_vs_random": {v: tally[v] for v in VERDICTS}}


def comparison_markdown(comparison: dict[str, Any]) -> str:
    """``compare.md`` from ``compare.json``."""
    lines = [
        "| run | mean depth (PCS / ΔPCS top-K) | top-4% share of Σ|PCS| | split-half Jaccard "
        "(PCS / ΔPCS) |",
        "|---|---|---|---|",
    ]
    for r in comparison["runs"]:
        lines.append(
            f"| {r['run']} | {r['pcs_depth']:.2f} / {r['specific_depth']:.2f} | "
            f"{r['pcs_top_share']:.2f} | {r['pcs_stability']:.2f} / {r['specific_stability']:.2f} |"
        )
    lines += ["", "| model | runs | Jaccard of the top-K (PCS) | (ΔPCS) |", "|---|---|---|---|"]
    for c in comparison["pairs"]:
        lines.append(
            f"| {c.get('model_name') or name_from_id(c['model'])} | {' vs '.join(c['runs'])} | "
            f"{c['pcs']:.2f} | "
            f"{c['specific']:.2f} |"
        )
    lines += [
        "",
        "| run | DPS above plain (paired interval above 0) | DPS (γ = 1) against the mean random "
        "draw (PCS / ΔPCS) |",
        "|---|---|---|",
    ]
    for r in comparison["runs"]:
        above = "; ".join(f"{a['method']}: {', '.join(a['metrics'])}" for a in r["dps_above_plain"])
        against = " / ".join(r[f"{select}_vs_random"] or "–" for select in SELECTIONS)
        lines.append(f"| {r['run']} | {above or 'none'} | {against} |")
    tally = comparison["dps_vs_random"]
    lines += [
        "",
        f"DPS (γ = 1) against the mean random draw, over {sum(tally.values())} tests (runs × head "
        "sets): " + ", ".join(f"{tally[v]} {v}" for v in VERDICTS) + " (above: some metric's "
        "paired interval above 0 and none below; below: the reverse; mixed: both).",
    ]
    return "\n".join(lines) + "\n"
