"""The figure pipeline: study files, builds from saved results, rebuild-on-change, static export."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

from dps_lens.cli import main
from dps_lens.data import ExampleRef
from dps_lens.errors import DataFormatError, DpsLensError
from dps_lens.figures import build_study, load_study, static_export_available
from dps_lens.scoring.head_scores import HeadScores

SWEEP_ROWS = [
    {"sweep": "gamma", "method": "plain", "gamma": None, "k": None},
    *(
        {"sweep": "gamma", "method": m, "gamma": g, "k": 3}
        for m in ("dps", "cad")
        for g in (0.5, 1.0, 2.0)
    ),
    *(
        {"sweep": "k", "method": m, "gamma": 1.0, "k": k}
        for m in ("dps", "random_heads")
        for k in (1, 2, 3)
    ),
]

STUDY = """
name = "toy"
root = "."
out = "figs"

[inputs]
scores = "run/discover"
sweep = "run/sweep.json"

[[figure]]
kind = "pcs_heatmap"
scores = "scores"

[[figure]]
kind = "pcs_grid"
scores = "scores"
min_examples = 2

[[figure]]
kind = "jaccard_groups"
scores = "scores"
k = 2

[[figure]]
kind = "stability"
scores = "scores"
ks = [1, 2, 3]

[[figure]]
kind = "jaccard_across_k"
scores = "scores"
ks = [1, 2, 3]

[[figure]]
kind = "gamma_sweep"
sweep = "sweep"

[[figure]]
kind = "k_sweep"
sweep = "sweep"

[[figure]]
kind = "method_comparison"
results = "sweep"
metric = "personalization"
select = { sweep = "gamma", gamma = 1.0 }

[[figure]]
kind = "head_masks"
scores = "scores"
sweep = "sweep"
k = 3

[[figure]]
kind = "attention"
scores = "scores"
model = "organism-planted"
k = 2
"""


def write_sweep(path: Path, shift: float = 0.0) -> None:
    rows = []
    for i, row in enumerate(SWEEP_ROWS):
        value = 0.5 + 0.02 * i + shift
        rows.append({**row, "personalization": value, "personalization_low": value - 0.05,
                     "personalization_high": value + 0.05, "coherence_ppl": 1.5,
                     "coherence_ppl_low": 1.4, "coherence_ppl_high": 1.6})  # fmt: skip
    path.write_text(json.dumps({"rows": rows}))


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    ids = [ExampleRef(i, f"u{i // 2}") for i in range(8)]
    HeadScores(
        torch.randn(8, 3, 4), torch.zeros(8), "organism-planted", "h", ids, {"n_bootstrap": 20}
    ).save(tmp_path / "run" / "discover")
    write_sweep(tmp_path / "run" / "sweep.json")
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    return path


def test_builds_every_figure_then_only_what_changed(study_file: Path) -> None:
    study = load_study(study_file)
    first = build_study(study, static=False, progress=False)
    assert [b.name for b in first] == [s.name for s in study.figures] and all(
        b.rebuilt for b in first
    )
    for built in first:
        assert (
            built.files == [study.out / f"{built.name}.html"]
            and built.files[0].stat().st_size > 5_000
        )
    assert (study.out / "plotly.min.js").exists()
    assert "CircuitsVis.AttentionHeads" in (study.out / "attention.html").read_text()
    assert not any(b.rebuilt for b in build_study(study, static=False, progress=False))
    write_sweep(study_file.parent / "run" / "sweep.json", shift=0.1)
    rebuilt = {b.name for b in build_study(study, static=False, progress=False) if b.rebuilt}
    assert rebuilt == {"gamma_sweep", "k_sweep", "method_comparison", "head_masks"}
    (study.out / "pcs_heatmap.html").unlink()
    rebuilt = {b.name for b in build_study(study, static=False, progress=False) if b.rebuilt}
    assert rebuilt == {"pcs_heatmap"}
    assert all(b.rebuilt for b in build_study(study, static=False, force=True, progress=False))
    manifest = json.loads((study.out / "manifest.json").read_text())
    assert set(manifest) == {s.name for s in study.figures}


def test_html_only_with_a_warning_when_chromium_is_missing(study_file: Path, monkeypatch) -> None:
    monkeypatch.setattr("dps_lens.figures.export.find_chromium", lambda: None)
    with pytest.warns(UserWarning, match="apt-get install chromium"):
        built = build_study(load_study(study_file), progress=False)
    assert all(len(b.files) == 1 for b in built)
    with pytest.raises(DpsLensError, match="no Chromium"):
        build_study(load_study(study_file), static=True, progress=False)


@pytest.mark.skipif(
    not static_export_available(), reason="static export needs Chromium (apt-get install chromium)"
)
def test_static_png_and_svg(study_file: Path) -> None:
    study = load_study(study_file)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = build_study(study, static=True, progress=False)
    png, svg = study.out / "pcs_heatmap.png", study.out / "pcs_heatmap.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in svg.read_bytes()[:200]
    width = int.from_bytes(png.read_bytes()[16:20], "big")
    assert width == 2 * 440  # layout width at scale 2
    assert [len(b.files) for b in built] == [3] * 9 + [1]  # attention views are HTML only
    assert not list(study.out.glob(".*tmp*"))


def test_produce_runs_only_for_missing_inputs(study_file: Path) -> None:
    marker = study_file.parent / "produced.txt"
    extra = f"""
