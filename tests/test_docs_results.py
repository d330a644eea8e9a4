"""The docs' result tables are generated, never typed: every committed Markdown table under
``results/`` and ``benchmarks/results/`` equals what the code that wrote it renders from the
committed JSON beside it, and every ``--8<--`` include in ``docs/`` names an existing file."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
IGNORED = {"methods", "checkpoint"}  # per-example outputs and checkpoints: .gitignore
# evaluate's own tables beside a study's or an audit's report, whose JSON carries them: .gitignore
IGNORED_NAMES = {"results.md", "paired.md"}
INCLUDE = re.compile(r"""^\s*--8<--\s+["']([^"']+)["']\s*$""", re.MULTILINE)


def _benchmark(name: str) -> ModuleType:
    """A script of ``benchmarks/`` imported as a module (it is not part of the package)."""
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _validate_report(report: dict[str, Any]) -> str:
    from dps_lens.organism.validate import report_markdown

    return report_markdown(report)


def _steering_sweep(report: dict[str, Any]) -> str:
    from dps_lens.studies.organism_steering import sweep_markdown

    return sweep_markdown(report)


def _cluster_report(report: dict[str, Any]) -> str:
    from dps_lens.studies.organism_clusters import report_markdown

    return report_markdown(report)


def _lamp_report(report: dict[str, Any]) -> str:
    from dps_lens.studies.lamp import report_markdown

    return report_markdown(report)


def _lamp_comparison(report: dict[str, Any]) -> str:
    from dps_lens.studies.lamp_compare import comparison_markdown

    return comparison_markdown(report)


def _audit(report: dict[str, Any]) -> str:
    from dps_lens.evaluation.audit import audit_markdown

    return audit_markdown(report)


def _leaderboard(report: dict[str, Any]) -> str:
    from dps_lens.studies.leaderboard import leaderboard_markdown

    return leaderboard_markdown(report)


def _leaderboard_comparison(report: dict[str, Any]) -> str:
    from dps_lens.studies.leaderboard_compare import compare_markdown

    return compare_markdown(report)


def _ranked(rows: list[dict[str, Any]]) -> str:
    from dps_lens.scoring.head_scores import ranked_markdown

    return ranked_markdown(rows)


def _renderer(report: Any) -> Callable[[Any], str]:
    """The package function that wrote a result's Markdown, recognised by the JSON's keys."""
    if isinstance(report, list) and report and "rank" in report[0]:
        return _ranked
    if "modes" in report and "designated_heads" in report:
        return _validate_report
    if "clusters" in report and "cluster_purity" in report:
        return _cluster_report
    if "rows" in report and "top_heads" in report:
        return _steering_sweep
    if "discovery" in report and "comparisons" in report:
        return _lamp_report
    if "runs" in report and "pairs" in report:
        return _lamp_comparison
    if "rows" in report and "profile_benefit" in report:
        return _audit
    if "tuning" in report and "chosen" in report:
        return _leaderboard
    if "tally" in report and "above_plain" in report:
        return _leaderboard_comparison
    raise AssertionError(f"no known renderer for a result with keys {sorted(report)}")


def _committed(pattern: str) -> list[Path]:
    """Files under ``results/`` matching ``pattern``, less the git-ignored local outputs."""
    return sorted(
        p
        for p in RESULTS.rglob(pattern)
        if not IGNORED & set(p.parts) and p.name not in IGNORED_NAMES
    )


def _json_md_pairs() -> list[Path]:
    """Committed ``results/**/X.json`` files that have an ``X.md`` beside them."""
    return [p for p in _committed("*.json") if p.with_suffix(".md").exists()]


def test_results_are_committed() -> None:
    assert (RESULTS / "validate" / "planted" / "report.json").exists()
    assert (RESULTS / "study-organism-planted" / "sweep.json").exists()
    assert (RESULTS / "study-organism-clusters" / "report.json").exists()
    assert _json_md_pairs()


@pytest.mark.parametrize("path", _json_md_pairs(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_result_markdown_is_rendered_from_its_json(path: Path) -> None:
    report = json.loads(path.read_text(encoding="utf-8"))
    rendered = _renderer(report)(report)
    assert rendered == path.with_suffix(".md").read_text(encoding="utf-8"), (
        f"{path.with_suffix('.md')} differs from what the package renders from {path.name}; "
        "rerun the command that wrote it instead of editing it"
    )


def test_every_result_markdown_has_a_source() -> None:
    """No hand-written tables: each Markdown file under results/ has its JSON, or is timings.md
    (collected by benchmarks/timings.py) or the folder's README."""
    generated_elsewhere = {RESULTS / "timings.md", RESULTS / "README.md"}
    orphans = [
        p.relative_to(ROOT)
        for p in _committed("*.md")
        if not p.with_suffix(".json").exists() and p not in generated_elsewhere
    ]
    assert not orphans


