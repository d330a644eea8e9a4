"""``dps-lens figures``: build a study's figures (HTML, PNG, SVG) from its saved results.

A study file is code: its ``[[produce]]`` commands run programs. Its outputs stay under its own
folder unless ``--allow-outside`` is given."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from simple_parsing import field, flag

from dps_lens.cli.command import command

STATIC = {"auto": None, "yes": True, "no": False}


@dataclass(frozen=True, kw_only=True)
class FiguresConfig:
    study: Path = field(required=True)  # a STUDY.toml, e.g. figures/organism.toml
    force: bool = False  # rebuild figures whose inputs did not change
    # PNG + SVG export (needs Chromium); auto: when Chromium is found
    static: Literal["auto", "yes", "no"] = "auto"
    progress: bool = flag(default=True, negative_prefix="--no-")  # show progress bars
    # let the study's `out` lie outside the study file's folder
    allow_outside: bool = False


@command(
    "figures",
    help="build a study's figures (HTML, PNG, SVG) from its saved results",
    description=(
        "Read a STUDY.toml, run its produce steps for missing inputs, and build each figure whose "
        "inputs, spec or code changed."
    ),
    examples=("dps-lens figures --study figures/organism.toml",),
    config=FiguresConfig,
)
def run(config: FiguresConfig, namespace: argparse.Namespace) -> None:
    from dps_lens.figures import build_study, load_study

    study = load_study(config.study, allow_outside=config.allow_outside)
    built = build_study(
        study, static=STATIC[config.static], force=config.force, progress=config.progress
    )
    for figure in built:
        state = "built" if figure.rebuilt else "unchanged"
        print(f"{state:9} {figure.name}: {', '.join(str(f) for f in figure.files)}")
