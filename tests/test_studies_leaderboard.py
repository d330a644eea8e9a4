"""The steering leaderboard: three-way user splits, method grids, the choice on tuning users, the
judgement on evaluation users against plain and random heads, the reuse of a LaMP study's races,
and a whole run on a tiny model through ``dps-lens study leaderboard`` (resumed)."""

from __future__ import annotations

import json

import pytest

from dps_lens.cli import main
from dps_lens.data import PreferenceExample, load_examples
from dps_lens.errors import DpsLensError
from dps_lens.evaluation.metrics import Estimate, parlai_tokens, unigram_f1
from dps_lens.studies.leaderboard import (
    LeaderboardConfig,
    Setting,
    leaderboard_markdown,
    leaderboard_users,
    one_example_per_user,
    settings_of,
    verdict,
)
from tests.conftest import PERSONACHAT, needs_shared
from tests.test_cli_errors import one_error_line
from tests.test_studies_lamp import STUDY_ARGS, _lamp_file


def test_three_way_splits_share_no_user_and_keep_the_lamp_studys_discovery():
    from dps_lens.data.splits import split_by_user
    from dps_lens.studies.lamp import sample_users

    examples = [PreferenceExample(f"u{i}", "x", ["p"], "y") for i in range(40)]
    config = LeaderboardConfig(discovery_users=8, tuning_users=6, evaluation_users=10)
    discovery, tuning, evaluation = leaderboard_users(examples, config)
    sides = [{e.user_id for e in part} for part in (discovery, tuning, evaluation)]
    assert [len(s) for s in sides] == [8, 6, 10]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    study_discovery = sample_users(split_by_user(examples, 0.5, seed=0)[0], 8, 0)
    assert discovery == study_discovery  # the LaMP study's sample: its races can be reused
    with pytest.raises(DpsLensError, match="fewer than the 30 tuning and evaluation users"):
        leaderboard_users(examples, LeaderboardConfig(tuning_users=20, evaluation_users=10))


def test_one_example_per_user_is_seeded_and_keeps_single_examples():
    examples = [PreferenceExample(f"u{i % 3}", f"turn {i}", ["p"], "y") for i in range(9)]
    chosen = one_example_per_user(examples, seed=0)
    assert sorted(e.user_id for e in chosen) == ["u0", "u1", "u2"]
    assert chosen == one_example_per_user(examples, seed=0)
    single = [PreferenceExample(f"u{i}", "x", ["p"], "y") for i in range(3)]
    assert one_example_per_user(single, seed=5) == single


def test_head_set_methods_are_tuned_over_k_and_their_grid_weakest_first():
    dps = settings_of("dps", [3, 10])
    assert len(dps) == 24 and {s.k for s in dps} == {3, 10}
    assert dps[0].label == "dps(gamma_cap=0.25,adaptive=true,beta=0.1)+K3"
    assert settings_of("cad", [3, 10])[0] == Setting("cad", (("alpha", 0.25),))
    assert [s.label for s in settings_of("no_profile", [3])] == ["no_profile"]
    assert LeaderboardConfig().ks(270) == [10, 11] and LeaderboardConfig().ks(72) == [3, 10]
    with pytest.raises(DpsLensError, match="reference"):
        LeaderboardConfig(methods=("plain",))


def test_verdicts_follow_the_interval():
    assert verdict(Estimate(0.1, 0.01, 0.2, 10)) == "above"
    assert verdict(Estimate(-0.1, -0.2, -0.01, 10)) == "below"
    assert verdict(Estimate(0.1, -0.01, 0.2, 10)) == "level"


