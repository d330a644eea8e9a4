"""A figure study: which saved results feed which figures, read from a ``STUDY.toml``.

```toml
name = "organism"                    # figures go to <root>/figures/<name>/ unless `out` is set
title = "Planted organism"
root = ".."                          # paths below are relative to it (default: this file's folder)
requires = ["../shared"]             # the study is skipped, with a message, when these are missing

[inputs]                             # saved results, by name
scores = "runs/study-organism-planted/discover"
sweep = "runs/study-organism-planted/sweep.json"

[[produce]]                          # run (in root) only when one of `creates` is missing
command = ["dps-lens", "study", "organism-steering", "--out", "runs/study-organism-planted"]
creates = ["sweep", "scores"]

[[figure]]
name = "pcs_heatmap"
kind = "pcs_heatmap"                 # see dps_lens.figures.builders.BUILDERS
scores = "scores"                    # options naming an input are the figure's inputs
```
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dps_lens.errors import DataFormatError, DpsLensError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10; tomli is installed on 3.10 only
    import tomli as tomllib  # pyright: ignore[reportMissingImports]

T = TypeVar("T")


@dataclass(frozen=True)
class Produce:
    """A command that writes some inputs; ``dps-lens`` runs as this interpreter's CLI."""

    command: list[str]
    creates: list[str]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    root: Path
    out: Path
    inputs: dict[str, Path]
    figures: list[FigureSpec]
    produce: list[Produce] = field(default_factory=list)
    requires: list[Path] = field(default_factory=list)

    def missing_requirements(self) -> list[Path]:
        return [path for path in self.requires if not path.exists()]

    def input_names(self, spec: FigureSpec) -> list[str]:
        """The study inputs a figure reads: its option values that name an input."""
        return [v for v in spec.options.values() if isinstance(v, str) and v in self.inputs]


def _require(table: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    if key not in table:
        raise DataFormatError(f"{where}: missing `{key}`")
    if not isinstance(table[key], kind):
        raise DataFormatError(f"{where}: `{key}` must be a {kind.__name__}")
    return table[key]


def load_study(path: str | Path) -> Study:
    """Parse and check a study file; every error names the file and the key to fix."""
    path = Path(path)
    if not path.is_file():
        raise DpsLensError(
            f"no study file at {path}; pass a STUDY.toml (e.g. figures/organism.toml)"
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"{path} is not valid TOML: {exc}") from None
    name = _require(table, "name", str, str(path))
    root = (path.parent / table.get("root", ".")).resolve()
    inputs = {k: root / v for k, v in table.get("inputs", {}).items()}
    figures = []
    for i, row in enumerate(table.get("figure", [])):
        where = f"{path} [[figure]] #{i + 1}"
        kind = _require(row, "kind", str, where)
        options = {k: v for k, v in row.items() if k not in ("name", "kind")}
        figures.append(FigureSpec(row.get("name", kind), kind, options))
    if not figures:
        raise DataFormatError(f"{path}: no [[figure]] tables; add at least one figure")
    names = [spec.name for spec in figures]
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: figure names must be unique, got {names}")
    produce = []
    for i, row in enumerate(table.get("produce", [])):
        where = f"{path} [[produce]] #{i + 1}"
        creates = _require(row, "creates", list, where)
        unknown = [c for c in creates if c not in inputs]
        if unknown:
            raise DataFormatError(f"{where}: `creates` names unknown inputs {unknown}")
        produce.append(Produce([str(a) for a in _require(row, "command", list, where)], creates))
    return Study(
        name=name,
        title=table.get("title", name),
        root=root,
        out=root / table.get("out", f"figures/{name}"),
        inputs=inputs,
        figures=figures,
        produce=produce,
        requires=[root / p for p in table.get("requires", [])],
    )
