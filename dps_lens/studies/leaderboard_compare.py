"""Leaderboard runs side by side: each method's verdicts on every (model, task) run, their tally,
and the answers they give (does any method beat plain on held-out users, does any head-set method
beat its random heads), all generated from the runs' ``leaderboard.json``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.names import run_name
from dps_lens.studies.leaderboard import VERDICTS

REPORT_FILE = "leaderboard.json"


def read_leaderboard(path: str | Path) -> dict[str, Any]:
    """A run's ``leaderboard.json`` (or the folder holding it), checked."""
    path = Path(path)
    path = path / REPORT_FILE if path.is_dir() else path
    fix = "pass a `dps-lens study leaderboard` output folder or its leaderboard.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DpsLensError(f"no leaderboard at {path}; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path} is not a leaderboard report ({exc}); {fix}") from None
    needed = {"model_name", "dtype", "task", "metric", "rows", "tuning", "profile"}
    if not isinstance(report, dict) or not needed <= set(report):
        raise DataFormatError(f"{path} is not a leaderboard report; {fix}")
    return report


def run_label(report: dict[str, Any]) -> str:
    """``SmolLM2-135M-Instruct · bf16 · lamp7``: a run's model, dtype and task."""
    return f"{run_name(report['model_name'], report['dtype'])} · {report['task']}"


def compare_leaderboards(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per run, each method's paired differences and verdicts; per method, the tally of its
    verdicts over runs; and the methods above plain, or above their random heads, anywhere."""
    labels = [run_label(r) for r in reports]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise DpsLensError(f"two reports are both {repeated[0]!r}; pass each run once")
    runs, tally = [], {}
    for label, report in zip(labels, reports, strict=True):
        rows = [r for r in report["rows"] if r["method"] != "plain"]
        runs.append({
            "run": label,
            "metric": report["metric"],
            "n_evaluation": report["n_evaluation"],
            "benefit": report["profile"]["benefit"],
            "seconds": report["seconds"],
            "methods": [
                {key: row.get(key) for key in ("method", "setting", "vs_plain", "verdict_plain",
                                               "vs_random", "verdict_random", "lift_vs_plain")}
                for row in rows
            ],
        })  # fmt: skip
        for row in rows:
            counts = tally.setdefault(row["method"], {"plain": Counter(), "random": Counter()})
            counts["plain"][row["verdict_plain"]] += 1
            if row.get("verdict_random") is not None:
                counts["random"][row["verdict_random"]] += 1
    above_plain = [
        {"run": run["run"], "method": m["method"], "setting": m["setting"]}
        for run in runs
        for m in run["methods"]
        if m["verdict_plain"] == "above"
    ]
    above_random = [
        {"run": run["run"], "method": m["method"], "setting": m["setting"]}
        for run in runs
        for m in run["methods"]
        if m["verdict_random"] == "above"
    ]
    return {
        "runs": runs,
        "tally": {
            method: {against: {v: counts[against][v] for v in VERDICTS} for against in counts}
            for method, counts in tally.items()
        },
        "above_plain": above_plain,
        "above_random": above_random,
    }


def _cell(estimate: dict[str, float] | None, verdict: str | None) -> str:
    if estimate is None:
        return "–"
    text = f"{estimate['value']:+.3f} [{estimate['low']:+.3f}, {estimate['high']:+.3f}]"
    return f"**{verdict}** {text}" if verdict != "level" else f"level {text}"


def compare_markdown(comparison: dict[str, Any]) -> str:
    """``compare.md`` from ``compare.json``: verdict tables against plain and against random
    heads, their tally, the profile's benefit per run, and the answers."""
    runs = comparison["runs"]
    # in the runs' order (lists keep it through the JSON, whose objects' keys are sorted)
    methods = list(dict.fromkeys(m["method"] for run in runs for m in run["methods"]))
    lines = []
    for against, key, verdict_key in (
        ("plain", "vs_plain", "verdict_plain"),
        ("the mean of its random head sets (same K, same setting)", "vs_random", "verdict_random"),
    ):
        lines += [
            f"Against {against}, on each run's evaluation users (Δ main metric, 95% paired "
            "interval):",
            "",
            "| method | " + " | ".join(r["run"] for r in runs) + " |",
            "|---|" + "---|" * len(runs),
        ]
        for method in methods:
            cells = []
            for run in runs:
                row = next((m for m in run["methods"] if m["method"] == method), None)
                cells.append(_cell(row.get(key), row.get(verdict_key)) if row else "–")
            if any(cell != "–" for cell in cells):
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "The profile's benefit on each run (plain − no_profile, main metric): "
        + "; ".join(
            f"{r['run']} ({r['metric']}) {r['benefit']['value']:+.3f} "
            f"[{r['benefit']['low']:+.3f}, {r['benefit']['high']:+.3f}]"
            for r in runs
        )
        + ".",
        "",
        "Tally over the runs (above / level / below):",
        "",
        "| method | against plain | against its random heads |",
        "|---|---|---|",
    ]
    for method in methods:
        counts = comparison["tally"][method]
        shown = {
            against: " / ".join(str(counts[against][v]) for v in VERDICTS)
            if against in counts and sum(counts[against].values())
            else "–"
            for against in ("plain", "random")
        }
        lines.append(f"| {method} | {shown['plain']} | {shown['random']} |")

    def listed(entries: list[dict[str, str]]) -> str:
        return "; ".join(f"{e['method']} ({e['setting']}) on {e['run']}" for e in entries) or "none"

    lines += [
        "",
        f"Methods above plain on held-out users: {listed(comparison['above_plain'])}.",
        "",
        f"Head-set methods above their random heads: {listed(comparison['above_random'])}.",
    ]
    return "\n".join(lines) + "\n"
