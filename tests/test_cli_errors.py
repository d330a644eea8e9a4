"""Bad input through the CLI: one ``error:`` line naming the fix, exit status 2, nothing computed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dps_lens.cli import main
from dps_lens.outdir import LOCK_FILE, claim_output
from tests.helpers import discover_args


def one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr (``warning:`` lines about the input may precede it)."""
    lines = [line for line in capsys.readouterr().err.strip().splitlines()]
    errors = [line for line in lines if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error:"), lines
    return errors[0]


def not_gguf(tmp_path: Path) -> str:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 not a gguf")
    return str(path)


def truncated_gguf(tmp_path: Path) -> str:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 5)
    return str(path)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--device", "cuda:7"), "is not available here"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--device", "banana"), "is not a device"),
        (lambda d, t: discover_args(not_gguf(t), d, t / "run"), "is not a GGUF file"),
        (lambda d, t: discover_args(truncated_gguf(t), d, t / "run"), "could not be read as a GGUF"),
        (lambda d, t: discover_args("tiny-llama", d, d), "is a file"),
        (lambda d, t: discover_args("tiny-llama", d, d / "run"), "which is a file"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--mode", "nonsense"), "unknown mask mode"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--method", "nonsense"), "unknown method"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--by", "cluster", "--clusters", "x"), "--clusters"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--n-examples", "0"),
         "--n-examples must be a positive"),
        (lambda d, t: discover_args("tiny-llama", d, t / "run", "--by", "cluster", "--encoder", str(t / "none")),
         "profile encoder"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--method", "cad", "--alpha", "nan"],
         "alpha must be a finite number"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--method", "dps", "--gamma", "inf",
                       "--heads", str(t)], "gamma must be a finite number"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--method", "dps", "--gamma", "-1",
                       "--heads", str(t)], "gamma must be >= 0"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--method", "dps", "--beta", "2",
                       "--heads", str(t)], "beta must be <= 1"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--out", str(t)], "is a directory"),
        (lambda d, t: ["steer", "--model", "tiny-llama", "--prompt", "Hi", "--data", str(d)], "either --prompt"),
    ],
)  # fmt: skip
def test_bad_input_is_one_error_line(examples_jsonl, tmp_path, capsys, make_args, message):
    assert main(make_args(examples_jsonl, tmp_path)) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "run" / "scores.json").exists()


def test_a_second_run_on_the_same_output_refuses_naming_the_holder(
    examples_jsonl, tmp_path, capsys
):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dps_lens.outdir import claim_output\n"
         "with claim_output(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(out)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main(discover_args("tiny-llama", examples_jsonl, out)) == 2
        err = one_error_line(capsys)
        assert "is being written by pid" in err and str(holder.pid) in err
    finally:
        holder.kill()
        holder.wait()
    assert (
        main(discover_args("tiny-llama", examples_jsonl, out, "--n-examples", "2")) == 0
    )  # free again


def test_the_lock_is_released_after_a_failed_run(tmp_path):
    with pytest.raises(RuntimeError), claim_output(tmp_path / "out"):
        raise RuntimeError("boom")
    with claim_output(tmp_path / "out") as path:
        assert (path / LOCK_FILE).exists()


def test_a_k_larger_than_the_heads_scored_is_reported(examples_jsonl, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            discover_args(
                "tiny-llama", examples_jsonl, out, "--layers", "1", "--k", "9", "--n-examples", "2"
            )
        )
        == 0
    )
    assert "--k 9 is more than the 4 heads scored" in capsys.readouterr().err
    assert len(json.loads((out / "top_k.json").read_text())["heads"]) == 4