def test_unigram_f1_is_parlais():
    assert parlai_tokens("The cat, an owl!") == ["cat", "owl"]
    assert unigram_f1("The cat sat.", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert unigram_f1("", "cat") == 0.0 and unigram_f1("dog", "cat") == 0.0


@needs_shared(PERSONACHAT)
def test_personachat_examples_are_dialogue_examples():
    from dps_lens.evaluation.metrics import task_of

    assert task_of(load_examples(PERSONACHAT)[:3]) == "dialogue"


BOARD_ARGS = ["--model", "tiny-llama", "--device", "cpu", "--task", "lamp7",
              "--discovery-users", "6", "--tuning-users", "3", "--evaluation-users", "4",
              "--k", "2", "--round-size", "2", "--random-draws", "2", "--template", "history",
              "--max-length", "96", "--max-new-tokens", "3", "--no-progress",
              "--methods", "no_profile", "dps", "amplify"]  # fmt: skip


def test_the_leaderboard_runs_end_to_end_reuses_a_study_and_resumes(tmp_path, capsys, monkeypatch):
    data = _lamp_file(tmp_path, n_users=16)
    study = tmp_path / "study"
    assert main(["study", "lamp", "--data", str(data), "--out", str(study), *STUDY_ARGS]) == 0
    out = tmp_path / "board"
    args = ["study", "leaderboard", "--data", str(data), "--out", str(out), *BOARD_ARGS]
    assert main([*args, "--discovery", str(study)]) == 0
    written = {name: (out / name).read_bytes() for name in ("leaderboard.json", "leaderboard.md")}
    report = json.loads(written["leaderboard.json"])
    assert report["discovery"]["reused"] == str(study) and report["discovery"]["seconds"] == 0.0
    assert (report["n_discovery"], report["n_tuning"], report["n_evaluation"]) == (6, 3, 4)
    assert set(report["chosen"]) == {"no_profile", "dps", "amplify"}
    assert len([r for r in report["tuning"] if r["method"] == "dps"]) == 24  # 12 settings × 2 K
    assert sum(r["chosen"] for r in report["tuning"]) == 3
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["plain", "no_profile", "dps", "amplify"]
    assert rows["plain"]["vs_plain"]["value"] == 0.0 and rows["plain"]["verdict_plain"] is None
    assert rows["dps"]["verdict_random"] in ("above", "level", "below")
    assert len(rows["amplify"]["random_vs_plain"]) == 2 and "vs_random" not in rows["no_profile"]
    assert (out / "leaderboard.md").read_text() == leaderboard_markdown(report)
    for stage in ("tuning", "evaluation"):  # the leaderboard pairs its runs itself
        assert (out / stage / "results.csv").exists() and not (out / stage / "paired.csv").exists()
    capsys.readouterr()
    calls = []
    from dps_lens.steering import generate as real_generate

    monkeypatch.setattr(
        "dps_lens.evaluation.runner.generate",
        lambda *a, **k: calls.append(1) or real_generate(*a, **k),
    )
    assert main([*args, "--discovery", str(study)]) == 0  # everything resumes from the files
    assert calls == []  # and the same files, byte for byte
    assert {name: (out / name).read_bytes() for name in written} == written


def test_the_leaderboard_refuses_a_study_of_other_users_or_settings(tmp_path, capsys):
    data = _lamp_file(tmp_path, n_users=16)
    study = tmp_path / "study"
    assert main(["study", "lamp", "--data", str(data), "--out", str(study), *STUDY_ARGS]) == 0
    args = ["study", "leaderboard", "--data", str(data), "--out", str(tmp_path / "b"),
            *BOARD_ARGS, "--discovery", str(study)]  # fmt: skip
    capsys.readouterr()
    assert main([*args, "--discovery-users", "5"]) == 2
    assert "other discovery examples" in one_error_line(capsys)
    assert main([*args, "--max-length", "80"]) == 2
    assert "template and length limit" in one_error_line(capsys)


def _estimate(value: float, half: float = 0.01) -> dict:
    return {"value": value, "low": value - half, "high": value + half, "n": 40}


def _board(model: str, task: str, dps: float, emphasis: float, random: float) -> dict:
    def row(method, vs_plain, vs_random=None):
        verdict_of = lambda e: "above" if e["low"] > 0 else "below" if e["high"] < 0 else "level"  # noqa: E731
        out = {"method": method, "setting": method, "vs_plain": vs_plain,
               "verdict_plain": None if method == "plain" else verdict_of(vs_plain),
               "vs_no_profile": _estimate(0.0), "lift_vs_plain": _estimate(0.02),
               "lift": _estimate(0.1), "coherence_ppl": _estimate(2.0), "ms_per_token": 10.0}  # fmt: skip
        if vs_random is not None:
            out |= {"vs_random": vs_random, "verdict_random": verdict_of(vs_random),
                    "random_vs_plain": [_estimate(random)] * 2}  # fmt: skip
        return out

    return {
        "model": f"m/{model}", "model_name": model, "dtype": "bfloat16", "task": task,
        "metric": "rouge1", "n_evaluation": 40, "tuning": [], "seconds": {"tuning": 1.0},
        "profile": {"benefit": _estimate(-0.05), "gold_lift": _estimate(0.1)},
        "rows": [row("plain", _estimate(0.0, 0.0)), row("dps", _estimate(dps), _estimate(dps - random)),
                 row("attention_emphasis", _estimate(emphasis), _estimate(emphasis - random))],
    }  # fmt: skip


def test_the_comparison_tallies_verdicts_and_answers_the_questions():
    from dps_lens.studies.leaderboard_compare import compare_leaderboards, compare_markdown

    reports = [_board("A", "lamp7", -0.05, 0.03, 0.0), _board("B", "lamp4", -0.02, 0.0, -0.04)]
    comparison = compare_leaderboards(reports)
    assert comparison["tally"]["dps"]["plain"] == {"above": 0, "level": 0, "below": 2}
    assert comparison["tally"]["dps"]["random"] == {"above": 1, "level": 0, "below": 1}
    assert [e["method"] for e in comparison["above_plain"]] == ["attention_emphasis"]
    assert {(e["method"], e["run"]) for e in comparison["above_random"]} == {
        ("attention_emphasis", "A · bf16 · lamp7"), ("attention_emphasis", "B · bf16 · lamp4"),
        ("dps", "B · bf16 · lamp4"),
    }  # fmt: skip
    text = compare_markdown(comparison)
    assert (
        "Methods above plain on held-out users: attention_emphasis (attention_emphasis) on A · bf16 · lamp7."
        in text
    )
    assert "| dps | 0 / 0 / 2 | 1 / 0 / 1 |" in text
    # compare.json is written with sorted keys: the tables keep the runs' method order through it
    reloaded = json.loads(json.dumps(comparison, sort_keys=True))
    assert compare_markdown(reloaded) == text
    with pytest.raises(DpsLensError, match="pass each run once"):
        compare_leaderboards([reports[0], reports[0]])


def test_the_leaderboard_figures_build_from_the_runs(tmp_path):
    from dps_lens.figures import build_study, load_study

    for name, report in {"a": _board("A", "lamp7", -0.05, 0.03, 0.0),
                         "b": _board("B", "lamp4", -0.02, 0.0, -0.04)}.items():  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "leaderboard.json").write_text(json.dumps(report))
    study = tmp_path / "board.toml"
    study.write_text(
        'name = "board"\nroot = "."\n[inputs]\na = "a/leaderboard.json"\nb = "b/leaderboard.json"\n'
        '[[figure]]\nname = "dots"\nkind = "leaderboard"\nreports = ["a", "b"]\ncolumns = 2\n'
        '[[figure]]\nname = "scatter"\nkind = "lift_gain"\nreports = ["a", "b"]\n'
    )
    built = build_study(load_study(study), static=False, progress=False)
    html = (tmp_path / "figures" / "board" / "dots.html").read_text()
    assert len(built) == 2 and json.dumps("A · bf16 · lamp7")[1:-1] in html  # as JSON
    assert "random heads" in html


