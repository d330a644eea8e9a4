"""Build a study's figures: interactive HTML always, PNG + SVG when Chromium is available.

A figure is rebuilt only when its key changes: the hash of its spec, of the files of the inputs
it reads, and of the package version. Keys live in ``<out>/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from tqdm.auto import tqdm

from dps_lens import __version__
from dps_lens._io import atomic_write_json
from dps_lens.attention_view import AttentionView
from dps_lens.errors import DpsLensError
from dps_lens.figures.builders import BUILDERS, VIEW_KINDS, Inputs
from dps_lens.figures.study import FigureSpec, Study, check_file_name
from dps_lens.plots import write_html

STATIC_FORMATS = ("png", "svg")
MANIFEST = "manifest.json"
_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The browser kaleido drives: ``BROWSER_PATH`` if set, else a Chromium/Chrome on PATH."""
    configured = os.environ.get("BROWSER_PATH")
    if configured and Path(configured).exists():
        return configured
    return next((found for name in _BROWSERS if (found := shutil.which(name))), None)


def static_export_available() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return find_chromium() is not None


@dataclass(frozen=True)
class Built:
    name: str
    files: list[Path]
    rebuilt: bool


def _hash_path(digest: hashlib._Hash, path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if "checkpoint" in file.parts or "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(path.parent)).encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())


_PACKAGE = Path(__file__).resolve().parents[1]
_FIGURE_CODE = ("plots", "figures", "attention_view.py", "headsets.py", "scoring/groups.py")


def _code_hash() -> str:
    """The figure-making code: a change to it rebuilds every figure."""
    digest = hashlib.sha256(__version__.encode())
    for part in _FIGURE_CODE:
        _hash_path(digest, _PACKAGE / part)
    return digest.hexdigest()


def figure_key(study: Study, spec: FigureSpec, code_hash: str) -> str:
    """Hash of the figure's spec, the files of the inputs it reads, and the figure code."""
    digest = hashlib.sha256(code_hash.encode())
    digest.update(json.dumps([spec.name, spec.kind, spec.options], sort_keys=True).encode())
    for name in study.input_names(spec):
        path = study.inputs[name]
        if not path.exists():
            raise DpsLensError(f"figure {spec.name!r} reads {path}, which does not exist")
        _hash_path(digest, path)
    return digest.hexdigest()


def produce_inputs(study: Study) -> None:
    """Run each produce command whose outputs are missing (``dps-lens`` = this interpreter's CLI)."""
    for step in study.produce:
        if all(study.inputs[name].exists() for name in step.creates):
            continue
        command = step.command
        if command[0] == "dps-lens":
            command = [sys.executable, "-m", "dps_lens", *command[1:]]
        print(f"[{study.name}] producing {', '.join(step.creates)}: {' '.join(step.command)}")
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
        shown = " ".join(step.command)
        try:
            returncode = subprocess.run(command, cwd=study.root, env=env).returncode
        except FileNotFoundError:
            raise DpsLensError(
                f"{study.path or study.name}: the produce command `{shown}` names a program that does not "
                f"exist ({command[0]!r}): install it, or fix the command's first word"
            ) from None
        except PermissionError:
            raise DpsLensError(
                f"{study.path or study.name}: the produce command `{shown}` names {command[0]!r}, which is not "
                "executable: make it executable (chmod +x) or run it through its interpreter"
            ) from None
        if returncode != 0:
            raise DpsLensError(f"study {study.name}: `{shown}` failed")


def _write_static(pending: Sequence[tuple[go.Figure, Path]]) -> None:
    """All static files in one browser session, each written to a temporary name then renamed."""
    temporary = [path.with_name(f".{path.stem}.tmp{path.suffix}") for _, path in pending]
    try:
        pio.write_images(
            [figure for figure, _ in pending],
            list[str | Path](temporary),
            scale=[2 if p.suffix == ".png" else 1 for _, p in pending],
            # plotly's ``layout`` property has no return annotation (pyright infers a Figure)
            width=[figure.layout.width or 700 for figure, _ in pending],  # pyright: ignore[reportAttributeAccessIssue]
            height=[figure.layout.height or 500 for figure, _ in pending],  # pyright: ignore[reportAttributeAccessIssue]
        )
        for tmp, (_, path) in zip(temporary, pending, strict=True):
            os.replace(tmp, path)
    finally:
        for tmp in temporary:
            tmp.unlink(missing_ok=True)


def build_study(
    study: Study, static: bool | None = None, force: bool = False, progress: bool = True
) -> list[Built]:
    """Write every figure of ``study`` into ``study.out``; unchanged figures are not rebuilt.

    ``static=None`` writes PNG + SVG when Chromium is found and warns otherwise.
    """
    missing = study.missing_requirements()
    if missing:
        raise DpsLensError(
            f"study {study.name} needs {', '.join(map(str, missing))}; it is skipped where they are absent"
        )
    if static is None:
        static = static_export_available()
        if not static:
            warnings.warn(
                "static export (PNG/SVG) needs kaleido and a Chromium: `apt-get install chromium` "
                "(or set BROWSER_PATH); writing HTML only",
                stacklevel=2,
            )
    elif static and not static_export_available():
        raise DpsLensError(
            "static export asked for, but no Chromium was found: `apt-get install chromium`"
        )
    produce_inputs(study)
    manifest_path = study.out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    inputs, built, pending, code_hash = Inputs(study), [], [], _code_hash()
    for spec in tqdm(study.figures, desc=f"figures {study.name}", disable=not progress):
        if spec.kind not in BUILDERS:
            raise DpsLensError(
                f"figure {spec.name!r}: unknown kind {spec.kind!r}; use one of {sorted(BUILDERS)}"
            )
        key = figure_key(study, spec, code_hash)
        check_file_name(spec.name, f"study {study.name}")  # its files stay in study.out
        files = [study.out / f"{spec.name}.html"]
        if static and spec.kind not in VIEW_KINDS:
            files += [study.out / f"{spec.name}.{suffix}" for suffix in STATIC_FORMATS]
        stale = force or manifest.get(spec.name, {}).get("key") != key
        todo = [path for path in files if stale or not path.exists()]
        if todo:
            figure = BUILDERS[spec.kind](inputs, spec)
            for path in todo:
                if path.suffix != ".html":
                    pending.append((figure, path))
                elif isinstance(figure, AttentionView):
                    figure.save(path)
                else:
                    write_html(figure, path, shared_plotlyjs=True)
        manifest[spec.name] = {"key": key, "files": [path.name for path in files]}
        built.append(Built(spec.name, files, bool(todo)))
    if pending:
        _write_static(pending)
    atomic_write_json(manifest_path, manifest)
    return built
