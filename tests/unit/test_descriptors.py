"""Descriptor cost bounded by molecule size: the size-limited descriptors are skipped above LARGE_MOLECULE."""
import numpy as np
from rdkit import Chem
from rdkit.Chem import Descriptors

from chemlm_engine.descriptors import DESCRIPTOR_NAMES, LARGE_MOLECULE, SIZE_LIMITED, describe, size_warning


def _rdkit(smiles: str) -> np.ndarray:
    values = Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(smiles))
    out = np.array([values[name] for name in DESCRIPTOR_NAMES], dtype=float)
    out[~np.isfinite(out)] = np.nan
    return out


def test_a_molecule_at_the_limit_gets_every_descriptor_and_one_above_misses_only_the_size_limited():
    at_limit, above = "C" * LARGE_MOLECULE, "C" * (LARGE_MOLECULE + 1)
    values = describe([at_limit, above])
    np.testing.assert_array_equal(values[0], _rdkit(at_limit))
    limited = np.isin(DESCRIPTOR_NAMES, SIZE_LIMITED)
    assert np.isnan(values[1, limited]).all()
    np.testing.assert_array_equal(values[1, ~limited], _rdkit(above)[~limited])


def test_the_size_limited_set_holds_the_known_super_linear_descriptors_and_not_the_cheap_ones():
    for name in ("AvgIpc", "BCUT2D_MWHI", "BalabanJ", "BertzCT", "MaxAbsEStateIndex", "SPS"):
        assert name in SIZE_LIMITED
    for name in ("MolLogP", "TPSA", "MolWt", "NumHDonors", "fr_COO"):
        assert name in DESCRIPTOR_NAMES and name not in SIZE_LIMITED


def test_the_size_warning_names_the_size_and_the_limit():
    assert size_warning(LARGE_MOLECULE) is None
    note = size_warning(LARGE_MOLECULE + 80)
    assert f"{LARGE_MOLECULE + 80:,} heavy atoms" in note and str(LARGE_MOLECULE) in note


def test_the_helper_process_ends_when_its_parent_is_killed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = ("import os, time\nfrom chemlm_engine import descriptors as d\n"
              "d.os.sched_getaffinity = lambda _: {0, 1}\n"  # a helper even on one core
              "d.start_helpers()\nd._POOL.submit(int).result()\n"
              "print(next(iter(d._POOL._processes)), flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    helper = int(parent.stdout.readline())
    os.kill(helper, 0)  # alive while its parent lives
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(helper, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(helper, signal.SIGKILL)
    raise AssertionError("the helper outlived its killed parent")
