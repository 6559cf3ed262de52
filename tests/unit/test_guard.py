"""Per-molecule limits: a molecule that stalls, crashes or eats memory while being read costs its own row an
error, never the batch; the caller stays responsive. The helper runs the functions below (importable by a
spawned process) in place of RDKit's reading, so each failure is reproduced exactly."""
import os
import signal
import subprocess
import sys
import time

from chemlm_engine.guard import prepare_all
from chemlm_engine.molecules import PreparedSmiles, Standardization, prepare_smiles


def stalling(text, standardization):
    """Reads like RDKit, but 'STALL' takes forever, 'CRASH' kills the process, 'HUGE' allocates 64 GiB."""
    if text == "STALL":
        time.sleep(3600)
    if text == "CRASH":
        os._exit(1)
    if text == "HUGE":
        bytearray(64 << 30)
    return prepare_smiles(text, standardization)


def test_a_stalling_molecule_costs_its_own_row_only():
    texts = ["CCO", "c1ccccc1", "STALL", "CCN", "C1CC"] + ["CCC"] * 50
    started = time.monotonic()
    out = prepare_all(texts, Standardization(), seconds=1.0, prepare=stalling)
    assert time.monotonic() - started < 120  # the stalled molecule (an hour) is abandoned after its 1 s
    assert [p.input for p in out] == texts
    assert "longer than 1 s" in out[2].error and out[2].smiles is None
    assert [p.smiles for p in out[:2]] == ["CCO", "c1ccccc1"] and out[3].smiles == "CCN" and out[4].error
    assert all(p.smiles == "CCC" for p in out[5:])


def test_a_crash_or_a_memory_blow_up_costs_its_own_row_only():
    out = prepare_all(["CCO", "CRASH", "CCN", "HUGE", "CCC"], Standardization(), seconds=5.0, prepare=stalling)
    assert [p.smiles for p in out] == ["CCO", None, "CCN", None, "CCC"]
    assert "crashed" in out[1].error and "GiB" in out[3].error
    assert prepare_all(["c1ccccc1O"]) == [prepare_smiles("c1ccccc1O")]  # the next batch reads as usual


def _ends_on_sigterm(setup: str, call: str, wait: float) -> None:
    """Run ``call`` (a prepare_all call stuck on a STALL molecule) in a child; SIGTERM after ``wait`` s ends it."""
    script = ("import sys, signal\nsignal.signal(signal.SIGTERM, signal.default_int_handler)\n"
              "from chemlm_engine import guard\nfrom tests.unit.test_guard import stalling\n"
              f"{setup}\nprint('reading', flush=True)\n"
              f"try:\n    {call}\n"
              "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n    sys.exit(3)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert child.stdout.readline().strip() == "reading"
    time.sleep(wait)  # inside the wait for the stalled molecule
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=10) == 3 and child.stdout.read().strip() == "interrupted"


def test_sigterm_ends_the_command_while_a_molecule_stalls():
    _ends_on_sigterm("", "guard.prepare_all(['CCO', 'STALL'], prepare=stalling)", wait=2)


def test_everything_else_is_exactly_prepare_smiles():
    texts = ["CCO", "", None, "C C O", "CC(=O)[O-].[Na+]", "[CH2+3]C", "C" * 6000, "c1ccccc1"]
    assert prepare_all(texts) == [prepare_smiles(t) for t in texts]
    assert prepare_all([]) == [] and isinstance(prepare_all(["CCO"])[0], PreparedSmiles)


def test_a_slow_helper_start_is_not_counted_against_a_molecule():
    from tests.unit import slow_to_import  # noqa: F401 - imported here too: only the helper's import is slow

    texts = ["CCO", "CCN", "c1ccccc1"]
    out = prepare_all(texts, Standardization(), seconds=1.0, prepare=slow_to_import.prepare)
    assert [p.smiles for p in out] == ["CCO", "CCN", "c1ccccc1"]  # 3 s of start-up, 1 s per molecule: no error


def test_batches_one_after_another_stay_in_step():
    for size in (1, 511, 512, 513, 3):  # a batch ending exactly on a full group left a stray message before
        texts = ["CCO"] * size
        assert [p.smiles for p in prepare_all(texts)] == texts


def test_a_large_batch_is_shared_among_one_helper_per_core_each_with_its_limits(monkeypatch):
    """Two cores: two helpers read a contiguous half each; a molecule stalling in the second half (read while
    this thread waits on the first) still costs only its own row, and the rows stay in order."""
    from chemlm_engine import guard

    monkeypatch.setattr(guard.os, "sched_getaffinity", lambda _: {0, 1})
    texts = ["CCO"] * 150 + ["CCN"] * 50 + ["STALL"] + ["c1ccccc1"] * 99
    out = prepare_all(texts, Standardization(), seconds=1.0, prepare=stalling)
    assert [p.input for p in out] == texts and sorted(guard._HELPERS) == [0, 1]
    assert "longer than 1 s" in out[200].error
    assert all(p.error is None for i, p in enumerate(out) if i != 200)
    assert prepare_all(["CCO"] * 100) == [prepare_smiles("CCO")] * 100  # small: one helper, as before


def test_sigterm_ends_a_shared_batch_while_another_helper_stalls():
    """Two helpers: this thread has read the first half and waits on the second helper's stalled molecule."""
    _ends_on_sigterm("guard.os.sched_getaffinity = lambda _: {0, 1}",
                     "guard.prepare_all(['CCO'] * 200 + ['STALL'] * 56, prepare=stalling)", wait=4)
