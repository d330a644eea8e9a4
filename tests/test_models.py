import time

import pytest
import torch

from dps_lens.cli import main
from dps_lens.errors import ModelLoadError
from dps_lens.models import load_model, model_info, resolve_dtype
from dps_lens.tiny import TINY_MODELS, tiny_model_dir


def test_tiny_models_have_the_configured_shape(tiny_gpt2, tiny_llama):
    gpt2, llama = model_info(tiny_gpt2), model_info(tiny_llama)
    assert (gpt2.n_layers, gpt2.n_heads, gpt2.n_kv_heads) == (2, 4, 4)
    assert (llama.n_layers, llama.n_heads, llama.n_kv_heads) == (3, 4, 2)  # grouped-query attention
    assert llama.d_head == TINY_MODELS["tiny-llama"].d_model // 4


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-gemma3"])  # both tie their embeddings
def test_tiny_model_build_is_deterministic(tmp_path, name):
    from dps_lens.tiny import build_tiny_model

    builds = [build_tiny_model(TINY_MODELS[name], tmp_path / str(i)) for i in range(4)]
    first = (builds[0] / "model.safetensors").read_bytes()
    assert all((b / "model.safetensors").read_bytes() == first for b in builds[1:])


def test_saved_weights_leave_out_tied_copies_and_carry_one_metadata_key(tmp_path):
    """safetensors writes several metadata keys in a random order (the file's bytes would vary);
    the tied output embedding is the input embedding's memory and is written once."""
    from safetensors import safe_open

    from dps_lens._io import save_weights
    from dps_lens.tiny import byte_level_tokenizer, hf_model

    model = hf_model(TINY_MODELS["tiny-gpt2"], vocab_size=len(byte_level_tokenizer()))
    path = save_weights(model, tmp_path / "model.safetensors")
    with safe_open(str(path), framework="pt") as saved:
        assert saved.metadata() == {"format": "pt"}
        names = set(saved.keys())
        assert torch.equal(saved.get_tensor("transformer.wte.weight"), model.lm_head.weight)
    assert names == set(model.state_dict()) - {"lm_head.weight"}


def test_local_directory_loads_like_the_bundled_name(tiny_gpt2):
    directory = tiny_model_dir("tiny-gpt2")
    model = load_model(directory, device="cpu")
    tokens = model.to_tokens("same weights")
    with torch.no_grad():
        assert torch.equal(model(tokens), tiny_gpt2(tokens))


def test_offline_hub_name_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match="pass a local HF or GGUF directory"):
        load_model("some-org/some-model-not-cached")
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize(
    ("spec", "message"),
    [("./no/such/dir", "does not exist"), ("missing.gguf", "does not exist")],
)
def test_missing_paths_are_named(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec)


def test_directory_without_weights_is_rejected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model(tmp_path)


def test_unknown_dtype_lists_the_choices():
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("float8")


def test_info_command_prints_the_shape(capsys):
    assert main(["info", "--model", "tiny-llama", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "n_kv_heads   2" in out and "n_layers     3" in out and "n_ctx        1024" in out


def test_info_command_reports_bad_model_in_one_line(capsys):
    assert main(["info", "--model", "./nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
