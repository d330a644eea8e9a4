"""``dps-lens study``: run a packaged study and write its tables."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import field, flag

from dps_lens import distributed
from dps_lens.checks import check_positive
from dps_lens.cli.command import command
from dps_lens.cli.organism import Organism
from dps_lens.outdir import claim_output

DEFAULT_MODELS = {"organism-steering": "organism-planted", "organism-clusters": "organism-groups"}


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    # organism-steering: γ and K sweeps; organism-clusters: global vs cluster-routed DPS
    name: Literal["organism-steering", "organism-clusters"] = field(positional=True)
    # default: organism-planted (steering), organism-groups (clusters)
    model: Organism | None = None
    out: Path | None = None  # default runs/study-<model>
    evaluation_users: int = 300  # held-out users decoded by every method
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars

    def __post_init__(self) -> None:
        check_positive("--evaluation-users", self.evaluation_users)


@command(
    "study",
    help="run a packaged study and write its tables",
    config=StudyConfig,
    data_parallel=True,
)
def run(config: StudyConfig, namespace: argparse.Namespace) -> None:
    if config.name == "organism-clusters":
        from dps_lens.studies.organism_clusters import run_cluster_study as run_study
    else:
        from dps_lens.studies.organism_steering import run_study

    model = config.model or DEFAULT_MODELS[config.name]
    out = config.out or Path("runs") / f"study-{model}"
    with claim_output(out):
        report = run_study(
            model, out, n_evaluation_users=config.evaluation_users, progress=config.progress
        )
    if distributed.current().is_main:  # under torchrun, rank 0 reports
        print(report["markdown"])
        print(f"done in {report['seconds']} s -> {out}")
