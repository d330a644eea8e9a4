"""``dps-lens study <name>``: run a packaged study and write its tables.

``organism-steering`` (γ and K sweeps) and ``organism-clusters`` (global vs cluster-routed DPS) run
on a bundled organism; ``lamp`` runs discovery, evaluation and paired comparisons on a real model
and a LaMP file (``dps_lens.studies.lamp``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from simple_parsing import field, flag

from dps_lens import distributed
from dps_lens.checks import check_positive
from dps_lens.cli.command import command
from dps_lens.cli.options import ModelOptions
from dps_lens.cli.organism import Organism
from dps_lens.data import load_examples
from dps_lens.errors import DpsLensError
from dps_lens.outdir import claim_output
from dps_lens.studies.lamp import LampStudyConfig
from dps_lens.studies.leaderboard import LeaderboardConfig


@dataclass(frozen=True, kw_only=True)
class OrganismStudyConfig:
    # the organism (default: organism-planted for steering, organism-groups for clusters)
    model: Organism | None = None
    out: Path | None = None  # default runs/study-<model>
    evaluation_users: int = 300  # held-out users decoded by every method
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def __post_init__(self) -> None:
        check_positive("--evaluation-users", self.evaluation_users)


def _report(report: dict[str, Any], out: Path) -> None:
    if distributed.current().is_main:  # under torchrun, rank 0 reports
        print(report["markdown"])
        print(f"done in {report['seconds']} s -> {out}")


def _organism_study(name: str, default_model: str, study: Callable[..., dict[str, Any]]) -> None:
    @command(
        "study",
        name,
        help=f"run the {name} study",
        examples=(f"dps-lens study {name} --out runs/study-{name}",),
        config=OrganismStudyConfig,
        data_parallel=True,
    )
    def run(config: OrganismStudyConfig, namespace: argparse.Namespace) -> None:
        model = config.model or default_model
        out = config.out or Path("runs") / f"study-{model}"
        with claim_output(out):
            report = study(
                model, out, n_evaluation_users=config.evaluation_users, progress=config.progress
            )
        _report(report, out)


def _steering_study(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from dps_lens.studies.organism_steering import run_study

    return run_study(*args, **kwargs)


def _cluster_study(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from dps_lens.studies.organism_clusters import run_cluster_study

    return run_cluster_study(*args, **kwargs)


_organism_study("organism-steering", "organism-planted", _steering_study)
_organism_study("organism-clusters", "organism-groups", _cluster_study)


@dataclass(frozen=True, kw_only=True)
class LampStudyOptions(ModelOptions, LampStudyConfig):
    data: Path  # LaMP data file (JSON/JSONL) of the task
    out: Path | None = None  # default runs/study-lamp-<task>
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def study_config(self) -> LampStudyConfig:
        return LampStudyConfig(**{f.name: getattr(self, f.name) for f in fields(LampStudyConfig)})


@command(
    "study",
    "lamp",
    help="preference heads of a real model on LaMP: racing PCS and ΔPCS, evaluation, paired tests",
    description=(
        "Split the users into discovery and evaluation sides; race PCS and ΔPCS on the first, "
        "measure each head set's depth, share and split-half stability; decode plain, CAD, DoLa, "
        "DPS and random heads on the second and compare them pairwise. Resumes after a kill."
    ),
    examples=(
        "dps-lens study lamp --model ../shared/models/QuantFactory__SmolLM2-135M-Instruct-GGUF "
        "--data LaMP-7.dev300.jsonl --task lamp7 --dtype bfloat16 --max-length 192 "
        "--out results/study-lamp/smollm2-lamp7-full",
    ),
    config=LampStudyOptions,
    data_parallel=True,
)
def run_lamp(config: LampStudyOptions, namespace: argparse.Namespace) -> None:
    from dps_lens.studies.lamp import run_lamp_study

    examples = load_examples(config.data)
    _data_task(examples, config.data, config.task)
    out = config.out or Path("runs") / f"study-lamp-{config.task}"
    with claim_output(out):
        report = run_lamp_study(
            config.load(), examples, config.study_config(), out, progress=config.progress
        )
    _report(report, out)


@dataclass(frozen=True, kw_only=True)
class LeaderboardOptions(ModelOptions, LeaderboardConfig):
    data: Path  # the task's data file (LaMP JSON/JSONL, PersonaChat txt)
    # a `study lamp` output whose races to reuse (its discovery users and settings must match)
    discovery: Path | None = None
    out: Path | None = None  # default runs/leaderboard-<task>
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def leaderboard_config(self) -> LeaderboardConfig:
        return LeaderboardConfig(
            **{f.name: getattr(self, f.name) for f in fields(LeaderboardConfig)}
        )


def _data_task(examples: list, path: Path, task: str) -> None:
    """Refuse data of another task than ``task`` (LaMP-4, LaMP-7 or PersonaChat)."""
    found = {str(e.meta.get("task", "")).lower().replace("-", "") for e in examples}
    if found != {task}:
        raise DpsLensError(
            f"{path} holds {', '.join(sorted(found)) or 'no known task'} examples, not {task}: "
            f"pass --task {' or --task '.join(sorted(found)) or 'of the data'} or another file"
        )


@command(
    "study",
    "leaderboard",
    help="steering methods tuned on tuning users, judged once on held-out users against plain and random heads",
    description=(
        "Split the users three ways; reuse (--discovery) or run the PCS and ΔPCS races on the "
        "discovery users; decode every setting of every method's grid on the tuning users and "
        "keep the best per method; decode each method once at its setting, and head-set methods "
        "also with random heads, on the evaluation users; report paired differences and "
        "verdicts. Resumes after a kill."
    ),
    examples=(
        "dps-lens study leaderboard --model ../shared/models/QuantFactory__SmolLM2-135M-Instruct-GGUF "
        "--dtype bfloat16 --data LaMP-7.dev300.jsonl --task lamp7 "
        "--discovery results/study-lamp/smollm2-lamp7-full --out results/leaderboard/smollm2-lamp7",
    ),
    config=LeaderboardOptions,
)
def run_leaderboard(config: LeaderboardOptions, namespace: argparse.Namespace) -> None:
    from dps_lens.studies.leaderboard import run_leaderboard as run

    examples = load_examples(config.data)
    _data_task(examples, config.data, config.task)
    out = config.out or Path("runs") / f"leaderboard-{config.task}"
    with claim_output(out):
        report = run(
            config.load(), examples, config.leaderboard_config(), out, config.discovery,
            config.progress,
        )  # fmt: skip
    print(report["markdown"], end="")
    print(f"-> {out}")


@dataclass(frozen=True, kw_only=True)
class LampCompareOptions:
    # study output folders (or their report.json), one per (model, task) run
    reports: list[Path] = field(default_factory=list, nargs="+")
    out: Path = Path("runs/study-lamp-compare")  # where compare.json and compare.md are written


@command(
    "study",
    "lamp-compare",
    help="compare LaMP study runs: cross-task Jaccard of the top-K, depth, share, stability",
    examples=(
        "dps-lens study lamp-compare --reports results/study-lamp/smollm2-lamp7 "
        "results/study-lamp/gemma3-lamp7 --out runs/compare",
    ),
    config=LampCompareOptions,
)
def run_lamp_compare(config: LampCompareOptions, namespace: argparse.Namespace) -> None:
    from dps_lens._io import atomic_write_report
    from dps_lens.studies.lamp_compare import compare_reports, comparison_markdown, read_report

    if len(config.reports) < 2:
        raise DpsLensError("study lamp-compare needs --reports with two or more study folders")
    comparison = compare_reports([read_report(path) for path in config.reports])
    text = comparison_markdown(comparison)
    with claim_output(config.out):
        atomic_write_report(config.out, "compare", comparison, text)
    print(text, end="")


@dataclass(frozen=True, kw_only=True)
class LeaderboardCompareOptions:
    # leaderboard output folders (or their leaderboard.json), one per (model, task) run
    reports: list[Path] = field(default_factory=list, nargs="+")
    out: Path = Path("runs/leaderboard-compare")  # where compare.json and compare.md are written


@command(
    "study",
    "leaderboard-compare",
    help="leaderboard runs side by side: verdicts per method and run, their tally, the answers",
    examples=(
        "dps-lens study leaderboard-compare --reports results/leaderboard/smollm2-lamp7 "
        "results/leaderboard/gemma3-lamp7 --out results/leaderboard/compare",
    ),
    config=LeaderboardCompareOptions,
)
def run_leaderboard_compare(
    config: LeaderboardCompareOptions, namespace: argparse.Namespace
) -> None:
    from dps_lens._io import atomic_write_report
    from dps_lens.studies.leaderboard_compare import (
        compare_leaderboards,
        compare_markdown,
        read_leaderboard,
    )

    if not config.reports:
        raise DpsLensError("study leaderboard-compare needs --reports with one or more run folders")
    comparison = compare_leaderboards([read_leaderboard(path) for path in config.reports])
    text = compare_markdown(comparison)
    with claim_output(config.out):
        atomic_write_report(config.out, "compare", comparison, text)
    print(text, end="")
