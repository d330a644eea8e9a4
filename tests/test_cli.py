import json
import re

import pytest

from dps_lens.cli import COMMANDS, main
from dps_lens.scoring import HeadScores
from tests.helpers import discover_args


def test_discover_writes_scores_reports_and_heatmap(examples_jsonl, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        discover_args(
            "tiny-gpt2", examples_jsonl, out, "--k", "3", "--n-examples", "4", "--mode", "mean"
        )
    )
    assert code == 0
    for name in (
        "scores.safetensors",
        "scores.json",
        "ranked.json",
        "ranked.csv",
        "top_k.json",
        "heatmap.html",
    ):
        assert (out / name).exists(), name
    scores = HeadScores.load(out)
    assert scores.n_examples == 4 and scores.config["mode"] == "mean"
    assert len(json.loads((out / "top_k.json").read_text())["heads"]) == 3
    html = (out / "heatmap.html").read_text()
    assert "plotly" in html.lower() and "PCS (nats)" in html
    printed = capsys.readouterr().out
    assert "scored 8 heads on 4 examples" in printed and "L" in printed


def test_discover_layers_subset(examples_jsonl, tmp_path):
    out = tmp_path / "run"
    assert main(discover_args("tiny-llama", examples_jsonl, out, "--layers", "2", "--k", "2")) == 0
    assert {row["layer"] for row in HeadScores.load(out).ranked()} == {2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n-examples", "99"], "larger than the 6 examples"),
        (["--layers", "5"], "out of range"),
        (["--model", "./missing-model"], "does not exist"),
        (["--max-length", "100000"], "exceeds the model's context"),
    ],
)
def test_bad_input_gives_one_line_errors(examples_jsonl, tmp_path, capsys, extra, message):
    args = discover_args("tiny-gpt2", examples_jsonl, tmp_path / "run", *extra)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_malformed_data_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "a", "input": "x", "target": "y"}\n{oops\n')
    assert (
        main(["discover", "--model", "tiny-gpt2", "--data", str(bad), "--out", str(tmp_path)]) == 2
    )
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "pcs_heatmap.html").exists() and (tmp_path / "ranked.csv").exists()
    printed = capsys.readouterr().out
    assert "95% CI" in printed and "precision@3 = 1.00" in printed and "no profile" in printed


def test_organism_data_then_discover_finds_the_planted_heads(tmp_path, capsys):
    data = tmp_path / "discovery.jsonl"
    assert main(["organism", "data", "--users", "30", "--out", str(data)]) == 0
    assert len(data.read_text().splitlines()) == 60
    out = tmp_path / "run"
    assert main(discover_args("organism-planted", data, out, "--k", "3")) == 0
    found = {tuple(h) for h in json.loads((out / "top_k.json").read_text())["heads"]}
    assert found == {(1, 1), (1, 3), (2, 2)}


def test_sign_off_data_then_specific_discovery_drops_the_generic_head(tmp_path, capsys):
    data = tmp_path / "discovery.jsonl"
    assert main(["organism", "data", "--sign-offs", "--users", "40", "--out", str(data)]) == 0
    assert all(json.loads(line)["meta"]["sign_off"] for line in data.read_text().splitlines())
    runs = {}
    for select in ("pcs", "specific"):
        out = runs[select] = tmp_path / select
        args = ["--contrast", "no-profile", "--select", select, "--k", "3"]
        assert main(discover_args("organism-generic", data, out, *args)) == 0
    heads = {
        select: {tuple(h) for h in json.loads((out / "top_k.json").read_text())["heads"]}
        for select, out in runs.items()
    }
    assert heads["specific"] == {(1, 1), (1, 3), (2, 2)} and (0, 0) in heads["pcs"]


