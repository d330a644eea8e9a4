"""The LaMP study: head profiles, the runs and comparisons it plans, and a whole run on a tiny
model through ``dps-lens study lamp`` (discovery by racing PCS and ΔPCS, evaluation, paired
differences, resumption)."""

import json
import math

import pytest
import torch

from dps_lens.cli import main
from dps_lens.data import PreferenceExample, write_jsonl
from dps_lens.data.example import ExampleRef
from dps_lens.errors import DpsLensError
from dps_lens.scoring import HeadScores
from dps_lens.studies.lamp import (
    LampStudyConfig,
    comparison_pairs,
    evaluation_points,
    head_profile,
    report_markdown,
    sample_users,
)
from dps_lens.studies.lamp_compare import comparison_markdown, run_label, task_label


def _scores(per_example: torch.Tensor) -> HeadScores:
    n = per_example.shape[0]
    refs = [ExampleRef(i, f"u{i}") for i in range(n)]
    return HeadScores(per_example, torch.zeros(n), "m", "h", refs, {"n_bootstrap": 10})


def test_head_profile_depth_share_and_stability():
    generator = torch.Generator().manual_seed(0)
    per_example = 0.01 * torch.randn(16, 5, 5, generator=generator)  # 25 heads: top 4% is one
    per_example[:, 4, 1] += 3.0  # one dominant head in the last layer
    per_example[:, 2, 0] += 1.0
    profile = head_profile(_scores(per_example), k=2, by="pcs", n_splits=10)
    assert profile["top"] == [[4, 1], [2, 0]]
    assert profile["depths"] == [4 / 5, 2 / 5]
    assert profile["n_top_share"] == 1
    total = per_example.mean(0).abs().sum().item()
    assert profile["top_share"] == pytest.approx(per_example[:, 4, 1].mean().item() / total)
    assert profile["split_half_jaccard"] == 1.0  # the two heads stand out in every half
    assert profile["evaluations"] == profile["evaluations_exact"] == 16 * 25
    layer_sums = per_example.mean(0).abs().sum(1) / total
    assert profile["layer_share"] == pytest.approx(layer_sums.tolist())


def test_the_study_decodes_every_method_and_compares_dps_with_the_random_draws():
    config = LampStudyConfig(gammas=(0.5, 1.0), random_draws=3)
    labels = [p.label for p in evaluation_points(config)]
    assert labels == [
        "plain", "cad", "dola", "dps_pcs@0.5", "dps_pcs@1", "dps_specific@0.5",
        "dps_specific@1", "dps_shared_prefill_pcs@1", "random_heads_s0@1", "random_heads_s1@1",
        "random_heads_s2@1",
    ]  # fmt: skip
    pairs = comparison_pairs(config)
    assert pairs[: len(labels) - 1] == [(label, ["plain"]) for label in labels[1:]]
    randoms = ["random_heads_s0@1", "random_heads_s1@1", "random_heads_s2@1"]
    assert pairs[len(labels) - 1 :] == [("dps_pcs@1", randoms), ("dps_specific@1", randoms)]


def test_the_study_declares_dps_with_its_full_recipe():
    config = LampStudyConfig(gammas=(1.0, 2.0), random_draws=1, adaptive=True, beta=0.1)
    points = {p.label: p for p in evaluation_points(config)}
    adaptive = points["dps_pcs@entropy<=2+beta0.1"].config.params()
    assert (adaptive["adaptive"], adaptive["gamma_cap"], adaptive["beta"]) == (True, 2.0, 0.1)
    assert points["random_heads_s0@entropy<=1+beta0.1"].config.params()["beta"] == 0.1
    assert points["dps_shared_prefill_pcs@entropy<=1+beta0.1"].config.params()["adaptive"]
    randoms = ["random_heads_s0@entropy<=1+beta0.1"]
    assert comparison_pairs(config)[-1] == ("dps_specific@entropy<=1+beta0.1", randoms)
    fixed = LampStudyConfig(beta=0.1).dps_params(0.5)
    assert fixed == {"gamma": 0.5, "beta": 0.1}
    with pytest.raises(DpsLensError, match="beta"):
        LampStudyConfig(beta=0.0)