[[produce]]
command = [{json.dumps(sys.executable)}, "-c", "open('produced.txt', 'a').write('x')"]
creates = ["sweep"]
"""
    study_file.write_text(STUDY + extra)
    (study_file.parent / "run" / "sweep.json").unlink()
    with pytest.raises(DpsLensError):  # the command ran but did not write the sweep
        build_study(load_study(study_file), static=False, progress=False)
    assert marker.read_text() == "x"
    write_sweep(study_file.parent / "run" / "sweep.json")
    build_study(load_study(study_file), static=False, progress=False)
    assert marker.read_text() == "x"  # not run again


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_a_produce_command_that_cannot_run_is_one_error_line(study_file, capsys, kind):
    program = study_file.parent / "make_sweep.sh"
    if kind == "not executable":
        program.write_text("#!/bin/sh\n")
        program.chmod(0o644)
    study_file.write_text(
        STUDY
        + f"""
[[produce]]
command = [{json.dumps(str(program))}, "--out", "run/sweep.json"]
creates = ["sweep"]
"""
    )
    (study_file.parent / "run" / "sweep.json").unlink()
    assert main(["figures", "--study", str(study_file), "--static", "no", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and str(study_file) in err
    assert ("does not exist" if kind == "missing" else "not executable") in err
    assert "make_sweep.sh --out run/sweep.json" in err


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("name = ", "not valid TOML"),
        ('title = "x"', "missing `name`"),
        ('name = "x"', "no \\[\\[figure\\]\\]"),
        ('name = "x"\n[[figure]]\nname = "a"', "missing `kind`"),
        (
            'name = "x"\n[[figure]]\nkind = "pcs_heatmap"\n[[figure]]\nkind = "pcs_heatmap"',
            "unique",
        ),
        (
            'name = "x"\n[[figure]]\nkind = "pcs_heatmap"\n[[produce]]\ncommand = ["x"]\n'
            'creates = ["nope"]',
            "unknown inputs",
        ),
        (
            'nmae = "x"\n[[figure]]\nkind = "pcs_heatmap"',
            r"s\.toml: unknown key\(s\) `nmae`; valid: name,",
        ),
        (
            'name = "x"\n[[figure]]\nkind = "pcs_heatmap"\nscores = "s"\ntitel = "t"',
            r"s\.toml \[\[figure\]\] #1: unknown option\(s\) for 'pcs_heatmap' `titel`; "
            "valid: name, kind, scores, title",
        ),
        (
            'name = "x"\n[[figure]]\nkind = "gamma_sweep"\nsweep = "s"\nk = 3',
            r"unknown option\(s\) for 'gamma_sweep' `k`; valid: name, kind, sweep, metric, title",
        ),
        (
            'name = "x"\n[[figure]]\nkind = "pcs_heatmap"\n[[produce]]\ncommand = ["x"]\n'
            'creates = []\ncwd = "."',
            r"\[\[produce\]\] #1: unknown key\(s\) `cwd`; valid: command, creates",
        ),
        ('name = "x"\n[[figure]]\nkind = "violin"', "unknown kind 'violin'; use one of"),
        ('name = "x"\nroot = 1\n[[figure]]\nkind = "pcs_heatmap"', "`root` must be a str"),
        ('name = "x"\n[inputs]\na = 1\n[[figure]]\nkind = "pcs_heatmap"', "`a` must be a path"),
        ('name = "../x"\n[[figure]]\nkind = "pcs_heatmap"', "must be a plain file name"),
        (
            'name = "x"\n[[figure]]\nname = "../../escape"\nkind = "pcs_heatmap"',
            r"#1: name '\.\./\.\./escape' must be a plain file name",
        ),
        ('name = "x"\nout = "../elsewhere"\n[[figure]]\nkind = "pcs_heatmap"', "outside the study"),
        ('name = "x"\nroot = ".."\n[[figure]]\nkind = "pcs_heatmap"', "outside the study"),
    ],
)
def test_study_file_errors(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(DataFormatError, match=error):
        load_study(path)


def test_out_outside_the_study_folder_needs_an_explicit_option(study_file: Path, capsys) -> None:
    outside = study_file.parent.parent / f"{study_file.parent.name}-figures"
    head = STUDY.split("[[figure]]")[0].replace('out = "figs"', f'out = "../{outside.name}"')
    study_file.write_text(head + '[[figure]]\nkind = "pcs_heatmap"\nscores = "scores"\n')
    with pytest.raises(DataFormatError, match="--allow-outside"):
        load_study(study_file)
    args = ["figures", "--study", str(study_file), "--static", "no", "--no-progress"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"error: {study_file}: `out`")
    assert not outside.exists()
    assert main([*args, "--allow-outside"]) == 0
    assert (outside / "pcs_heatmap.html").exists()


def test_every_builder_has_its_options_listed() -> None:
    import re

    import dps_lens.figures.builders as builders
    from dps_lens.figures.study import FIGURE_OPTIONS

    assert set(FIGURE_OPTIONS) == set(builders.BUILDERS)
    source = Path(builders.__file__).read_text()
    read = set(re.findall(r'options(?:\.get\(|\[)"(\w+)"', source))
    read |= set(re.findall(r'(?:path|rows)\(spec, "(\w+)"\)', source))
    read |= {"scores"}  # Inputs.scores
    listed = {option for options in FIGURE_OPTIONS.values() for option in options}
    assert read == listed


def test_build_errors_name_the_fix(study_file: Path, tmp_path: Path) -> None:
    with pytest.raises(DpsLensError, match="no study file"):
        load_study(tmp_path / "missing.toml")
    study_file.write_text(STUDY + '\n[[figure]]\nname = "x"\nkind = "violin"\n')
    with pytest.raises(DpsLensError, match="unknown kind 'violin'"):
        build_study(load_study(study_file), static=False, progress=False)
    study_file.write_text(
        STUDY + '\n[[figure]]\nname = "y"\nkind = "pcs_heatmap"\nscores = "nope"\n'
    )
    with pytest.raises(DataFormatError, match="must name one of the study inputs"):
        build_study(load_study(study_file), static=False, progress=False)
    study_file.write_text('requires = ["absent-dir"]\n' + STUDY)
    with pytest.raises(DpsLensError, match="absent-dir"):
        build_study(load_study(study_file), static=False, progress=False)


def test_cli_figures(study_file: Path, capsys) -> None:
    assert main(["figures", "--study", str(study_file), "--static", "no", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("built") == 10
    assert main(["figures", "--study", str(study_file), "--static", "no", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("unchanged") == 10


def test_shipped_studies_parse() -> None:
    root = Path(__file__).resolve().parents[1] / "figures"
    organism = load_study(root / "organism.toml")
    assert organism.out == root / "organism" and not organism.missing_requirements()
    lamp = load_study(root / "smollm2-lamp7.toml")
    assert {s.kind for s in lamp.figures} >= {"pcs_heatmap", "method_comparison", "attention"}
    clusters = load_study(root / "organism-clusters.toml")
    assert any(s.options.get("groups") == "clusters" for s in clusters.figures)
    assert load_study(root / "smollm2-lamp-clusters.toml").produce


def test_saved_groups_and_single_sweep_files(tmp_path: Path) -> None:
    from dps_lens.clusters.groups_io import save_groups

    torch.manual_seed(1)

    def make(n: int) -> HeadScores:
        ids = [ExampleRef(i, f"u{i}") for i in range(n)]
        return HeadScores(torch.randn(n, 3, 4), torch.zeros(n), "m", "h", ids, {"n_bootstrap": 10})

    make(6).save(tmp_path / "scores")
    save_groups({"c0": make(3), "c1": make(4), "tiny": make(1)}, tmp_path / "groups", k=2)
    rows = [
        {"method": "plain", "k": None},
        *({"method": m, "k": k} for m in ("a", "b") for k in (1, 2)),
    ]
    for row in rows:
        row.update(personalization=0.5, personalization_low=0.4, personalization_high=0.6)
    (tmp_path / "report.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "study.toml").write_text("""
name = "g"
[inputs]
scores = "scores"
groups = "groups"
report = "report.json"
[[figure]]
kind = "pcs_grid"
scores = "scores"
groups = "groups"
min_examples = 2
[[figure]]
kind = "jaccard_groups"
scores = "scores"
groups = "groups"
[[figure]]
kind = "stability"
scores = "scores"
groups = "groups"
[[figure]]
kind = "k_sweep"
sweep = "report"
""")
    from dps_lens.figures.builders import BUILDERS, Inputs

    study = load_study(tmp_path / "study.toml")
    inputs = Inputs(study)
    grid, jaccard, stability, sweep = (BUILDERS[s.kind](inputs, s) for s in study.figures)
    assert len(grid.data) == 2  # "tiny" has 1 example < min_examples
    assert list(jaccard.data[0].x) == ["c0", "c1", "tiny"]
    assert [t.name for t in stability.data] == ["split halves", "between clusters"]
    assert [t.name for t in sweep.data if t.mode == "lines+markers"] == ["a", "b"]