def test_timings_table_is_collected_from_the_results() -> None:
    timings = _benchmark("timings")
    rows = timings.collect(ROOT)
    assert rows and all(r["seconds"] > 0 for r in rows)
    assert timings.markdown(rows) == (RESULTS / "timings.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["steering", "discovery"])
def test_benchmark_markdown_is_rendered_from_its_json(name: str) -> None:
    module = _benchmark(f"bench_{name}")
    for path in sorted((ROOT / "benchmarks" / "results").glob(f"{name}-*.json")):
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        assert module.markdown(rows) == path.with_suffix(".md").read_text(encoding="utf-8"), path


def test_the_ppi_racing_benchmark_markdown_is_rendered_from_its_json() -> None:
    module = _benchmark("bench_ppi_racing")
    paths = sorted((ROOT / "benchmarks" / "results").glob("ppi-racing-*.json"))
    assert paths, "no committed ppi-racing benchmark"
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        assert module.markdown(report) == path.with_suffix(".md").read_text(encoding="utf-8")


def test_the_ppi_racing_benchmark_keeps_committed_parts_it_does_not_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _benchmark("bench_ppi_racing")
    committed = ROOT / "benchmarks" / "results" / "ppi-racing-smollm2.json"
    (tmp_path / committed.name).write_text(committed.read_text(encoding="utf-8"))
    argv = ["bench_ppi_racing.py", "--work", str(tmp_path / "absent"), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--keep-replay", "--headline-methods", ""])
    module.main()  # replays nothing and runs no race: a run would need the absent --work
    assert (tmp_path / committed.name).read_text(encoding="utf-8") == committed.read_text("utf-8")
    rendered = (tmp_path / committed.with_suffix(".md").name).read_text(encoding="utf-8")
    assert rendered == committed.with_suffix(".md").read_text(encoding="utf-8")
    reference = ROOT / "benchmarks" / "results" / "discovery-ppi-smollm2-64.json"
    headline = json.loads(committed.read_text(encoding="utf-8"))["headline"]
    assert module.exact_scan_seconds(reference, "smollm2-64", 64) == headline["exact_seconds"]
    monkeypatch.setattr(sys, "argv", [*argv, "--keep-replay", "--tag", "absent"])
    with pytest.raises(SystemExit, match="no replay to keep"):
        module.main()


def test_discovery_benchmark_checks_racing_against_the_exact_top_k() -> None:
    import torch

    from dps_lens.scoring.head_scores import IN, OUT, UNDECIDED

    bench = _benchmark("bench_discovery")
    exact = torch.tensor([3.0, 2.0, 1.0, 0.0]).reshape(1, 2, 2).expand(4, 2, 2)  # top 2: 0, 1
    kept = bench.racing_decisions(torch.tensor([[IN, UNDECIDED], [UNDECIDED, OUT]]), exact, 2)
    assert kept == {
        "status": {"undecided": 2, "in": 1, "out": 1},
        "epsilon": 0.0,
        "consistent": True,
        "fewest_evaluations": 16,
    }  # one round of all 4 examples: no saving possible
    for wrong in ([[IN, OUT], [IN, OUT]], [[IN, OUT], [UNDECIDED, OUT]]):  # in wrongly, out wrongly
        assert not bench.racing_decisions(torch.tensor(wrong), exact, 2)["consistent"]
    # ε = 10% of the K-th mean (2.0): in at least the K-th − ε, out at most the (K+1)-th + ε
    near = torch.tensor([3.0, 2.0, 1.9, 0.0]).reshape(1, 2, 2).expand(4, 2, 2)
    swapped = torch.tensor([[IN, OUT], [IN, OUT]])  # the 3rd in, the 2nd out: within ε
    within = bench.racing_decisions(swapped, near, 2, "racing+eps10")
    assert within["epsilon"] == pytest.approx(0.2) and within["consistent"]
    assert not bench.racing_decisions(swapped, exact, 2, "racing+eps10")["consistent"]
    row = {"case": "c", "method": "racing", "n_examples": 4, "k": 2, "seconds": 1.0,
           "peak_rss_mb": 1.0, "evaluations": 8, "diff_reference": "exact", "max_abs_diff": 0.0,
           "spearman_vs_exact": 1.0, "recall_vs_exact": 1.0, "racing": kept}  # fmt: skip
    exact_row = row | {"method": "exact", "top": [[0, 0], [0, 1]]}
    del exact_row["racing"]
    assert "\nexact top-2 on c (4 ex): L0H0, L0H1.\n" in bench.markdown([exact_row, row])
    assert bench.markdown([row]).endswith(
        "racing on c (4 ex): 1 heads decided in, 2 undecided, 1 out; the exact top-2 holds every "
        "head decided in and no head decided out: yes. It scored 8 of 16 cells; no allocation of "
        "its rounds to heads could score fewer than 16 with its intervals (1.00× fewer than "
        "exact at most).\n"
    )


def test_discovery_benchmark_scores_a_bfloat16_scan_against_the_float32_one() -> None:
    import torch

    bench = _benchmark("bench_discovery")
    model, _ = bench.setup("organism-planted", 2, "bfloat16")
    assert model.cfg.dtype == torch.bfloat16
    # four examples of four heads: head means 3, 2, 1, 0, each with a standard error of 0.5
    spread = torch.tensor([-1.0, 1.0, -1.0, 1.0]).reshape(4, 1, 1) * 3**0.5 / 2
    exact = torch.tensor([3.0, 2.0, 1.0, 0.0]).reshape(1, 2, 2) + spread
    rounded = exact + torch.tensor([0.0, 0.0, 0.5, -0.25]).reshape(1, 2, 2)
    row = bench.compare("exact+bfloat16", {"exact": exact, "exact+bfloat16": rounded}, k=2)
    assert row["diff_reference"] == "exact" and row["max_abs_diff"] == pytest.approx(0.5)
    assert row["mean_diff_in_se"] == pytest.approx(1.0)  # head 2 moved by one standard error
    assert row["evaluations"] == 16 and row["recall_vs_exact"] == 1.0
    text = bench.markdown([row | {"case": "c", "method": "exact+bfloat16", "n_examples": 4,
                                  "k": 2, "seconds": 1.0, "peak_rss_mb": 1.0}])  # fmt: skip
    assert "| 5.0e-01; head means ≤ 1.00 SE |" in text


def test_scale_benchmark_markdown_is_rendered_from_its_json() -> None:
    module = _benchmark("bench_scale")
    paths = sorted((ROOT / "benchmarks" / "results").glob("scale-*.json"))
    assert paths
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        assert module.markdown(report) == path.with_suffix(".md").read_text(encoding="utf-8")


def _includes() -> list[tuple[Path, str]]:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    return [(page, target) for page in pages for target in INCLUDE.findall(page.read_text())]


def test_docs_include_results() -> None:
    targets = {target for _, target in _includes()}
    assert "results/validate/planted/report.md" in targets
    assert "results/study-organism-clusters/report.md" in targets


@pytest.mark.parametrize(
    "page,target", _includes(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v
)
def test_docs_include_points_to_a_file(page: Path, target: str) -> None:
    assert (ROOT / target).is_file(), f"{page.relative_to(ROOT)} includes missing {target}"


def test_no_bench_script_lists_heads_by_hand() -> None:
    """Benchmarks read their heads from saved discovery results, never from literal lists."""
    pair = re.compile(r"\(\s*\d+\s*,\s*\d+\s*\)\s*,\s*\(\s*\d+\s*,\s*\d+\s*\)")
    for script in (ROOT / "benchmarks").glob("*.py"):
        assert not pair.search(script.read_text()), script
