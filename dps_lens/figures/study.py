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

A misspelled key or an option the figure's kind does not read is refused, naming the valid keys
(``FIGURE_OPTIONS``). Everything a build writes (``out`` and the figure files) stays under the
study file's folder unless ``allow_outside`` is set (``dps-lens figures --allow-outside``).

A study file is code: its ``[[produce]]`` commands run programs with your permissions. Build
only study files you trust, as you would run a script.
"""

from __future__ import annotations

import re
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

STUDY_KEYS = ("name", "title", "root", "out", "requires", "inputs", "produce", "figure")
PRODUCE_KEYS = ("command", "creates")
_GROUPED = ("scores", "groups", "min_examples", "max_groups")
# The options each figure kind reads (besides `name` and `kind`); a new builder adds its own here.
FIGURE_OPTIONS: dict[str, tuple[str, ...]] = {
    "pcs_heatmap": ("scores", "title"),
    "specificity": ("scores", "k", "title"),
    "pcs_grid": (*_GROUPED, "columns", "title"),
    "jaccard_groups": (*_GROUPED, "k", "title"),
    "stability": (*_GROUPED, "ks", "n_splits", "title"),
    "jaccard_across_k": ("scores", "ks", "title"),
    "gamma_sweep": ("sweep", "metric", "title"),
    "k_sweep": ("sweep", "metric", "title"),
    "method_comparison": ("results", "select", "metric", "title"),
    "head_masks": ("scores", "k", "seed", "sweep", "metric", "title"),
    "attention": (
        "scores",
        "model",
        "examples",
        "world_split",
        "example",
        "k",
        "template",
        "max_length",
    ),
    "profile_attention": ("attention", "title"),
    "profile_attention_scatter": ("attention", "scores", "k", "title"),
    "audit": ("report", "title"),
    "leaderboard": ("reports", "columns", "title"),
    "lift_gain": ("reports", "columns", "title"),
    "depth_profile": ("reports", "select", "title"),
}
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


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
    path: Path | None = None  # the study file it was read from

    def missing_requirements(self) -> list[Path]:
        return [path for path in self.requires if not path.exists()]

    def input_names(self, spec: FigureSpec) -> list[str]:
        """The study inputs a figure reads: its option values (or items of a list value) that
        name an input."""
        values = [
            item for v in spec.options.values() for item in (v if isinstance(v, list) else [v])
        ]
        return [v for v in values if isinstance(v, str) and v in self.inputs]


def _require(table: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    if key not in table:
        raise DataFormatError(f"{where}: missing `{key}`")
    if not isinstance(table[key], kind):
        raise DataFormatError(f"{where}: `{key}` must be a {kind.__name__}")
    return table[key]


def _optional(table: dict[str, Any], key: str, kind: type[T], default: T, where: str) -> T:
    return _require(table, key, kind, where) if key in table else default


def _known_keys(table: dict[str, Any], valid: tuple[str, ...], where: str, what: str) -> None:
    unknown = [key for key in table if key not in valid]
    if unknown:
        raise DataFormatError(
            f"{where}: unknown {what} {', '.join(f'`{k}`' for k in unknown)}; "
            f"valid: {', '.join(valid)}"
        )


def check_file_name(name: str, where: str) -> str:
    """``name`` if it is a plain file name (no folder, not hidden), else ``DataFormatError``."""
    if not _FILE_NAME.fullmatch(name) or name in (".", ".."):
        raise DataFormatError(
            f"{where}: name {name!r} must be a plain file name (letters, digits, `_`, `-`, `.`)"
        )
    return name


def _strings(value: Any, key: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataFormatError(f"{where}: `{key}` must be a list of strings")
    return value


def load_study(path: str | Path, allow_outside: bool = False) -> Study:
    """Parse and check a study file; every error names the file and the key to fix.

    ``out`` must lie under the study file's folder unless ``allow_outside``.
    """
    path = Path(path)
    if not path.is_file():
        raise DpsLensError(
            f"no study file at {path}; pass a STUDY.toml (e.g. figures/organism.toml)"
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataFormatError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataFormatError(f"{path} is not valid TOML: {exc}") from None
    _known_keys(table, STUDY_KEYS, str(path), "key(s)")
    name = check_file_name(_require(table, "name", str, str(path)), str(path))
    root = (path.parent / _optional(table, "root", str, ".", str(path))).resolve()
    raw_inputs = _optional(table, "inputs", dict, {}, str(path))
    for key, value in raw_inputs.items():
        if not isinstance(value, str):
            raise DataFormatError(f"{path} [inputs]: `{key}` must be a path (a string)")
    inputs = {k: root / v for k, v in raw_inputs.items()}
    figures = []
    for i, row in enumerate(_optional(table, "figure", list, [], str(path))):
        where = f"{path} [[figure]] #{i + 1}"
        if not isinstance(row, dict):
            raise DataFormatError(f"{where}: must be a table ([[figure]])")
        kind = _require(row, "kind", str, where)
        if kind not in FIGURE_OPTIONS:
            raise DataFormatError(
                f"{where}: unknown kind {kind!r}; use one of {', '.join(sorted(FIGURE_OPTIONS))}"
            )
        _known_keys(row, ("name", "kind", *FIGURE_OPTIONS[kind]), where, f"option(s) for {kind!r}")
        spec_name = check_file_name(_optional(row, "name", str, kind, where), where)
        options = {k: v for k, v in row.items() if k not in ("name", "kind")}
        figures.append(FigureSpec(spec_name, kind, options))
    if not figures:
        raise DataFormatError(f"{path}: no [[figure]] tables; add at least one figure")
    names = [spec.name for spec in figures]
    if len(set(names)) != len(names):
        raise DataFormatError(f"{path}: figure names must be unique, got {names}")
    produce = []
    for i, row in enumerate(_optional(table, "produce", list, [], str(path))):
        where = f"{path} [[produce]] #{i + 1}"
        if not isinstance(row, dict):
            raise DataFormatError(f"{where}: must be a table ([[produce]])")
        _known_keys(row, PRODUCE_KEYS, where, "key(s)")
        creates = _strings(_require(row, "creates", list, where), "creates", where)
        unknown = [c for c in creates if c not in inputs]
        if unknown:
            raise DataFormatError(f"{where}: `creates` names unknown inputs {unknown}")
        produce.append(Produce([str(a) for a in _require(row, "command", list, where)], creates))
    out = (root / _optional(table, "out", str, f"figures/{name}", str(path))).resolve()
    folder = path.parent.resolve()
    if not allow_outside and not out.is_relative_to(folder):
        raise DataFormatError(
            f"{path}: `out` ({out}) is outside the study file's folder {folder}; put it under "
            "that folder, or allow it with --allow-outside (load_study(..., allow_outside=True))"
        )
    requires = _strings(_optional(table, "requires", list, [], str(path)), "requires", str(path))
    return Study(
        name=name,
        title=_optional(table, "title", str, name, str(path)),
        root=root,
        out=out,
        inputs=inputs,
        figures=figures,
        produce=produce,
        requires=[root / p for p in requires],
        path=path,
    )