def test_organism_train_is_seeded_and_writes_a_loadable_card(tmp_path, capsys):
    from dps_lens.models import load_model
    from dps_lens.organism.train import read_card

    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert (
            main(
                [
                    "organism",
                    "train",
                    "--name",
                    "organism-planted",
                    "--steps",
                    "3",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert (outs[0] / "model.safetensors").read_bytes() == (
        outs[1] / "model.safetensors"
    ).read_bytes()
    card = read_card(outs[0])
    assert card["training"]["steps"] == 3 and "personalization" in card
    assert "Planted constraint" in (outs[0] / "README.md").read_text()
    assert load_model(str(outs[0]), device="cpu").planted_spec.heads == ((1, 1), (1, 3), (2, 2))


def test_steer_with_discovered_heads_and_a_prompt(examples_jsonl, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(discover_args("tiny-llama", examples_jsonl, run, "--k", "2", "--n-examples", "2")) == 0
    )
    out = tmp_path / "steered.jsonl"
    args = ["steer", "--model", "tiny-llama", "--heads", str(run), "--k", "2", "--prompt", "Hi",
            "--prompt", "Which pet?", "--max-new-tokens", "4", "--compare", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1] dps:" in printed and "[1] plain:" in printed and "ms/token" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["input"] for row in rows] == [0, 1] and "plain" in rows[0]


def test_evaluate_compares_methods_on_held_out_users(tmp_path, capsys):
    data = tmp_path / "users.jsonl"
    assert main(["organism", "data", "--split", "evaluation", "--users", "16", "--out", str(data)]) == 0  # fmt: skip
    heads = tmp_path / "top_k.json"
    heads.write_text(json.dumps({"heads": [[1, 1], [1, 3], [2, 2]]}))
    out = tmp_path / "eval"
    args = ["evaluate", "--model", "organism-planted", "--device", "cpu", "--data", str(data),
            "--heads", str(heads), "--methods", "plain,dps,cad", "--max-new-tokens", "4",
            "--stop", ".", "--stop", "!", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| plain | 16 |" in printed and "| dps | 16 |" in printed and "| cad | 16 |" in printed
    paired = printed.split("Paired differences (same examples):\n")[1]
    assert paired.startswith((out / "paired.md").read_text())  # the table evaluate wrote
    assert "| dps | plain | 16 |" in paired and "| cad | plain | 16 |" in paired
    evaluated = {json.loads(line)["user_id"] for line in (out / "methods" / "dps.jsonl").open()}
    assert len(evaluated) == 8  # the evaluation half of 16 users (2 queries each)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--heads", "missing.json"], "no head set at"),
        (["--stop", "two words"], "give single tokens"),
        (["--methods", "dps,nonsense"], "unknown method"),
    ],
)
def test_evaluate_bad_input_gives_one_line_errors(examples_jsonl, tmp_path, capsys, extra, message):
    heads = tmp_path / "top_k.json"
    heads.write_text(json.dumps({"heads": [[0, 1]]}))
    args = ["evaluate", "--model", "tiny-llama", "--data", str(examples_jsonl), "--heads", str(heads),
            "--out", str(tmp_path / "e"), "--no-progress", *extra]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err


@pytest.mark.parametrize("method", ["attribution", "hybrid", "activation-patching"])
def test_discover_method_flag_selects_the_method(examples_jsonl, tmp_path, method):
    out = tmp_path / method
    args = discover_args("tiny-llama", examples_jsonl, out, "--method", method, "--hybrid-top", "3",
                         "--k", "3", "--batch-size", "auto")  # fmt: skip
    assert main(args) == 0
    scores = HeadScores.load(out)
    assert scores.config["method"] == method
    assert len(scores.ranked()) == (3 if method == "hybrid" else 12)


def test_every_scan_flag_carries_its_own_help(capsys):
    with pytest.raises(SystemExit):
        main(["discover", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag, help_text in [
        ("--method METHOD", "exact, racing, attribution"),
        ("--contrast {none,no-profile}", "also score each head without the profile"),
        ("--select {pcs,specific}", "rank the top-K set by PCS"),
        ("--round-size N", "racing: examples in the first round"),
        ("--race-allocation {uniform,boundary,lucb}", "racing: each round to every undecided head"),
    ]:
        assert f"{flag} {help_text}" in text, flag


def _flags_without_help(help_text: str) -> list[str]:
    """Option entries of an argparse help whose text is empty or only ``(default: ...)``."""
    missing = []
    for entry in re.findall(r"^  (-\S.*(?:\n {6,}\S.*)*)", help_text, flags=re.MULTILINE):
        flat = " ".join(entry.split())
        # flags with their metavars ("--gammas float [float, ...]"), then the help text
        parts = re.match(
            r"((?:-[-\w]+(?: (?:\{[^}]*\}|\[[^\]]*\]|[\w.]+(?: \[[^\]]*\])?))?(?:, )?)+)(.*)", flat
        )
        text = parts.group(2) if parts else flat
        if not re.sub(r"\(default: [^)]*\)", "", text).strip():
            missing.append(flat)
    return missing


def test_flags_without_help_are_found():
    text = "options:\n  -h, --help  show this help\n  --a int     (default: 1)\n  --b [str]\n  --c str  c\n"
    assert _flags_without_help(text) == ["--a int (default: 1)", "--b [str]"]


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_flag_of_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit):
        main([*path, "--help"])
    assert _flags_without_help(capsys.readouterr().out) == []
