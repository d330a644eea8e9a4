"""The command line of the head-editing methods: method specs, flags that belong to no chosen
method, ``dps-lens directions``, ``dps-lens audit``, and their one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dps_lens.cli import main
from dps_lens.cli.method_flags import parse_method_specs
from dps_lens.data import write_jsonl
from dps_lens.errors import DpsLensError
from dps_lens.organism.train import trained_world
from tests.helpers import discover_args
from tests.test_cli_errors import one_error_line


@pytest.fixture(scope="module")
def organism_run(tmp_path_factory, planted) -> dict[str, Path]:
    """Discovery and evaluation data of organism-planted, its discovery and its directions."""
    root = tmp_path_factory.mktemp("organism-run")
    world = trained_world(planted)
    paths = {"discovery": root / "discovery.jsonl", "evaluation": root / "evaluation.jsonl"}
    write_jsonl(paths["discovery"], world.split_examples("discovery", 20, queries_per_user=1))
    write_jsonl(paths["evaluation"], world.split_examples("evaluation", 8, queries_per_user=1))
    bare = [e.without_profile() for e in world.split_examples("evaluation", 4)]
    paths["bare"] = root / "bare.jsonl"
    write_jsonl(paths["bare"], bare)
    paths["heads"] = root / "discover"
    assert (
        main(discover_args("organism-planted", paths["discovery"], paths["heads"], "--k", "3")) == 0
    )
    return paths


def test_method_specs_carry_labels_and_typed_parameters():
    specs = parse_method_specs(
        "plain, fixed=dps(gamma=0.5,beta=0.1),dps(adaptive=true,beta=none),"
        "head_shift(directions=x.safetensors)"
    )
    assert specs == {
        "plain": ("plain", {}),
        "fixed": ("dps", {"gamma": 0.5, "beta": 0.1}),
        "dps(adaptive=true,beta=none)": ("dps", {"adaptive": True, "beta": None}),
        "head_shift(directions=x.safetensors)": (
            "head_shift",
            {"directions": Path("x.safetensors")},
        ),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dps(gamma=1", "not closed"),
        ("dps(gamma=(1))", "nested"),
        ("dps(strength=1)", "has no parameter 'strength'"),
        ("dps(gamma=fast)", "not a valid value"),
        ("dps(adaptive=maybe)", "not a valid value"),
        ("nonsense", "unknown method"),
        ("dps,dps", "names 'dps' twice"),
        ("dps(gamma)", "has no parameter 'gamma'"),
        ("", "names no method"),
    ],
)
def test_bad_method_specs_are_one_readable_error(text, message):
    with pytest.raises(DpsLensError, match=message):
        parse_method_specs(text)


def test_a_flag_no_chosen_method_takes_is_refused_naming_those_that_do(capsys):
    args = ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--method", "cad", "--gamma", "nan"]
    assert main(args) == 2
    error = one_error_line(capsys)
    assert "--gamma applies to" in error and "dps" in error and "cad takes --alpha" in error


def test_directions_then_head_shift_from_the_command_line(organism_run, capsys):
    heads = organism_run["heads"]
    assert main(["steer", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
                 "--method", "head_shift", "--heads", str(heads), "--max-new-tokens", "3"]) == 2  # fmt: skip
    assert "dps-lens directions" in one_error_line(capsys)
    args = ["directions", "--model", "organism-planted", "--data", str(organism_run["discovery"]),
            "--heads", str(heads), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "20 examples" in capsys.readouterr().out and (heads / "directions.safetensors").exists()
    out = heads.parent / "shifted.jsonl"
    assert main(["steer", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
                 "--method", "head_shift(alpha=1.5)", "--heads", str(heads), "--max-new-tokens", "3",
                 "--out", str(out)]) == 0  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8 and rows[0]["method"] == "head_shift"
    assert main(["steer", "--model", "tiny-llama", "--data", str(organism_run["evaluation"]),
                 "--method", "head_shift", "--heads", str(heads), "--allow-other-model"]) == 2  # fmt: skip
    assert "computed on model 'organism-planted'" in one_error_line(capsys)


def test_directions_refuse_data_the_head_set_was_not_scored_on(organism_run, capsys):
    args = ["directions", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
            "--heads", str(organism_run["heads"]), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    assert "--examples-from data" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("attention_emphasis(alpha=0)", "alpha must be > 0"),
        ("attention_emphasis(alpha=nan)", "alpha must be a finite number"),
        ("amplify(alpha=-2)", "alpha must be >= 0"),
        ("head_shift(alpha=inf)", "alpha must be a finite number"),
    ],
)
def test_strengths_out_of_range_exit_2_with_one_line(organism_run, capsys, method, message):
    args = ["steer", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
            "--method", method, "--heads", str(organism_run["heads"])]  # fmt: skip
    assert main(args) == 2
    assert message in one_error_line(capsys)


def test_a_profile_reading_method_on_data_without_profiles_exits_2(organism_run, capsys):
    args = ["steer", "--model", "organism-planted", "--data", str(organism_run["bare"]),
            "--method", "attention_emphasis", "--heads", str(organism_run["heads"])]  # fmt: skip
    assert main(args) == 2
    assert "no prompt has one" in one_error_line(capsys)
    args = ["steer", "--model", "organism-planted", "--prompt", "Question: suggest a pet",
            "--method", "no_profile"]  # fmt: skip
    assert main(args) == 2
    assert "PreferenceExamples" in one_error_line(capsys)


def test_audit_from_the_command_line(organism_run, tmp_path, capsys):
    out = tmp_path / "audit"
    args = ["audit", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
            "--users", "all", "--heads", str(organism_run["heads"]), "--max-new-tokens", "3",
            "--methods", "fixed=dps(gamma=1),adaptive=dps(adaptive=true,beta=0.1),amplify",
            "--stop", ".", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "audit.json").read_text())
    assert [r["method"] for r in report["rows"]] == [
        "plain",
        "no_profile",
        "fixed",
        "adaptive",
        "amplify",
    ]
    assert report["methods"]["adaptive"]["rule"]["adaptive"] is True
    assert "pcs" in report["attention_top"][0]  # --heads holds the discovery scores
    assert (out / "audit.md").read_text() in printed


def test_discover_scans_an_emphasis_head_set_that_steering_reads(organism_run, tmp_path, capsys):
    out = tmp_path / "emphasis"
    args = discover_args("organism-planted", organism_run["discovery"], out, "--mode", "emphasis",
                         "--alpha", "0.01", "--method", "racing", "--k", "2")  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / "scores.json").read_text())["config"]
    assert (saved["mode"], saved["alpha"]) == ("emphasis", 0.01)
    assert main(discover_args("organism-planted", organism_run["discovery"], tmp_path / "z",
                              "--alpha", "0.5")) == 2  # fmt: skip
    assert "--alpha applies to modes" in one_error_line(capsys)
    assert main(["steer", "--model", "organism-planted", "--data", str(organism_run["evaluation"]),
                 "--method", "attention_emphasis", "--heads", str(out), "--max-new-tokens", "2"]) == 0  # fmt: skip
