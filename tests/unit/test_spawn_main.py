"""Processes the engine spawns never re-run the parent's ``__main__`` script: inside a Streamlit script run
``__main__`` is the page itself, which a spawned child would execute again in bare mode (issue #26, item 12)."""
import sys
import types

from chemlm_engine import descriptors
from chemlm_engine.guard import prepare_all


def test_spawned_helpers_do_not_import_the_page_running_as_main(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    page = tmp_path / "page.py"
    page.write_text(f"open({str(marker)!r}, 'a').write('page ran in a child\\n')\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(page)  # what Streamlit's ScriptRunner installs while a page runs
    monkeypatch.setitem(sys.modules, "__main__", fake)
    monkeypatch.setattr(descriptors, "_POOL", None)
    monkeypatch.setattr(descriptors.os, "sched_getaffinity", lambda _: {0, 1})  # a helper even on one core
    from chemlm_engine import guard

    monkeypatch.setattr(guard, "_HELPERS", {})
    assert prepare_all(["CCO"])[0].smiles == "CCO"  # the parsing helper, spawned now
    assert descriptors._compute(["CCO"] * 300).shape[0] == 300  # the descriptor helpers, spawned now
    descriptors._reset_pool()
    assert sys.modules["__main__"] is fake  # restored
    assert not marker.exists()


def test_a_spawned_child_is_told_to_import_no_main_module():
    """A forkserver's job has the engine imported: a main module named to it would be executed a second time."""
    import multiprocessing.spawn

    from chemlm_engine.guard import engine_main

    with engine_main():
        told = multiprocessing.spawn.get_preparation_data("job")
    assert not {"init_main_from_name", "init_main_from_path"} & told.keys()
