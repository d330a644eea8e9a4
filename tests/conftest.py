"""Shared fixtures: tiny random models built offline into a per-session cache, and data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dps_lens.data import write_jsonl

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SMOLLM2_DIR = SHARED / "models" / "QuantFactory__SmolLM2-135M-Instruct-GGUF"
LAMP7 = SHARED / "data" / "lamp7_user_dev_dps" / "LaMP-7.dev300.jsonl"
LAMP4 = SHARED / "data" / "lamp4_user_dev_dps" / "LaMP-4.dev300.jsonl"
PERSONACHAT = (
    SHARED / "data" / "personachat_convai2_valid" / "valid_self_original_no_cands.first500.txt"
)


def needs_shared(path: Path):
    """Skip marker for tests that read ../shared (absent in a user's fresh clone)."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"{path} not present (../shared is only beside the repo in CI)"
    )


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    os.environ["DPS_LENS_HOME"] = str(tmp_path_factory.mktemp("dps_lens_home"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield


@pytest.fixture(scope="session")
def tiny_gpt2():
    from dps_lens.models import load_model

    return load_model("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session")
def tiny_llama():
    from dps_lens.models import load_model

    return load_model("tiny-llama", device="cpu")


@pytest.fixture(params=["tiny_gpt2", "tiny_llama"])
def tiny_model(request: pytest.FixtureRequest):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def planted():
    from dps_lens.models import load_model

    return load_model("organism-planted", device="cpu")


@pytest.fixture(scope="session")
def examples():
    from dps_lens.organism.world import World, WorldConfig

    return World(WorldConfig(seed=1)).split_examples("evaluation", 3, queries_per_user=2)


@pytest.fixture
def examples_jsonl(tmp_path: Path, examples) -> Path:
    path = tmp_path / "examples.jsonl"
    write_jsonl(path, examples)
    return path