def test_users_are_sampled_whole_and_bad_settings_refused():
    examples = [PreferenceExample(f"u{i % 4}", "x", ["p"], "y") for i in range(8)]
    chosen = sample_users(examples, 2, seed=0)
    assert len({e.user_id for e in chosen}) == 2 and len(chosen) == 4
    for bad in ({"k": 0}, {"delta": 1.5}, {"gammas": ()}, {"gammas": (math.nan,)}):
        with pytest.raises(DpsLensError):
            LampStudyConfig(**bad)
    boundary = LampStudyConfig(race_allocation="boundary", round_size=4)
    for select in ("pcs", "specific"):  # both races take the study's racing settings
        scan = boundary.scan(select)
        assert (scan.race_allocation, scan.round_size, scan.select) == ("boundary", 4, select)
    powered = LampStudyConfig(discovery="ppi-racing").scan("specific")
    assert (powered.method, powered.contrast) == ("ppi-racing", "no-profile")


def _lamp_file(tmp_path, n_users=16):
    words = ["tea", "owls", "rain", "jazz", "chess", "maps", "soup", "kites"]
    examples = [
        PreferenceExample(
            f"LaMP-7/{i}",
            f"Paraphrase: today {words[i % 8]} again",
            [f"I like {words[(i + j) % 8]} a lot" for j in range(3)],
            f"{words[i % 8]} again today",
            {"task": "LaMP-7"},
        )
        for i in range(n_users)
    ]
    path = tmp_path / "lamp7.jsonl"
    write_jsonl(path, examples)
    return path


STUDY_ARGS = ["--model", "tiny-llama", "--device", "cpu", "--task", "lamp7",
              "--discovery-users", "6", "--evaluation-users", "4", "--k", "2", "--round-size", "2",
              "--gammas", "1.0", "--random-draws", "2", "--n-splits", "3", "--template", "history",
              "--max-length", "96", "--max-new-tokens", "3", "--no-progress"]  # fmt: skip


def test_lamp_study_runs_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
    data, out = _lamp_file(tmp_path), tmp_path / "study"
    args = ["study", "lamp", "--data", str(data), "--out", str(out), *STUDY_ARGS]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_discovery_examples"] == 6 and report["n_evaluation_examples"] == 4
    assert report["discovery_seconds"] > 0 and report["evaluation_seconds"] > 0
    for select in ("pcs", "specific"):
        saved = HeadScores.load(out / f"discovery-{select}")
        assert saved.config["method"] == "racing" and saved.status is not None
        assert report["discovery"][select]["top"] == [list(h) for h in saved.top_k(2, by=select)]
    assert HeadScores.load(out / "discovery-specific").no_profile is not None
    rows = report["comparisons"]
    assert {(r["method"], r["reference"]) for r in rows} >= {
        ("dps_pcs@1", "plain"), ("dola", "plain"),
        ("dps_pcs@1", "mean of random_heads_s0@1, random_heads_s1@1"),
    }  # fmt: skip
    assert all(r["n"] == 4 for r in rows)
    assert (out / "paired.md").read_text() == report["comparisons_table"]
    assert "### Paired differences" in (out / "report.md").read_text()
    local = report | {"model": "../shared/models/Some-Model-GGUF"}
    assert report_markdown(local).startswith("## tiny-llama · fp32 on lamp7\n")  # its name
    older = {k: v for k, v in local.items() if k != "model_name"}  # a report naming no model
    assert report_markdown(older).startswith("## Some-Model-GGUF · fp32 on lamp7\n")  # not a path
    assert report["dtype"] == "float32" and "Weights in float32." in report_markdown(report)
    bf16 = report | {"dtype": "bfloat16"}
    assert "Weights in bfloat16; losses and scores in float32." in report_markdown(bf16)
    printed = capsys.readouterr().out
    assert "dps_specific@1" in printed and "done in" in printed

    def fail(*args, **kwargs):
        raise AssertionError("finished work was done again")

    monkeypatch.setattr("dps_lens.evaluation.runner.generate", fail)
    assert main(args) == 0  # every scan and method resumes from its saved state
    again = json.loads((out / "report.json").read_text())
    assert again["comparisons"] == report["comparisons"]
    assert again["evaluation_seconds"] == report["evaluation_seconds"]  # survives a resume
    assert again["discovery_seconds"] == pytest.approx(report["discovery_seconds"], abs=5.0)


