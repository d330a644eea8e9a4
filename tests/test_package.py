import subprocess
import sys

import pytest

import dps_lens


def test_public_api_resolves_lazily():
    assert dps_lens.__all__ == ["__version__", *dps_lens._EXPORTS]  # one list, in one order
    for name in dps_lens.__all__:
        assert getattr(dps_lens, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dps_lens.nope  # noqa: B018


def test_import_does_not_load_torch():
    code = "import sys, dps_lens; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