def test_the_leaderboard_legend_sits_below_the_axis_titles() -> None:
    from dps_lens.plots.leaderboard import leaderboard_dots

    runs = {"A": _board("A", "lamp7", -0.05, 0.03, 0.0), "B": _board("B", "lamp4", -0.02, 0.0, 0.0)}
    layout = leaderboard_dots(runs, columns=2).to_dict()["layout"]
    # in the figure's own coordinates, at its foot: in the plots' coordinates a legend below
    # y = 0 overlaps the x-axis titles
    legend = layout["legend"]
    assert (legend["yref"], legend["y"], legend["yanchor"]) == ("container", 0, "bottom")
    assert layout["margin"]["b"] >= 90


def test_the_lift_gain_figure_has_a_panel_per_run_and_visible_zero_lines() -> None:
    from dps_lens.plots.leaderboard import lift_against_gain

    dialogue = _board("C", "personachat", 0.01, 0.02, 0.0) | {"metric": "f1"}
    runs = {"A": _board("A", "lamp7", -0.05, 0.03, 0.0), "B": _board("B", "lamp4", -0.02, 0.0, 0.0),
            "C": dialogue}  # fmt: skip
    figure = lift_against_gain(runs, columns=2)
    layout = figure.to_dict()["layout"]
    assert [a["text"] for a in layout["annotations"]] == ["A", "B", "C"]  # the panels' titles
    assert [t.xaxis for t in figure.data] == ["x", "x2", "x3"]  # one run per panel
    assert [t.text for t in figure.data][2] == ("dps", "attention_emphasis")  # plain is the origin
    assert [layout[f"yaxis{i}"]["title"]["text"] for i in ("", "2", "3")] == [
        "Δ rouge1 vs plain", "Δ rouge1 vs plain", "Δ f1 vs plain",
    ]  # fmt: skip
    assert len(layout["shapes"]) == 6  # a zero line on each axis of each panel
    # the shared style's template must not draw them at width 0 (plotly's simple_white does)
    defaults = figure.layout.template.layout.shapedefaults  # pyright: ignore[reportAttributeAccessIssue]
    assert defaults.line.width > 0 and defaults.opacity == 1
    with pytest.raises(DpsLensError, match="columns must be at least 1"):
        lift_against_gain(runs, columns=0)