def test_lamp_study_refuses_data_of_another_task(tmp_path, capsys):
    data = _lamp_file(tmp_path)
    args = ["study", "lamp", "--data", str(data), *STUDY_ARGS]
    args[args.index("lamp7")] = "lamp4"
    assert main([*args, "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "lamp7 examples, not lamp4" in err and "\n" not in err


def _report(
    model: str,
    task: str,
    hot: tuple[int, int],
    users: tuple[int, int] = (8, 6),
    comparisons: tuple[dict, ...] = (),
) -> dict:
    per_example = 0.01 * torch.randn(8, 4, 3, generator=torch.Generator().manual_seed(1))
    per_example[:, hot[0], hot[1]] += 1.0
    profile = head_profile(_scores(per_example), k=2, by="pcs", n_splits=4)
    config = {"discovery_users": users[0], "evaluation_users": users[1]}
    return {"model": model, "task": task, "config": config, "comparisons": list(comparisons),
            "discovery": {"pcs": profile, "specific": profile}}  # fmt: skip


def _paired(method: str, reference: str, metric: str, difference: float, excludes_zero: bool):
    return {"method": method, "reference": reference, "metric": metric,
            "difference": difference, "excludes_zero": excludes_zero}  # fmt: skip


RANDOM = "mean of random_heads_s0@1, random_heads_s1@1"
STEERING = (
    _paired("dps_pcs@0.25", "plain", "rouge1", 0.03, True),
    _paired("dps_pcs@0.25", "plain", "meteor", 0.01, False),
    _paired("dps_specific@0.5", "plain", "rougeL", 0.02, True),
    _paired("dps_specific@0.5", "plain", "meteor", 0.02, True),
    _paired("dps_pcs@1", "plain", "rouge1", -0.04, True),
    _paired("cad", "plain", "rouge1", 0.10, True),  # not DPS
    _paired("random_heads_s0@1", "plain", "rouge1", 0.05, True),  # not DPS
    _paired("dps_pcs@1", RANDOM, "rouge1", -0.05, True),
    _paired("dps_pcs@1", RANDOM, "meteor", 0.02, False),
    _paired("dps_specific@1", RANDOM, "rouge1", 0.02, True),
    _paired("dps_specific@1", RANDOM, "meteor", -0.03, True),
)


def test_steering_verdicts_name_dps_runs_above_plain_and_against_random():
    from dps_lens.studies.lamp_compare import compare_reports, steering_verdicts, verdict

    verdicts = steering_verdicts(_report("m/A", "lamp7", (3, 0), comparisons=STEERING))
    assert verdicts["dps_above_plain"] == [
        {"method": "dps_pcs@0.25", "metrics": ["rouge1"]},
        {"method": "dps_specific@0.5", "metrics": ["rougeL", "meteor"]},
    ]
    assert (verdicts["pcs_vs_random"], verdicts["specific_vs_random"]) == ("below", "mixed")
    level = [_paired("dps_pcs@1", RANDOM, "rouge1", 0.3, False)]
    assert verdict(level) == "level" and verdict([]) is None
    assert verdict([*level, _paired("dps_pcs@1", RANDOM, "meteor", 0.1, True)]) == "above"
    # a run without γ = 1 has no random-heads test: it is left out of the tally
    comparison = compare_reports(
        [_report("m/A", "lamp7", (3, 0), comparisons=STEERING), _report("m/A", "lamp4", (3, 0))]
    )
    assert comparison["dps_vs_random"] == {"above": 0, "level": 0, "below": 1, "mixed": 1}
    markdown = comparison_markdown(comparison)
    assert (
        "| A · fp32 · lamp7 · 8/6 users | dps_pcs@0.25: rouge1; dps_specific@0.5: rougeL, meteor "
        "| below / mixed |" in markdown
    )
    assert "| A · fp32 · lamp4 · 8/6 users | none | – / – |" in markdown
    assert "over 2 tests (runs × head sets): 0 above, 0 level, 1 below, 1 mixed" in markdown


def test_lamp_compare_pairs_the_runs_of_each_model(tmp_path, capsys):
    reports = {"a7": _report("m/A", "lamp7", (3, 0)), "a4": _report("m/A", "lamp4", (3, 0)),
               "a4-full": _report("m/A", "lamp4", (0, 2), users=(64, 100)),
               "b7": _report("m/B", "lamp7", (0, 2))}  # fmt: skip
    for name, report in reports.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    out = tmp_path / "cmp"
    assert main(["study", "lamp-compare", "--reports", *(str(tmp_path / n) for n in reports),
                 "--out", str(out)]) == 0  # fmt: skip
    comparison = json.loads((out / "compare.json").read_text())
    # every two runs of A: across tasks, and LaMP-4 at two sizes; B has one run
    pairs = comparison["pairs"]
    assert [c["tasks"] for c in pairs] == [
        ["lamp7", "lamp4"],
        ["lamp7", "lamp4"],
        ["lamp4", "lamp4"],
    ]
    # the same top set; then another hot head, with the same (seeded) runner-up
    assert [c["pcs"] for c in pairs] == [1.0, 1 / 3, 1 / 3]
    assert [r["run"] for r in comparison["runs"]] == [
        "A · fp32 · lamp7 · 8/6 users", "A · fp32 · lamp4 · 8/6 users", "A · fp32 · lamp4 · 64/100 users",
        "B · fp32 · lamp7 · 8/6 users"]  # fmt: skip
    printed = capsys.readouterr().out
    assert "| A | lamp7 · 8/6 users · fp32 vs lamp4 · 8/6 users · fp32 | 1.00 | 1.00 |" in printed
    assert (
        "| A | lamp7 · 8/6 users · fp32 vs lamp4 · 64/100 users · fp32 | 0.33 | 0.33 |" in printed
    )
    assert (
        "| A | lamp4 · 8/6 users · fp32 vs lamp4 · 64/100 users · fp32 | 0.33 | 0.33 |" in printed
    )
    # a run in another dtype is named by it; reports without a dtype are float32
    assert task_label(reports["a4"] | {"dtype": "bfloat16"}) == "lamp4 · 8/6 users"
    assert run_label(reports["a4"] | {"dtype": "bfloat16"}) == "A · bf16 · lamp4 · 8/6 users"
    assert task_label(reports["a4"] | {"dtype": "float32"}) == task_label(reports["a4"])
    unpaired = reports["a7"] | {"comparisons": [{"method": "dps_pcs@1"}]}
    (tmp_path / "unpaired.json").write_text(json.dumps(unpaired))
    assert main(["study", "lamp-compare", "--reports", str(tmp_path / "a4"),
                 str(tmp_path / "unpaired.json"), "--out", str(out)]) == 2  # fmt: skip
    assert "is not the report of `dps-lens study lamp`" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"model": "x"}')
    assert main(["study", "lamp-compare", "--reports", str(tmp_path / "a7"),
                 str(tmp_path / "bad.json"), "--out", str(out)]) == 2  # fmt: skip
    assert "is not the report of `dps-lens study lamp`" in capsys.readouterr().err
    assert main(["study", "lamp-compare", "--reports", str(tmp_path / "a7"),
                 str(tmp_path / "a7" / "report.json"), "--out", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: two reports are both 'A · fp32 · lamp7 · 8/6 users' (model, task, users and "
        "dtype); pass each run once"
    )


def test_depth_profile_figure_rebuilds_when_a_report_changes(tmp_path, capsys):
    for name, hot in (("a", (3, 0)), ("b", (0, 2))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(_report(f"m/{name}", "lamp7", hot)))
    study = tmp_path / "depth.toml"
    study.write_text(
        'name = "depth"\nroot = "."\nout = "figs"\n[inputs]\nra = "a/report.json"\n'
        'rb = "b/report.json"\n[[figure]]\nname = "depth"\nkind = "depth_profile"\n'
        'reports = ["ra", "rb"]\n'
    )
    command = ["figures", "--study", str(study), "--static", "no", "--no-progress"]
    assert main(command) == 0 and capsys.readouterr().out.count("built") == 1
    html = (tmp_path / "figs" / "depth.html").read_text()
    assert all(
        json.dumps(f"{n} · fp32 · lamp7 · 8")[1:-1] in html for n in "ab"
    )  # trace names, as JSON
    (tmp_path / "b" / "report.json").write_text(json.dumps(_report("m/b", "lamp7", (1, 1))))
    assert main(command) == 0 and capsys.readouterr().out.count("built") == 1
    study.write_text(study.read_text() + 'select = "both"\n')
    assert main(command) == 2
    assert "option `select` must be pcs or specific" in capsys.readouterr().err
    study.write_text(study.read_text().replace('select = "both"\n', "").replace('"rb"]', '"ra"]'))
    assert main(command) == 2
    assert "two reports are both 'a · fp32 · lamp7 · 8/6 users'" in capsys.readouterr().err


def test_depth_profiles_put_layers_on_relative_depth():
    from dps_lens.plots import depth_profiles

    figure = depth_profiles({"x": [0.5, 0.25, 0.25, 0.0]}, {"x": [0.0, 0.25]})
    line, ticks = figure.data
    assert list(line.x) == [0.125, 0.375, 0.625, 0.875] and list(line.y) == [0.5, 0.25, 0.25, 0.0]
    assert list(ticks.x) == [0.125, 0.375]  # each top head at its layer's point of the line
    assert ticks.legendgroup == line.legendgroup == "x" and ticks.showlegend is False
