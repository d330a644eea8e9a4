"""Models are named as people know them: a GGUF's file name without its quantization tag, an HF
folder's recorded name, a hub id's last part; and dtypes in their short form."""

from __future__ import annotations

import json

import pytest

from dps_lens.names import dtype_label, model_display_name, name_from_id, run_name
from dps_lens.studies.lamp import report_run_name

from .conftest import SMOLLM2_DIR, needs_shared


def test_a_gguf_folder_is_named_by_its_checkpoint(tmp_path):
    folder = tmp_path / "QuantFactory__Foo-1B-Instruct-GGUF"
    folder.mkdir()
    (folder / "Foo-1B-Instruct.Q8_0.gguf").write_bytes(b"GGUF")
    assert model_display_name(str(folder)) == "Foo-1B-Instruct"


def test_an_hf_folder_is_named_by_its_recorded_name(tmp_path):
    folder = tmp_path / "my-copy"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "google/gemma-3-270m"}))
    assert model_display_name(str(folder)) == "gemma-3-270m"
    (folder / "config.json").write_text(json.dumps({"_name_or_path": None}))
    assert model_display_name(str(folder)) == "my-copy"


@pytest.mark.parametrize(
    ("model_id", "name"),
    [
        ("../shared/models/QuantFactory__SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
        ("organism-planted", "organism-planted"),
        ("runs/models/gemma3-270m/", "gemma3-270m"),
        ("x/gemma-3-270m-q4_k_m.gguf", "gemma-3-270m"),
    ],
)
def test_a_name_from_the_id_alone(model_id, name):
    assert name_from_id(model_id) == name


def test_dtypes_and_runs_read_short():
    assert [dtype_label(d) for d in ("bfloat16", "torch.float16", "float32", "int8")] == [
        "bf16", "fp16", "fp32", "int8",
    ]  # fmt: skip
    assert run_name("SmolLM2-135M-Instruct", "bfloat16") == "SmolLM2-135M-Instruct · bf16"
    old_report = {"model": "../shared/models/QuantFactory__SmolLM2-135M-Instruct-GGUF"}
    assert report_run_name(old_report) == "SmolLM2-135M-Instruct · fp32"  # no dtype: float32


@needs_shared(SMOLLM2_DIR)
def test_the_shared_smollm2_is_named_by_its_checkpoint():
    assert model_display_name(str(SMOLLM2_DIR)) == "SmolLM2-135M-Instruct"
