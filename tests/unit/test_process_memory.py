"""A long library stream keeps its resident memory flat: freed heap goes back to the system after each chunk, and
oneDNN's cache of compiled kernels is capped."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chemlm_engine import library


def _resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.mark.skipif(library._MALLOC_TRIM is None, reason="glibc's malloc_trim: Linux")
def test_memory_freed_under_a_live_allocation_goes_back_to_the_system():
    blocks = [bytes(1000) for _ in range(200_000)]  # ~200 MB from malloc, not Python's small-object arenas
    pinned = [bytes(1000) for _ in range(10)]  # above them in the heap: glibc cannot shrink it from the top
    del blocks
    before = _resident_mb()
    library._return_freed_memory()
    assert before - _resident_mb() > 100
    assert len(pinned) == 10


def test_no_c_library_symbols_means_nothing_to_hand_back(monkeypatch):
    def windows_cdll(name):  # as ctypes.CDLL(None) does on Windows
        raise TypeError("expected str, bytes or os.PathLike object, not NoneType")

    monkeypatch.setattr(library.ctypes, "CDLL", windows_cdll)
    assert library._malloc_trim() is None
    monkeypatch.setattr(library, "_MALLOC_TRIM", None)
    library._return_freed_memory()  # does nothing rather than fail


@pytest.mark.parametrize("preset, expected", [(None, "64"), ("7", "7")])
def test_the_engine_caps_onednn_kernel_cache_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if preset is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = preset
    code = "import os, chemlm_engine.inference; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == expected
