"""Data-parallel discover and evaluate under ``torchrun --nproc_per_node 2`` (gloo on CPU): the
same results as one process, one-line errors naming the rank, and resumption after kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dps_lens.cli import build_parser
from dps_lens.distributed import Ranks, rank_siblings
from tests.helpers import discover_args

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
SCORE_FILES = ("scores.safetensors", "ranked.json", "ranked.csv", "ranked.md", "top_k.json")


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def _torchrun(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=400)


def _single(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in env.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return subprocess.run([sys.executable, *args], env=clean, capture_output=True, text=True,
                          cwd=ROOT, timeout=600)  # fmt: skip


def _assert_same_scores(a: Path, b: Path) -> None:
    """Every output byte equal, except the timings in ``scores.json``."""
    for name in SCORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    meta_a, meta_b = (json.loads((d / "scores.json").read_text()) for d in (a, b))
    for meta in (meta_a, meta_b):
        meta["config"].pop("seconds")
    assert meta_a == meta_b


def _option_strings(parser) -> set[str]:
    found = set()
    for action in parser._actions:
        found.update(s for s in action.option_strings if s.startswith("--"))
        for sub in getattr(action, "choices", None) or {}:
            if hasattr(action.choices[sub], "_actions"):
                found |= _option_strings(action.choices[sub])
    return found


def test_no_option_of_ours_is_taken_by_torchrun_s_parser():
    """torchrun's argparse reads abbreviations anywhere on the line: an option of ours that equals
    or begins one of its options (``--n`` of ``--nnodes``) breaks the documented command."""
    from torch.distributed.run import get_args_parser

    theirs = {s for a in get_args_parser()._actions for s in a.option_strings if s.startswith("--")}
    ours = _option_strings(build_parser()) - {"--help"}
    clashes = sorted(o for o in ours if any(t.startswith(o) for t in theirs))
    assert not clashes, f"options torchrun would read as its own: {clashes}"


def test_rank_files_and_unit_ownership(tmp_path):
    ranks = [Ranks(r, 3) for r in range(3)]
    assert [[u for u in range(7) if r.owns(u)] for r in ranks] == [[0, 3, 6], [1, 4], [2, 5]]
    path = tmp_path / "dps.partial.jsonl"
    assert Ranks().rank_path(path) == path
    assert ranks[1].rank_path(path).name == "dps.partial.rank1-of-3.jsonl"
    for p in (path, ranks[2].rank_path(path), Ranks(0, 2).rank_path(path)):
        p.write_text("")
    assert [p.name for p in rank_siblings(path)] == [
        "dps.partial.jsonl", "dps.partial.rank0-of-2.jsonl", "dps.partial.rank2-of-3.jsonl"
    ]  # fmt: skip


@pytest.mark.parametrize("method", ["exact", "racing"])
def test_torchrun_discover_writes_what_one_process_writes(examples_jsonl, tmp_path, method):
    args = ["--k", "3", "--method", method, "--batch-size", "2", "--round-size", "2"]
    env = _env()
    one = _single("-m", "dps_lens", *discover_args("tiny-llama", examples_jsonl, tmp_path / "one",
                                                    *args), env=env)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = _torchrun("-m", "dps_lens", *discover_args("tiny-llama", examples_jsonl,
                                                      tmp_path / "two", *args), env=env)  # fmt: skip
    assert two.returncode == 0, two.stderr
    _assert_same_scores(tmp_path / "one", tmp_path / "two")
    checkpoints = sorted(p.name for p in (tmp_path / "two").iterdir() if "checkpoint" in p.name)
    assert checkpoints == ["checkpoint.rank0-of-2", "checkpoint.rank1-of-2"]
    assert "scored 12 heads on 6 examples" in two.stdout  # rank 0 reports, once
    assert two.stdout.count("scored") == 1


def test_torchrun_evaluate_writes_what_one_process_writes(examples_jsonl, tmp_path):
    def args(out: Path) -> list[str]:
        return ["-m", "dps_lens", "evaluate", "--model", "tiny-llama", "--device", "cpu",
                "--data", str(examples_jsonl), "--methods", "plain,cad", "--users", "all",
                "--max-new-tokens", "3", "--batch-size", "2",
                "--out", str(out), "--no-progress"]  # fmt: skip

    env = _env()
    one = _single(*args(tmp_path / "one"), env=env)
    assert one.returncode == 0, one.stderr
    two = _torchrun(*args(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr
    for method in ("plain", "cad"):
        rows = [
            [
                {k: v for k, v in json.loads(line).items() if k != "seconds_per_token"}
                for line in (d / "methods" / f"{method}.jsonl").read_text().splitlines()
            ]
            for d in (tmp_path / "one", tmp_path / "two")
        ]
        assert rows[0] == rows[1] and len(rows[0]) == 6
        assert not list((tmp_path / "two" / "methods").glob("*.partial*"))  # merged, removed


def test_torchrun_study_writes_what_one_process_writes(tmp_path):
    def args(out: Path) -> list[str]:
        return ["-m", "dps_lens", "study", "organism-steering", "--evaluation-users", "4",
                "--out", str(out), "--no-progress"]  # fmt: skip

    env = _env()
    one = _single(*args(tmp_path / "one"), env=env)
    assert one.returncode == 0, one.stderr
    two = _torchrun(*args(tmp_path / "two"), env=env)
    assert two.returncode == 0, two.stderr
    sweeps = [json.loads((tmp_path / d / "sweep.json").read_text()) for d in ("one", "two")]
    for sweep in sweeps:
        sweep.pop("seconds")
        for row in sweep["rows"]:
            row.pop("ms_per_token", None)
            row.pop("seconds_per_token", None)
    assert sweeps[0] == sweeps[1]
    assert two.stdout.count("done in") == 1


def test_a_failing_rank_reports_itself_and_its_unit(examples_jsonl, tmp_path):
    env = _env(FAULT="raise", FAULT_AFTER="0", FAULT_LOG=str(tmp_path / "units"))
    run = _torchrun(str(WORKER), *discover_args("tiny-llama", examples_jsonl, tmp_path / "run",
                                                "--method", "exact-faulty"), env=env)  # fmt: skip
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    assert "rank 1 of 2 failed on examples [" in errors[0] and "injected fault" in errors[0]
    assert "with heads L" in errors[0]


def test_kill_9_of_a_rank_loses_only_unfinished_units(examples_jsonl, tmp_path):
    """Rank 1 is killed (SIGKILL) after 3 finished units, which fails the run; the same command
    run again resumes from the ranks' checkpoints: no unit rank 1 finished is computed again, and
    the results equal one process's."""
    log = tmp_path / "units"
    rank1 = log.with_name("units.rank1")
    env = _env(FAULT="kill", FAULT_AFTER="3", FAULT_LOG=str(log))
    args = discover_args("tiny-llama", examples_jsonl, tmp_path / "run", "--method",
                         "exact-faulty", "--batch-size", "1", "--k", "3")  # fmt: skip
    first = _torchrun(str(WORKER), *args, env=env)
    assert first.returncode != 0 and log.with_name("units.killed").exists()
    before = rank1.read_text().splitlines()
    assert len(before) == 3
    rank1.unlink()
    second = _torchrun(str(WORKER), *args, env=env)
    assert second.returncode == 0, second.stderr
    assert "resuming:" in second.stderr
    after = rank1.read_text().splitlines()
    assert after and not set(before) & set(after)
    reference = _single(str(WORKER), *discover_args("tiny-llama", examples_jsonl, tmp_path / "one",
                        "--method", "exact-faulty", "--batch-size", "1", "--k", "3"),
                        env=_env(FAULT_LOG=str(tmp_path / "reference")))  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    _assert_same_scores(tmp_path / "one", tmp_path / "run")


def test_commands_that_run_as_one_process_refuse_torchrun(monkeypatch, capsys):
    from dps_lens.cli import main

    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    assert main(["info", "--model", "tiny-gpt2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: dps-lens info runs as one process, not under torchrun")
    assert "discover, evaluate, study" in err
