"""The app's pages through Streamlit's AppTest (no browser)."""
import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from rdkit import Chem
from streamlit.testing.v1 import AppTest

from chemlm_engine.spec import METHODS, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import Kinds, RunStore, Tables
from views import kept as kept_module
from views.kept import saved

APP = str(Path(__file__).resolve().parents[2] / "app.py")
TITLES = {"views/home.py": "ChemLM Studio", "views/train.py": "Train", "views/predict.py": "Predict logD",
          "views/curriculum.py": "Curriculum learning", "views/uncertainty.py": "Active learning",
          "views/compare.py": "Compare methods", "views/influence.py": "Influence-based data selection",
          "views/search.py": "Hyperparameter search"}
PAGES = list(TITLES)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture()
def finished_run(home, tiny_backbone) -> str:
    spec = JobSpec(data=DataSpec(subset=80), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=1, batch_size=16))
    return run_job(spec, RunStore(home=home))


def widget(at: AppTest, kind: str, label: str):
    """The widget of ``kind`` (``"radio"``, ``"button"`` …) whose label starts with ``label``."""
    return next(w for w in getattr(at, kind) if w.label.startswith(label))


def use_backbone(at: AppTest, folder) -> None:
    widget(at, "radio", "Backbone").set_value("Local folder or hub id").run()
    widget(at, "text_input", "Folder path or hub id").set_value(str(folder)).run()


def _app(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if page != "views/home.py":
        at.switch_page(page).run()
    return at


def follow(at: AppTest, label: str, page: str) -> AppTest:
    """Click the page link ``label`` to ``page`` the way a browser does: the link's page with its query."""
    link = next(e.proto for e in at.get("page_link") if e.proto.label == label and e.proto.page == page)
    at.query_params.update(urllib.parse.parse_qsl(link.query_string))
    return at.switch_page(f"views/{link.page}.py").run()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exceptions(page, home, finished_run):
    at = _app(page)
    assert not at.exception
    assert at.title[0].value == TITLES[page]


def test_a_link_carries_its_choice_once_and_says_when_its_run_is_gone(home, finished_run):
    """What "Predict with this run" puts in the URL becomes Predict's choice, and leaves the URL, so that the user's
    own choice is not overridden on the next rerun. A link to a run deleted since says so (no silent other model)."""
    at = follow(_app("views/train.py"), "Predict with this run", "predict")
    assert not at.exception and at.query_params == {}
    run = RunStore(home=home).get_run(finished_run)
    assert widget(at, "selectbox", "Model").value == run.model_path  # not the embedded default
    at.query_params.update(predict="no-such-run", open="no-such-run", preset="no-such-preset")
    at.switch_page("views/train.py").run()
    assert not at.exception and at.query_params == {}
    assert [w.value for w in at.warning][:2] == [
        "Run no-such-run from this link no longer exists (or has no model): pick the model to predict with below.",
        "Run no-such-run from this link no longer exists."]


def test_predict_with_a_run_that_has_not_finished_says_when_it_will_be_offered(home, finished_run):
    store = RunStore(home=home)
    queued = store.create_run(JobSpec().to_dict(), "baseline", "waiting")
    at = _app("views/train.py")
    widget(at, "selectbox", "Run").set_value(queued).run()
    link = next(e.proto for e in at.get("page_link") if e.proto.label == "Predict with this run")
    assert link.disabled and link.help == "Available when the run has finished (it is queued)."
    widget(at, "selectbox", "Run").set_value(finished_run).run()
    link = next(e.proto for e in at.get("page_link") if e.proto.label == "Predict with this run")
    assert not link.disabled and not link.help


def test_predict_gets_its_choices_back_when_streamlit_drops_its_widgets_state(home, finished_run):
    """Streamlit may drop a widget's state while another page shows (in the browser the sidebar's timed rerun raced
    it): the model and the pasted text come back from their kept copies; a kept model deleted since is dropped."""
    at = _app("views/predict.py")
    model = RunStore(home=home).get_run(finished_run).model_path
    widget(at, "selectbox", "Model").set_value(model).run()
    at.text_area[0].set_value("CCO ethanol").run()
    at.switch_page("views/home.py").run()
    for key in ("predict_folder", "predict_text"):  # gone, as Streamlit's cleanup leaves them
        if key in at.session_state:
            del at.session_state[key]
    at.switch_page("views/predict.py").run()
    assert widget(at, "selectbox", "Model").value == model and at.text_area[0].value == "CCO ethanol"
    RunStore(home=home).delete(finished_run)  # on the Train page, say
    at.run()
    assert not at.exception and widget(at, "selectbox", "Model").value != model
    assert saved("predict_folder") not in at.session_state


def test_predict_keeps_its_results_with_mc_dropout_switched_off_across_pages(home, finished_run):
    """The checkbox was the one setting not kept: back from another page it was ticked again, so the setup looked
    new and the results (and their "Why?") were dropped without a word."""
    at = _app("views/predict.py")
    widget(at, "selectbox", "Model").set_value(RunStore(home=home).get_run(finished_run).model_path).run()
    at.text_area[0].set_value("CCO ethanol").run()
    widget(at, "checkbox", "MC-dropout").set_value(False).run()
    widget(at, "button", "Predict").click().run()
    assert "uncertainty" not in at.dataframe[0].value  # no MC-dropout passes
    at.switch_page("views/home.py").run()
    for key in ("predict_folder", "predict_text", "predict_mc"):  # gone, as Streamlit's cleanup leaves them
        if key in at.session_state:
            del at.session_state[key]
    at.switch_page("views/predict.py").run()
    assert not at.exception and widget(at, "checkbox", "MC-dropout").value is False
    assert at.dataframe[0].value["name"].tolist() == ["ethanol"]  # the results are still shown


class _Recording(dict):
    """A session state that records its assignments: Streamlit sends a widget's assigned value to the browser."""

    def __init__(self):
        super().__init__()
        self.assigned: list[str] = []

    def __setitem__(self, key, value):
        self.assigned.append(key)
        super().__setitem__(key, value)


def test_a_kept_widget_coming_back_is_sent_its_value_and_one_that_stays_is_left_alone(monkeypatch):
    """A click may come back with a widget's stale state while the browser mounts the widget afresh with its default
    (the browser test saw the pasted text empty after Upload a file -> Paste SMILES, the server's state intact): a
    widget the last run did not show is handed its kept value again; one that stayed is not (that would overwrite
    what is being typed)."""
    state = _Recording()
    monkeypatch.setattr(kept_module.st, "session_state", state)

    def run(shown: bool) -> None:
        kept_module.new_run()
        if shown:
            kept_module.kept("predict_text")

    run(shown=True)
    state["predict_text"] = "CCO ethanol"  # typed, then committed: the widget's callback keeps it
    kept_module.kept("predict_text")["on_change"]()
    state.assigned.clear()
    run(shown=True)
    assert "predict_text" not in state.assigned
    run(shown=False)  # upload mode: no text area; the state comes back stale with the next click
    run(shown=True)
    assert "predict_text" in state.assigned and state["predict_text"] == "CCO ethanol"


def test_sidebar_shows_device_store_and_jobs(home):
    at = _app("views/home.py")
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Device" in captions and str(home) in captions and "Jobs" in captions


@pytest.mark.parametrize("page", ["views/predict.py", "views/influence.py", "views/search.py"])
def test_the_jobs_panel_is_drawn_on_a_page_that_ends_early(home, page):  # st.stop: nothing after it is drawn
    RunStore(home=home).create_run(JobSpec().to_dict(), "baseline", "waiting")  # queued: no worker in AppTest
    at = _app(page)
    assert "**Jobs:** 1 active" in [c.value for c in at.sidebar.caption]
    assert [bar.proto.text for bar in at.sidebar.get("progress")] == ["waiting · queued"]  # named as its card names it


def test_train_page_runs_a_job_to_finished_and_shows_its_metrics(home, tiny_backbone):
    at = _app("views/train.py")
    use_backbone(at, tiny_backbone)
    widget(at, "number_input", "Random subset").set_value(100)
    widget(at, "number_input", "Epochs").set_value(2)
    at.run()
    assert any("This launch" in i.value and "1 fit, 160 molecule-epochs" in i.value for i in at.info)
    widget(at, "button", "Start training").click().run()
    assert not at.exception
    assert "You queued this run" in at.success[0].value
    assert "**Jobs:** 1 active" in [c.value for c in at.sidebar.caption]  # the panel, drawn first, says it at once
    store = RunStore(home=home)
    run_id = store.runs()[0].id
    deadline = time.time() + 240
    while store.get_run(run_id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert store.get_run(run_id).status == "finished"
    at.run()
    assert not at.exception
    detail = [d.value for d in at.dataframe]
    assert any("R²" in df.columns and df["R²"].notna().all() for df in detail)
    per_epoch = next(df for df in detail if {"train_mse", "val_mse", "val_r2"} <= set(df.columns))
    assert per_epoch["learning rate at epoch end"].iloc[-1] < per_epoch["learning rate at epoch end"].iloc[0]
    overview = next(df for df in detail if "learning_rate" in df.columns)
    assert overview[["subset", "epochs", "learning_rate"]].iloc[0].tolist() == ["100", "2", "1e-04"]
    # which data and backbone: runs on other files or backbones tell apart (the tiny backbone is named)
    table = next(d for d in at.dataframe if "learning_rate" in d.value.columns)
    assert {"dataset", "backbone"} <= set(table.proto.column_order)
    assert overview["backbone"].iloc[0] == tiny_backbone.name and overview["name"].iloc[0] == tiny_backbone.name


def test_a_run_launched_on_an_uploaded_file_is_named_after_the_file_and_a_backbone_not_the_default():
    def launched() -> None:
        import streamlit as st

        from chemlm_engine.spec import DEFAULT_BACKBONE, DataSpec
        from views.common import UPLOAD_NAMES
        from views.forms import run_name

        st.session_state[UPLOAD_NAMES] = {"/runs/uploads/ab12.csv": "train_mine.csv"}  # as the data form records it
        st.markdown(run_name(DataSpec(source="/runs/uploads/ab12.csv"), "/tmp/qa-tiny-backbone"))
        st.markdown(run_name(DataSpec(), DEFAULT_BACKBONE) or "(no name)")

    assert [m.value for m in AppTest.from_function(launched).run().markdown] == [
        "train_mine.csv · qa-tiny-backbone", "(no name)"]


def test_what_a_click_queued_stays_in_its_runs_card_while_the_run_is_active(home, tiny_backbone, monkeypatch):
    # on a thread: the page's manager is the one that cancels it below, and no job process has to start first (a
    # forkserver importing the engine under a loaded CI took over the 120 s this test waits for the cancel)
    monkeypatch.setenv("CHEMLM_EXECUTOR", "thread")
    earlier = RunStore(home=home).create_run(JobSpec().to_dict(), "baseline", "earlier")
    RunStore(home=home).cancel(earlier)
    at = _app("views/train.py")
    use_backbone(at, tiny_backbone)
    widget(at, "number_input", "Epochs").set_value(500).run()  # long enough to be active throughout
    assert at.selectbox(key="detail-run").value == earlier
    widget(at, "button", "Start training").click().run()
    run_id = RunStore(home=home).runs()[0].id
    said = "You queued this run: it trains in the background, and this card follows it."
    assert [s.value for s in at.success] == [said]
    assert at.selectbox(key="detail-run").value == run_id  # the run detail follows the new run too
    at.run()  # a rerun the click did not cause (the live card reruns the page when the run starts)
    assert [s.value for s in at.success] == [said]
    from views.common import get_manager

    get_manager(str(home)).cancel(run_id)
    assert get_manager(str(home)).wait(run_id, timeout=120).status == "cancelled"
    at.run()  # an ended run has no card, and nothing says it was queued any more
    assert not at.success


def test_predict_page_marks_a_molecule_the_model_trained_on(home, finished_run):
    from chemlm_engine.predict.domain import TrainingReference

    folder = RunStore(home=home).get_run(finished_run).model_path
    trained_on = TrainingReference.load(folder).smiles[0]
    at = _app("views/predict.py")
    at.selectbox[0].set_value(folder).run()
    at.text_area[0].set_value(f"{trained_on} seen\nCC(C)(C)c1ccc(O)cc1 new").run()
    widget(at, "button", "Predict").click().run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["seen", "domain"] == "✓ training molecule" and table.loc["new", "domain"] != "✓ training molecule"


def test_predict_page_predicts_pasted_smiles_and_reports_the_invalid_one(home, finished_run):
    at = _app("views/predict.py")
    at.selectbox[0].set_value(RunStore(home=home).get_run(finished_run).model_path).run()  # values are folders
    at.text_area[0].set_value("CCO ethanol\n\nC1CC broken\nc1ccccc1O phenol").run()
    widget(at, "button", "Predict").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Invalid"] == "1"
    table, bad = at.dataframe[0].value, at.dataframe[1].value
    assert table["row"].tolist() == [1, 4] and bad["row"].tolist() == [3]  # lines of the box, the blank one skipped
    assert table["prediction"].notna().sum() == 2 and table["uncertainty"].notna().sum() == 2
    assert table["similarity"].notna().sum() == 2 and set(table["domain"]) <= {"✓ in domain", "⚠ outside"}
    assert bad["input"].tolist() == ["C1CC"] and bad["name"].tolist() == ["broken"]
    assert "C1CC" in bad["error"].iloc[0] or "parse" in bad["error"].iloc[0].lower()
    widget(at, "selectbox", "Explain a result row").set_value(0).run()  # "Why?" for ethanol
    assert not at.exception
    cards = [m.value for m in at.markdown if m.value.startswith("contribution **")]
    assert len(cards) == 15 and len(at.get("image")) >= 16  # 5 pushing up, 5 down, 5 nearest, the atom map
    at.switch_page("views/train.py").run()
    at.switch_page("views/predict.py").run()
    assert widget(at, "selectbox", "Explain a result row").value == 0  # the explanation is still there
    at.text_area[0].set_value("CCCO propanol").run()  # a new input: the old results go
    assert not at.metric and not at.dataframe
    widget(at, "button", "Predict").click().run()  # and "Why?" does not explain the new row 0 under the old label
    assert widget(at, "selectbox", "Explain a result row").value is None
    assert not [m for m in at.markdown if m.value.startswith("contribution **")]


def test_a_long_result_draws_the_structures_of_its_first_rows_only(home, finished_run):
    """Drawing every row's two pictures took 40 s on every rerun of the page for 4,200 rows."""
    at = _app("views/predict.py")
    at.selectbox[0].set_value(RunStore(home=home).get_run(finished_run).model_path).run()
    molecules = ["CCO", "c1ccccc1O", "CCN"]  # repeated rows: each molecule is predicted once
    at.text_area[0].set_value("\n".join(f"{molecules[i % 3]} m{i}" for i in range(505))).run()
    widget(at, "button", "Predict").click().run()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 505 and table["prediction"].notna().all()
    assert table["structure"].head(500).notna().all() and table["structure"].tail(5).isna().all()
    assert table["nearest"].head(500).notna().all() and table["nearest"].tail(5).isna().all()
    assert any("drawn for the first 500 rows" in c.value for c in at.caption)


def test_curriculum_page_shows_bins_pacing_and_launches_a_pair(home, tiny_backbone):
    at = _app("views/curriculum.py")
    bins = at.dataframe[0].value
    assert len(bins) == 20 and bins["cumulative_frequency"].iloc[-1] == 4200
    use_backbone(at, tiny_backbone)
    assert widget(at, "number_input", "Epochs").min == 2  # one epoch admits every molecule at once
    widget(at, "number_input", "Epochs").set_value(2).run()
    assert any("2 fits" in i.value for i in at.info)
    widget(at, "button", "Launch curriculum").click().run()
    widget(at, "button", "Launch curriculum").click().run()  # a double click queues the pair once
    assert not at.exception and "You queued a curriculum run and a baseline" in at.success[0].value
    assert all("taken as a double click, nothing more queued" in s.value for s in at.success)  # said, not silent
    store = RunStore(home=home)
    runs = store.runs()
    assert sorted(r.method for r in runs) == ["baseline", "curriculum"]
    assert runs[0].name == runs[1].name and runs[0].spec["train"] == runs[1].spec["train"]
    assert runs[0].name.endswith(f" · {tiny_backbone.name}")  # told apart from the default backbone's pairs
    from views.common import get_manager

    for run in runs:  # full-size runs are not needed here: cancel them (through the store: any manager can)
        get_manager(str(home)).cancel(run.id)
    for run in runs:  # a queued one never starts; a running one stops at its next progress report, unless the
        # tiny model's one epoch ended first (seen once in CI): either way nothing is left running
        assert get_manager(str(home)).wait(run.id, timeout=120).status in ("cancelled", "finished")


def test_uncertainty_page_shows_a_finished_sweep(home, tiny_backbone):
    spec = JobSpec(method="uncertainty", data=DataSpec(subset=120),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16), train=TrainConfig(epochs=1),
                   options={"initial_size": 30, "sweep": [10, 20], "passes": 3})
    run_id = run_job(spec, RunStore(home=home))
    at = _app("views/uncertainty.py")
    assert not at.exception
    assert at.selectbox[0].value == run_id
    tables = [d.value for d in at.dataframe]
    assert any(list(t.columns[:2]) == ["n", "strategy"] and len(t) == 4 for t in tables)
    listed = next(t for t in tables if "structure" in t.columns)
    assert len(listed) == 20 and "score" not in listed and listed["uncertainty"].is_monotonic_decreasing  # once
    assert any("Spearman" in p.proto.spec for p in at.get("plotly_chart"))


def test_active_learning_page_shows_isal_against_both_controls_and_what_to_measure_next(home, tiny_backbone):
    spec = JobSpec(method="isal", data=DataSpec(subset=120),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16), train=TrainConfig(epochs=1),
                   options={"initial_size": 30, "sweep": [10, 20], "passes": 3})
    run_job(spec, RunStore(home=home))
    at = _app("views/uncertainty.py")
    assert not at.exception
    assert "N-sweep: ISAL vs uncertainty sampling vs random" in [h.value for h in at.subheader]
    tables = [d.value for d in at.dataframe]
    assert any(list(t.columns[:2]) == ["n", "strategy"] and len(t) == 6 for t in tables)
    listed = next(t for t in tables if "structure" in t.columns)
    assert len(listed) == 20 and {"prediction", "uncertainty", "label"} <= set(listed.columns)
    assert listed["score"].is_monotonic_decreasing  # in the order ISAL ranks them
    # the pool's labels were known: a simulation's picks, not molecules to measure next
    assert "Acquired in the simulation (20): the pool's labels were known" in [h.value for h in at.subheader]
    assert any(b.label.startswith("Download the acquired molecules") for b in at.get("download_button"))
    assert any(c.value.startswith("ISAL had a lower test MSE than random at") and "One run on one seed" in c.value
               for c in at.caption)  # and the sweep read out


def test_active_learning_and_influence_open_on_the_runs_worth_reading_first(home):
    store = RunStore(home=home)

    def finished(method: str, options: dict) -> str:
        run = store.create_run(JobSpec(method=method, options=options).to_dict(), method, method)
        store.start(run, {})
        store.finish(run, {})
        return run

    sampled = finished("uncertainty", {"strategy": "uncertainty"})
    finished("uncertainty", {"strategy": "random"})  # the newest: the suite queues the control after
    assert _app("views/uncertainty.py").selectbox[0].value == sampled
    baseline = finished("baseline", {})
    finished("lora", {})  # newer, and no plain fine-tune
    at = _app("views/influence.py")
    assert widget(at, "selectbox", "Base run").value == baseline
    lora = next(r.id for r in store.runs() if r.method == "lora")
    widget(at, "selectbox", "Base run").set_value(lora).run()
    finished("baseline", {})  # another run finishes meanwhile: the choice stays
    at.run()
    assert widget(at, "selectbox", "Base run").value == lora
    assert widget(at, "toggle", "Quick try").label.startswith("Quick try (2 k values")  # not "300 molecules" here


def test_an_influence_sweep_whose_every_k_was_the_whole_pool_says_it_cannot_compare(home):
    store = RunStore(home=home)

    def influence_run(ks: list[int]) -> list[str]:  # a finished run on a pool of 3, its sweep at ``ks``; the warnings
        run = store.create_run(JobSpec(method="influence").to_dict(), "influence", "small pool")
        store.start(run, {})
        store.add_molecules(run, Kinds.INFLUENCE, pd.DataFrame(
            {"smiles": ["CCO", "CCN", "CCC"], "label": [0.1, 0.2, 1.0], "score": [0.3, 0.1, -0.2], "rank": [1, 2, 3],
             "self_influence": [0.1, 0.2, 0.3], "suspect": [False] * 3, "corrupted": [False] * 3}))
        store.add_table(run, Tables.SWEEP, [{"k": k, "selection": how, "val_mse": 1.0, "test_mse": 2.0, "test_r2": 0.1}
                                            for k in ks for how in ("influence", "random", "all")])
        store.finish(run, {"n_pool": 3, "n_suspects": 0})
        return [w.value for w in _app("views/influence.py").warning]  # the newest run is the one shown

    said = influence_run([3])
    assert any(w.startswith("Every k was the whole pool of 3 molecules") for w in said), said
    assert not any("Every k" in w for w in influence_run([2, 3]))  # k = 2 of 3: there is something to compare
    captions = [c.value for c in _app("views/influence.py").caption]  # read out, one seed, the whole pool left out
    assert any(c.startswith("influence top-k had a lower test MSE than random k at no size (k = 2: 2 vs 2).")
               and "k = the whole pool is left out of this reading" in c for c in captions), captions


def test_active_learning_page_lists_a_chemists_unlabelled_candidates_to_measure(home, tiny_backbone, tmp_path, lipo):
    pool = tmp_path / "candidates.smi"  # a SMILES file, as a chemist's list of candidates often is
    pool.write_text("".join(f"{s} cand-{i}\n" for i, s in enumerate(lipo.smiles[-30:])) + "C1CC cand-broken\n")
    spec = JobSpec(method="isal", data=DataSpec(subset=120),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16), train=TrainConfig(epochs=1),
                   options={"pool": str(pool), "acquire": 8, "passes": 3})
    run_id = run_job(spec, RunStore(home=home))
    at = _app("views/uncertainty.py")
    assert not at.exception
    assert any("Your candidates, ranked by a model trained on all" in c.value for c in at.caption)
    listed = next(d.value for d in at.dataframe if "structure" in d.value.columns)
    assert len(listed) == 8 and "label" not in listed and listed["score"].is_monotonic_decreasing  # none measured
    chosen = {f"cand-{i}": s for i, s in enumerate(lipo.smiles[-30:])}
    assert all(name in chosen for name in listed["name"])  # each with the chemist's own ID
    assert any("Your pool file: 31 rows: 1 invalid SMILES" in c.value and "30 without a label, kept as candidates"
               in c.value for c in at.caption)
    # three of the last 30 Lipophilicity molecules are in the job's 120: said, not left out silently
    assert any("; 3 already in the job's own data (training, validation or test), left out" in c.value
               for c in at.caption)
    assert not any(i.value.startswith("Acquire") for i in at.info)
    assert "Measure these next (8 selected)" in [h.value for h in at.subheader]
    assert any(b.label.startswith("Download the molecules to measure next") for b in at.get("download_button"))
    RunStore(home=home).set_info(run_id, acquire_note="50 asked for, but the pool has 30 molecules: all of them "
                                                      "are acquired")  # as the job records it (engine test)
    assert "Acquire: 50 asked for, but the pool has 30 molecules: all of them are acquired." in [
        i.value for i in at.run().info]


@pytest.mark.ray
def test_search_page_shows_the_trials_and_opens_the_best_one(home, tiny_backbone, monkeypatch):
    monkeypatch.setenv("CHEMLM_EXECUTOR", "thread")  # the page's manager cancels the refit below, at once
    spec = JobSpec(method="search", data=DataSpec(subset=80), train=TrainConfig(epochs=2, batch_size=16),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   options={"num_samples": 2, "cpus_per_trial": 1})
    search = RunStore(home=home).get_run(run_job(spec, RunStore(home=home)))
    assert search.status == "finished", search.error
    refit = search.info["refit_spec"]
    hours = {**refit, "train": {**refit["train"], "epochs": 50_000}}  # still running when cancelled below
    RunStore(home=home).set_info(search.id, refit_spec=hours)
    at = _app("views/search.py")
    assert not at.exception
    trials = next(d.value for d in at.dataframe if "val_mse" in d.value.columns)
    assert len(trials) == 2 and trials["val_mse"].is_monotonic_increasing
    assert list(trials.columns[:5]) == ["run", "status", "epochs", "val_r2", "val_mse"]  # before the settings
    assert trials["run"].iloc[0] == search.metrics["best_run_id"]
    assert any("Best on validation" in s.value for s in at.success)
    next(b for b in at.button if b.label.startswith("Train it on training + validation")).click().run()
    queued = next(r for r in RunStore(home=home).runs() if r.spec["options"].get("train_on_val"))
    assert queued.spec["train"]["epochs"] == 50_000
    # the refit, a baseline run, has its live card on this page (which otherwise follows searches), with what it is
    assert any("You queued the best recipe for 50000 epochs" in s.value for s in at.success)
    from views.common import get_manager

    page_manager = get_manager(str(home), "thread", None)  # the page's own (cached by its arguments as passed)
    assert queued.id in page_manager.active()  # so the cancel is its event, at the next batch
    page_manager.cancel(queued.id)
    assert page_manager.wait(queued.id, timeout=120).status == "cancelled"
    # the refit is named after its search, and said on the page once it has ended (however soon that was)
    assert queued.name == f"refit of search {search.id}"
    at.run()
    assert any(m.value.startswith(f"**Refit on training + validation:** run {queued.id} · cancelled")
               for m in at.markdown), [m.value for m in at.markdown]
    at = follow(at, "Open the best trial's run", "train")
    assert at.title[0].value == "Train" and at.selectbox(key="detail-run").value == search.metrics["best_run_id"]


def test_train_disables_start_with_the_reason_for_untrainable_data(home):
    at = _app("views/train.py")
    offered = widget(at, "selectbox", "Method").options  # every training method; a library prediction is not one
    assert "deep ensemble (conformal intervals)" in offered and len(offered) == len(METHODS) - 1
    assert not any("library prediction" in label for label in offered)
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    widget(at, "number_input", "Random subset").set_value(12).run()
    start = next(b for b in at.button if b.label == "Start training")
    assert start.disabled
    shown = [w.value.replace("\\", "") for w in at.warning]  # as rendered: user text is Markdown-escaped
    assert any("too few molecules" in w and "val 1 (needs 2)" in w for w in shown)


def test_train_offers_the_ensembles_a_student_can_distil(home, tiny_backbone):
    ensemble = run_job(JobSpec(method="ensemble", data=DataSpec(subset=200), options={"members": 2},
                               model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                               train=TrainConfig(epochs=1, batch_size=16)), RunStore(home=home))
    at = _app("views/train.py")
    use_backbone(at, tiny_backbone)
    widget(at, "number_input", "Random subset").set_value(200)  # the teacher's own data and split
    widget(at, "number_input", "Epochs").set_value(1)
    widget(at, "selectbox", "Method").set_value("distill").run()
    teacher = widget(at, "selectbox", "Teacher ensemble")
    assert teacher.value.startswith("Embedded default") and ensemble in teacher.options[1]  # then the runs
    teacher.set_value(teacher.options[1]).run()
    assert not at.exception and next(b for b in at.button if b.label == "Start training").disabled is False
    widget(at, "button", "Start training").click().run()
    store = RunStore(home=home)
    queued = store.runs()[0]
    assert queued.method == "distill" and queued.spec["options"] == {"teacher": ensemble}
    deadline = time.time() + 240
    while store.get_run(queued.id).status in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert store.get_run(queued.id).status == "finished", store.get_run(queued.id).error


def test_compare_page_renders_grouped_results(tiny_backbone, tmp_path, monkeypatch):
    from tests.integration.test_compare import _tiny_runs

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "runs"))
    _tiny_runs(RunStore(home=tmp_path / "runs"), tiny_backbone)
    at = _app("views/compare.py")
    assert not at.exception
    summary = at.dataframe[0].value.set_index("config")
    assert len(summary) == 4 and sorted(summary["seeds"]) == [1, 1, 1, 2]  # CLS pooling is a configuration
    assert "best" not in " ".join(summary["verdict"]).lower()
    assert all(v == "reference" or "too few" in v for v in summary["verdict"])
    reference = summary["verdict"] == "reference"  # it is not paired with itself: no "0 pairs" beside its seeds
    assert summary.loc[reference, "pairs"].tolist() == ["–"] and summary.loc[~reference, "pairs"].isin(["0", "1"]).all()


def test_influence_from_the_cli_and_the_page(tiny_backbone, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from chemlm_engine.cli import app
    from chemlm_engine.store.runs import RunStore

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "runs"))
    base = run_job(JobSpec(data=DataSpec(subset=120), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=8),
                           train=TrainConfig(epochs=1)), RunStore(home=tmp_path / "runs"))
    result = CliRunner().invoke(app, ["influence", base, "--k", "5", "--solver", "cg", "--scope", "head",
                                      "--damping", "0.1", "--corrupt-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["n_pool"] == 28

    at = _app("views/influence.py")
    assert not at.exception
    tables = [d.value for d in at.dataframe]
    assert any(list(t.columns[:2]) == ["rank", "smiles"] and len(t) == 28 for t in tables)
    cards = [m.value for m in at.markdown if m.value.startswith("**#")]
    assert len(cards) == 30 and cards[0].startswith("**#1** · score")  # helpful, harmful, suspects: 10 each
    assert any("AUROC" in m.label for m in at.metric)
    assert any(m.label == "Suspected mislabelled" and m.value.endswith("of 28") for m in at.metric)
    sweep_charts = [json.loads(p.proto.spec) for p in at.get("plotly_chart") if '"selection"' in p.proto.spec]
    base = RunStore(home=tmp_path / "runs").runs()[0].metrics  # the influence run, newest first
    assert [c["layout"]["shapes"][0]["y0"] for c in sweep_charts] == [base["base_test_mse"], base["base_test_r2"]]
    assert any(c.value.startswith("Dashed: the model trained without any pool molecule") for c in at.caption)
    corrupted = int(RunStore(home=tmp_path / "runs").molecules(summary["run_id"], "influence")["corrupted"].sum())
    captions = " ".join(c.value for c in at.caption)
    assert f"For this check {corrupted} of the 28 pool labels were corrupted" in captions and corrupted > 0
    assert f"read from {int(base['n_reference'])} validation molecules only" in captions  # 12: a rough threshold
    assert "top-k retrain at k = 5, the k with the lowest validation MSE" in captions
    flag = next(m for m in at.metric if m.label == "Suspected mislabelled")
    assert f"validation split's {int(base['n_reference'])} molecules" in flag.help


def test_home_try_it_fills_predict_with_the_example_and_train_with_the_quick_preset(home):
    at = follow(_app("views/home.py"), "Try it", "predict")
    assert not at.exception and at.title[0].value == "Predict logD"
    assert at.text_area[0].value.startswith("CC(=O)Oc1ccccc1C(=O)O aspirin")
    at = follow(_app("views/home.py"), "Try it", "train")
    assert at.title[0].value == "Train" and widget(at, "toggle", "Quick try").value
    assert any("This launch" in i.value and "720 molecule-epochs" in i.value for i in at.info)  # 240 × 3
    at = follow(_app("views/home.py"), "Try it", "search")
    assert at.title[0].value == "Hyperparameter search" and widget(at, "toggle", "Quick try").value


def test_try_it_pastes_the_example_for_the_default_model_whatever_predict_was_left_with(home, finished_run):
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    at = _app("views/predict.py")
    at.selectbox(key="predict_folder").set_value(RunStore(home=home).get_run(finished_run).model_path).run()
    at.radio(key="predict_mode").set_value("Upload a file").run()
    at.switch_page("views/home.py").run()
    at = follow(at, "Try it", "predict")
    assert at.selectbox(key="predict_folder").value == DEFAULT_REGRESSOR
    assert at.radio(key="predict_mode").value == "Paste SMILES"
    assert at.text_area[0].value.startswith("CC(=O)Oc1ccccc1C(=O)O aspirin")


def test_user_text_in_messages_is_shown_as_text_not_markdown():
    from markdown_it import MarkdownIt

    from views.common import plain

    hostile = "backbone ![x](http://127.0.0.1:9/leak) [click](http://e.vil) **bold** $x^2$ <img src=x> `code`"
    html = MarkdownIt().render(plain(hostile))
    assert "<img" not in html and "<a " not in html and "<strong>" not in html and "<code>" not in html
    assert "![x](http://127.0.0.1:9/leak)" in html  # every character still shown


def _upload(data: bytes, name: str) -> io.BytesIO:
    upload = io.BytesIO(data)
    upload.name = name  # as Streamlit's UploadedFile has it
    return upload


def test_an_upload_too_big_for_the_page_offers_the_background_job_and_the_library_command():
    from views.uploads import PAGE_ROWS, upload_too_big

    small = b"smiles\n" + b"CCO\n" * PAGE_ROWS
    assert upload_too_big(_upload(small, "small.csv")) is None
    message = upload_too_big(_upload(small + b"CCN\n", "big.csv"))
    assert f"{PAGE_ROWS + 1:,} rows" in message and "chemlm predict --input" in message
    assert "in the background" in message
    assert "Parquet file is predicted as a library" in upload_too_big(_upload(b"PAR1", "tiny.parquet"))
    assert "compressed file is predicted as a library" in upload_too_big(_upload(b"\x1f\x8b", "lib.smi.gz"))
    record = Chem.MolToMolBlock(Chem.MolFromSmiles("CCO")).encode() + b"$$$$\n"  # an SD record: a dozen lines
    assert upload_too_big(_upload(record * PAGE_ROWS, "lib.sdf")) is None  # counted in records, not lines
    assert f"{PAGE_ROWS + 1:,} rows" in upload_too_big(_upload(record * (PAGE_ROWS + 1), "lib.sdf"))


def _pickers(header: bytes, value: str = "label") -> AppTest:
    """The column pickers for an uploaded file with this header (``value="label"``: Train's, "measured": Predict's)."""
    def form(header: bytes, value: str) -> None:
        import io

        from views.uploads import column_pickers

        upload = io.BytesIO(header + b"\n")
        upload.name = "mine.csv"
        column_pickers(upload, value=value)

    return AppTest.from_function(form, args=(header, value)).run()


def _training_file_columns(header: bytes) -> tuple[str, str]:
    """The SMILES and label columns Train pre-sets for an uploaded file with this header."""
    at = _pickers(header)
    return at.selectbox[0].value, at.selectbox[1].value


def test_no_smiles_column_is_guessed():
    """The CLI refuses a file without a known SMILES column; the pages ask, and a column of IDs is never read as
    SMILES on a guess (an ID "B" would be predicted as boron)."""
    for value in ("label", "measured"):
        at = _pickers(b"compound,value", value)
        assert at.selectbox[0].value is None and "Which column holds the SMILES" in at.warning[0].value
    headless = _pickers(b"CCO,ethanol", "measured")
    assert "Which column holds the SMILES" in headless.warning[0].value
    headless.selectbox[0].set_value("CCO").run()  # chosen: still said, since the first row would not be predicted
    assert "reads as a molecule: if the file has no header line" in headless.warning[0].value
    assert headless.selectbox[1].value == "(none)"  # the name column is never the SMILES column
    assert not _pickers(b"SMILES,value", "measured").warning


def test_train_presets_the_label_to_a_column_other_than_the_smiles():
    assert _training_file_columns(b"compound_id,SMILES,measured,batch") == ("SMILES", "measured")
    assert _training_file_columns(b"smiles,pIC50") == ("smiles", "pIC50")  # no known name: not the SMILES column
    assert _training_file_columns(b"value,smiles") == ("smiles", "value")
    assert _training_file_columns(b"smiles,id,logD") == ("smiles", "logD")
    # a chemist's own names: the ID before the value is not the label, a value named "logD7.4 (exp)" is
    assert _training_file_columns(b"ID,SMILES,logD7.4 (exp)") == ("SMILES", "logD7.4 (exp)")
    assert _training_file_columns(b"Compound ID,smiles,solubility") == ("smiles", "solubility")


def test_predict_presets_a_measured_column_named_as_chemists_name_it():
    at = _pickers(b"Compound ID,SMILES,logD7.4 (exp),Project", "measured")
    assert [box.value for box in at.selectbox] == ["SMILES", "Compound ID", "logD7.4 (exp)"]
    assert _pickers(b"Compound ID,SMILES,clogP", "measured").selectbox[2].value == "(none)"  # computed: not measured


def test_a_running_library_prediction_offers_no_live_curve_and_a_running_fit_does(home):
    store = RunStore(home=home)
    fit = store.create_run(JobSpec().to_dict(), "baseline", "a fit")
    library_spec = JobSpec(method="predict", options={"model": "assets/lipo-regressor", "source": "library.csv"})
    library = store.create_run(library_spec.to_dict(), "predict", "a library")
    for run_id in (fit, library):
        store.start(run_id, {})  # running in this (living) process: shown as running, never marked interrupted
    at = _app("views/compare.py")  # its jobs panel shows every method's running jobs
    assert not at.exception and {b.key for b in at.button if b.label == "Cancel"} == {f"cancel-{fit}",
                                                                                      f"cancel-{library}"}
    assert [t.key for t in at.toggle if t.label == "Live curve"] == [f"curve-{fit}"]
    at.button(key=f"cancel-{fit}").click().run()  # the job stops at its next batch; its card says so at once
    card = next(m.value for m in at.markdown if fit in m.value)
    assert "cancelling" in card and "cancelling" not in next(m.value for m in at.markdown if library in m.value)
    assert "elapsed" not in card and "elapsed" in next(m.value for m in at.markdown if library in m.value)  # no ETA
    store.cancel(fit)  # it stopped: its card goes, and the page says how it ended instead of dropping it silently
    at.run()
    assert [t.value for t in at.toast] == [f"a fit · {fit} · baseline: cancelled · cancelled by user"]
    assert {b.key for b in at.button if b.label == "Cancel"} == {f"cancel-{library}"}
    at.run()  # said once
    assert not at.toast
    store.fail(library, "ModelLoadError: no model in /tmp/x\nmore lines", "Traceback …")  # a failure says why
    at.run()
    said = [t.value for t in at.toast]
    assert said == [f"a library · {library} · predict: failed · ModelLoadError: no model in /tmp/x"]


def test_the_runs_table_lists_a_library_prediction_and_a_spec_this_version_cannot_read(home):
    store = RunStore(home=home)
    library_spec = JobSpec(method="predict", options={"model": "assets/lipo-regressor", "source": "library.csv"})
    library = store.create_run(library_spec.to_dict(), "predict", "a library")
    unreadable = store.create_run({"method": "predict", "options": {"chunk_rows": 0}}, "predict", "from elsewhere")
    store.set_info(library, model="assets/lipo-regressor", output="predictions.parquet")
    store.finish(library, {"rows": 3, "invalid": 1, "molecules_per_s": 50.0, "resumed_rows": 2})
    store.finish(unreadable, {})
    at = _app("views/train.py")
    assert not at.exception
    table = at.dataframe[0].value.set_index("id")
    assert '"source": "library.csv"' in table.loc[library, "options"]
    assert table.loc[library, ["split", "seed", "subset", "epochs", "learning_rate"]].tolist() == ["—"] * 5  # no recipe
    assert table.loc[unreadable, "options"].startswith("(not readable now")
    at.selectbox(key="detail-run").set_value(library).run()
    assert not at.dataframe[1:] and any("3 rows (1 invalid)" in c.value for c in at.caption)  # no training metrics
    assert any("(2 of them kept from a stopped run)" in c.value for c in at.caption)  # it continued a cancelled one


def test_a_second_click_on_a_library_that_is_being_predicted_queues_nothing(home):
    from chemlm_engine.library import active_twin

    store = RunStore(home=home)
    options = {"model": "assets/lipo-regressor", "source": str(store.save_upload(b"smiles\nCCO\n")),
               "smiles_column": "smiles"}
    queued = store.create_run(JobSpec(method="predict", options=options).to_dict(), "predict", "a library")
    assert active_twin(store.runs(), options).id == queued
    assert active_twin(store.runs(), {**options, "model": "assets/lipo-regressor-fast"}) is None  # another model
    store.finish(queued, {"rows": 1, "invalid": 0, "molecules_per_s": 1.0})
    assert active_twin(store.runs(), options) is None  # done: predicting it again is the user's call


def _stopped_library(store: RunStore, name: str) -> tuple[str, dict, Path]:
    """A cancelled library prediction, its options and the folder of the chunks it kept (one chunk, 2 rows)."""
    from chemlm_engine.library import job_parts

    options = {"model": "assets/lipo-regressor", "source": str(store.save_upload(b"smiles\nCCO\nCCN\nCCC\n"))}
    stopped = store.create_run(JobSpec(method="predict", options=options).to_dict(), "predict", name)
    store.cancel(stopped)
    kept = job_parts(store, options)
    kept.mkdir(parents=True)
    pd.DataFrame({"row": [1, 2]}).to_parquet(kept / "part-000000.parquet")
    return stopped, options, kept


def test_a_cancelled_library_prediction_says_on_the_predict_page_what_it_kept_and_how_to_go_on(home):
    store = RunStore(home=home)
    stopped, options, _ = _stopped_library(store, "predict a.csv")
    said = [i.value for i in _app("views/predict.py").info if "was cancelled" in i.value]
    assert said == [f"The background prediction predict a.csv · {stopped} · predict was cancelled: its first 2 rows "
                    "are kept (whole chunks: rows of the chunk it stopped in are predicted again). Upload the same "
                    "file with the same model and predict it in the background again: it continues after them."]
    again = store.create_run(JobSpec(method="predict", options=options).to_dict(), "predict", "again")  # continues
    assert not [i.value for i in _app("views/predict.py").info if "was cancelled" in i.value]
    store.cancel(again)  # stopped too: the rows kept are the later run's to say, not both runs' (the same count)
    said = [i.value for i in _app("views/predict.py").info if "was cancelled" in i.value]
    assert len(said) == 1 and said[0].startswith(f"The background prediction again · {again} · predict was cancelled")


def test_deleting_a_stopped_library_prediction_forgets_the_chunks_it_kept(home):
    from chemlm_engine.library import discard_kept

    store = RunStore(home=home)
    stopped, options, kept = _stopped_library(store, "a library")
    rerun = store.create_run(JobSpec(method="predict", options=options).to_dict(), "predict", "again")
    discard_kept(store, store.get_run(stopped))
    assert kept.exists()  # a queued (or running) job with the same options continues from them
    store.cancel(rerun)
    discard_kept(store, store.get_run(stopped))
    assert kept.exists()  # the later run stopped too: its rows may be among those kept
    store.delete(rerun)
    at = _app("views/train.py")
    at.selectbox(key="detail-run").set_value(stopped).run()
    widget(at, "button", "Yes, delete it").click().run()
    assert not at.exception and store.runs() == [] and not kept.exists()


def test_a_damaged_model_folder_is_a_message_on_the_predict_page(home, finished_run):
    folder = RunStore(home=home).get_run(finished_run).model_path
    (Path(folder) / "head.safetensors").write_bytes(b"not safetensors")
    at = _app("views/predict.py")
    at.selectbox[0].set_value(folder).run()
    at.text_area[0].set_value("CCO").run()
    widget(at, "button", "Predict").click().run()
    assert not at.exception
    assert any("head.safetensors" in e.value.replace("\\", "") for e in at.error), [e.value for e in at.error]


def test_a_run_with_many_stages_draws_each_stage_in_its_own_colour(home):  # an influence run's k-sweep: 12
    store = RunStore(home=home)
    run_id = store.create_run(JobSpec().to_dict(), "influence", "sweep")
    for stage in range(12):
        for epoch in (1, 2):
            store.add_epoch(run_id, epoch, {"train_mse": 1.0 / epoch, "val_mse": 1.2 / epoch}, stage=f"top-{stage}")
    store.start(run_id, {})
    store.finish(run_id, {"test_r2": 0.5123, "test_mse": 1.0, "mlm_eval_loss": 2.4719})  # no best epoch
    at = _app("views/train.py")
    at.selectbox(key="detail-run").set_value(run_id).run()
    detail = next(d.value for d in at.dataframe if "MSE" in d.value.columns and "id" not in d.value.columns)
    assert detail.to_dict("records") == [{"R²": 0.512, "MSE": 1.0, "MLM eval loss": 2.47}]  # no None columns
    chart = json.loads(next(p.proto.spec for p in at.get("plotly_chart") if "Loss by epoch" in p.proto.spec))
    colours = {trace["line"]["color"] for trace in chart["data"]}
    dashes = {trace["name"].split(", ")[1]: trace["line"]["dash"] for trace in chart["data"]}
    assert len(colours) == 12 and dashes == {"training": "solid", "validation": "dot"}


def test_the_search_page_points_to_the_trials_of_a_search_run_from_the_command_line(home):
    store = RunStore(home=home)
    trial = store.create_run(JobSpec().to_dict(), "baseline", "qa-search trial")
    store.set_info(trial, search="qa-search")  # as `chemlm tune --name qa-search` records its trials
    at = _app("views/search.py")
    assert "No search launched from this page yet." in [i.value for i in at.info]
    assert any(c.value.startswith("Searches run with `chemlm tune` (qa-search)") for c in at.caption)


def test_a_quick_try_says_its_r2_means_little(home, finished_run):  # 80 molecules, 1 epoch
    at = _app("views/train.py")
    assert not at.exception
    assert any(i.value.startswith("A small run (80 molecules, 1 epoch, the size of a quick try)") for i in at.info)


def test_a_finished_library_prediction_of_an_sd_file_downloads_as_an_sd_file_too(home, finished_run):
    store = RunStore(home=home)
    records = io.StringIO()
    with Chem.SDWriter(records) as writer:
        for smiles in ("CCO", "c1ccccc1O"):
            writer.write(Chem.MolFromSmiles(smiles))
    source = store.save_upload(records.getvalue().encode(), ".sdf")
    options = {"model": store.get_run(finished_run).model_path, "source": str(source)}
    run = store.get_run(run_job(JobSpec(method="predict", name="predict vendor.sdf", options=options), store))
    assert run.status == "finished", run.error
    at = _app("views/predict.py")
    assert not at.exception
    labels = [b.label for b in at.get("download_button")]
    assert labels[:3] == ["Download (Parquet)", "Download (CSV)", "Download (SD file)"]
    from chemlm_engine.library import annotated_library
    from views.library_jobs import _sd_copy

    output = Path(run.info["output"])
    assert _sd_copy(output, str(source)) == annotated_library(output, source)  # what the button downloads
    assert output.with_suffix(".sdf").exists()  # written once, beside the run's Parquet, record by record


def test_a_finished_library_prediction_shows_its_distribution_and_the_rows_in_a_logd_window(home, finished_run,
                                                                                            monkeypatch):
    from views import library_jobs

    monkeypatch.setattr(library_jobs, "HELD_BYTES", 0)  # as a large output: its Parquet read on click
    downloads = {}  # label -> the data the page gave its download button (a callable: built on click)

    def recording(label, data, *args, **kwargs):
        downloads[label] = data
        return button(label, data, *args, **kwargs)

    button = st.download_button
    monkeypatch.setattr(st, "download_button", recording)
    store = RunStore(home=home)
    names = [f"Z{i}" for i in range(8)]
    smiles = ["CCO", "c1ccccc1O", "CCCCCCCC", "CC(=O)O", "c1ccncc1", "CCN(CC)CC", "OCC(O)CO", "C1CC1N("]
    source = store.save_upload(("id,smiles\n" + "".join(f"{n},{s}\n" for n, s in zip(names, smiles))).encode())
    options = {"model": store.get_run(finished_run).model_path, "source": str(source)}
    run = store.get_run(run_job(JobSpec(method="predict", name="predict vendor.csv", options=options), store))
    assert run.status == "finished", run.error
    output = pd.read_parquet(run.info["output"])
    at = _app("views/predict.py")
    assert not at.exception
    assert "7 of 7 predicted molecules in the window" in " ".join(c.value for c in at.caption)
    assert widget(at, "download_button", "Download (Parquet)").label
    assert len(at.get("plotly_chart")) == 1
    from views.why import DOMAIN_COLOURS

    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]  # outside red, inside blue, whatever comes first
    assert bars and all(t["marker"]["color"] == DOMAIN_COLOURS[t["name"]] for t in bars), bars
    window = at.slider(key=f"library-window-{run.id}")
    low, high = window.value
    middle = round(float(output["prediction"].median()), 1)
    window.set_value((low, middle)).run()
    expected = int((output["prediction"] <= middle).sum())  # inclusive, the invalid row (NaN) never
    assert 0 < expected < 7
    assert f"{expected} of 7 predicted molecules in the window" in " ".join(c.value for c in at.caption)
    shown = at.dataframe[-1].value
    assert shown["row"].tolist() == [i + 1 for i in output.index[output["prediction"] <= middle]]
    assert shown["id"].tolist() == [names[i] for i in output.index[output["prediction"] <= middle]]
    # what the button downloads (built on click; AppTest never clicks it): the window's rows, all of them
    window_csv = pd.read_csv(io.StringIO(downloads[f"Download the {expected} rows in the window (CSV)"]()))
    assert window_csv["row"].tolist() == shown["row"].tolist()
    at.switch_page("views/train.py").run()
    at.switch_page("views/predict.py").run()  # back: the window is as it was left
    assert at.slider(key=f"library-window-{run.id}").value == (low, middle)
    assert f"{expected} of 7 predicted molecules in the window" in " ".join(c.value for c in at.caption)
    at.selectbox(key=f"library-order-{run.id}").set_value("highest logD first").run()
    ranked = at.dataframe[-1].value
    assert ranked["prediction"].tolist() == sorted(shown["prediction"], reverse=True)
    at.selectbox(key=f"library-order-{run.id}").set_value("input order").run()
    why = at.selectbox(key=f"library-why-{run.id}")
    assert why.options[1].startswith(f"row {shown['row'][0]} · {shown['id'][0]} · logD")
    lowest = shown.loc[shown["prediction"].idxmin()]  # first in input order only by chance, last once ranked
    why.set_value(int(lowest["row"])).run()  # "Why?" for a library row: its atoms and training molecules
    assert not at.exception
    assert any("Training molecules behind it" in m.value for m in at.markdown)
    at.selectbox(key=f"library-order-{run.id}").set_value("highest logD first").run()  # the same molecule explained
    why = at.selectbox(key=f"library-why-{run.id}")
    assert why.options[why.index].startswith(f"row {lowest['row']} · {lowest['id']} · logD"), why.options[why.index]


def test_a_finished_library_prediction_is_scored_against_a_measured_column_of_its_file(home, finished_run):
    store = RunStore(home=home)
    rows = [("CCO", "-0.3"), ("c1ccccc1O", "1.5"), ("CCCCCCCC", "n.d."), ("CC(=O)O", "-1.2"), ("c1ccncc1", "0.6"),
            ("C1CC1N(", "2.0")]
    source = store.save_upload(("smiles,measured_logd,batch\n" + "".join(f"{s},{v},7\n" for s, v in rows)).encode())
    options = {"model": store.get_run(finished_run).model_path, "source": str(source)}
    run = store.get_run(run_job(JobSpec(method="predict", name="predict assay.csv", options=options), store))
    assert run.status == "finished", run.error
    at = _app("views/predict.py")
    assert not at.exception
    picker = at.selectbox(key=f"library-measured-{run.id}")
    assert picker.value == "measured_logd" and picker.options == ["(none)", "smiles", "measured_logd", "batch"]
    assert any("**n** 4" in m.value and "**R²**" in m.value for m in at.markdown)  # not the text cell, the invalid row
    assert any("n.d." in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 2  # the parity plot and the distribution
    picker.set_value("(none)").run()
    assert not any("**R²**" in m.value for m in at.markdown) and len(at.get("plotly_chart")) == 1


def test_the_train_pages_quick_try_shrinks_a_search_and_active_learning_and_refuses_a_pretraining(home, tiny_backbone):
    at = _app("views/train.py")
    use_backbone(at, tiny_backbone)
    at.toggle(key="quick").set_value(True).run()
    widget(at, "selectbox", "Method").set_value("search").run()
    assert any("**This launch:** 4 fits" in i.value for i in at.info)  # 4 trials, as the Search page's quick try
    widget(at, "selectbox", "Method").set_value("uncertainty").run()  # as the Active learning page's quick try:
    # 50 labelled, then 64 of the ~190 left acquired (all of them, the strategies would not differ): 3 × (50 + 114)
    assert any("**This launch:** 2 fits, 492 molecule-epochs" in i.value for i in at.info), [i.value for i in at.info]
    widget(at, "selectbox", "Method").set_value("pretrain").run()
    assert any("Pretraining has no quick try" in w.value for w in at.warning)
    assert widget(at, "button", "Start training").disabled
    at.toggle(key="quick").set_value(False).run()
    assert not at.warning and not widget(at, "button", "Start training").disabled


def test_delete_and_rename_act_on_the_run_on_screen_even_when_another_tab_changed_the_store(home):
    store = RunStore(home=home)
    older, shown, newest = (store.create_run(JobSpec().to_dict(), "baseline", name) for name in ("a", "b", "c"))
    for run_id in (older, shown, newest):
        store.cancel(run_id)
    at = _app("views/train.py")
    at.selectbox(key="detail-run").set_value(shown).run()
    store.rename(shown, "renamed in another tab")
    at.toggle(key="quick").set_value(True).run()  # any rerun: the stale name field writes nothing back
    assert store.get_run(shown).name == "renamed in another tab"
    assert at.text_input(key=f"name-{shown}").value == "renamed in another tab"
    at.text_input(key=f"name-{shown}").set_value("mine").run()  # an edit renames
    assert store.get_run(shown).name == "mine"
    store.delete(shown)  # another tab deletes it: this one still shows it until it reruns
    widget(at, "button", "Yes, delete it").click().run()
    assert not at.exception and {r.id for r in store.runs()} == {older, newest}  # the newest is not deleted instead
    assert any("Not deleted" in w.value for w in at.warning)
    now = at.selectbox(key="detail-run").value  # another run: its own confirmation, closed (one click must not
    assert now != shown and not _delete_popover(at).open  # delete it; the browser test checks it stays closed there)
    assert any(c.value.startswith(f"Run {now}: its rows") for c in at.caption)
    at.selectbox(key="detail-run").set_value(older)  # picked, and the click lands before the page is redrawn:
    widget(at, "button", "Yes, delete it").click().run()  # the old controls' click deletes nothing (it deleted `now`)
    assert len(store.runs()) == 2 and any("the click reached run" in w.value and now.replace("-", "\\-") in w.value
                                          for w in at.warning)  # plain(): Markdown escaped
    at.text_input(key=f"name-{older}").set_value("typed")
    at.selectbox(key="detail-run").set_value(newest).run()  # a name typed as the page changed: not written
    assert store.get_run(older).name == "a" and any("Not renamed" in w.value for w in at.warning)
    at.selectbox(key="detail-run").set_value(newest).run()  # the user picks (or sees) the run to delete
    assert not _delete_popover(at).disabled
    widget(at, "button", "Yes, delete it").click().run()  # now the newest is on screen: it goes, as asked
    assert [r.id for r in store.runs()] == [older] and not at.warning


def _delete_popover(at: AppTest):
    return next(p.proto.popover for p in at.get("popover") if p.proto.popover.label == "Delete run")


def test_a_run_whose_cli_process_died_is_shown_interrupted_not_running_forever(home):
    at = _app("views/train.py")  # the app and its manager are up before the run starts
    code = ("from chemlm_engine.spec import JobSpec; from chemlm_engine.store import RunStore; s = RunStore(); "
            "r = s.create_run(JobSpec().to_dict(), 'baseline', 'a CLI run'); s.start(r, {}); print(r)")
    run_id = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "CHEMLM_HOME": str(home)}).stdout.strip()  # it exits: as if killed
    assert RunStore(home=home).get_run(run_id).status == "running"
    at.run()
    assert RunStore(home=home).get_run(run_id).status == "interrupted"
    assert "**Jobs:** none active" in [c.value for c in at.sidebar.caption]


def test_upload_columns_named_as_chemists_write_them_are_preselected():
    from chemlm_engine.columns import NAME_COLUMNS, SMILES_COLUMNS, name_column, value_column
    from views.uploads import _index

    columns = ["(none)", "Smiles", "Compound ID", "Measured logD", "Project"]
    assert [_index(columns, known) for known in (SMILES_COLUMNS, NAME_COLUMNS)] == [1, 2]
    assert value_column(columns) == "Measured logD"
    # no known name: a column named like an ID (a vendor's) names the molecules; a word that ends in "id" does not
    assert name_column(["smiles", "acid", "vendor_id", "logD"]) == "vendor_id"
    assert name_column(["SMILES", "Catalog ID"]) == "Catalog ID" and name_column(["smiles", "acid", "y"]) is None
    assert name_column(["ID", "vendor_id"]) == "ID"


def test_a_finished_curriculum_pair_is_read_out_on_its_test_mse_with_the_one_seed_caveat(home):
    from chemlm_engine.methods.curriculum import paired_specs

    store = RunStore(home=home)
    for spec, mse in zip(paired_specs(JobSpec(method="curriculum")), (1.17, 1.08)):
        run = store.create_run(spec.to_dict(), spec.method, spec.name)
        store.start(run, {})
        store.finish(run, {"test_r2": 0.1, "test_mse": mse})
    captions = [c.value for c in _app("views/curriculum.py").caption]
    assert any(c.startswith("R², RMSE, MAE and MSE on the test split") and "curriculum had no lower test MSE than "
               "its baseline (1.17 vs 1.08). One run on one seed is no verdict" in c for c in captions), captions


def test_compare_and_curriculum_keep_their_choices_across_a_visit_to_another_page(home):
    store = RunStore(home=home)
    for method in ("baseline", "lora"):
        run = store.create_run(JobSpec(method=method).to_dict(), method)
        store.finish(run, {"test_r2": 0.5, "test_rmse": 1.0, "test_mae": 0.8, "test_mse": 1.0}, None)
    at = _app("views/compare.py")
    reference = widget(at, "selectbox", "Reference configuration")
    other = next(o for o in reference.options if o != reference.value)
    reference.set_value(other).run()
    widget(at, "radio", "Metric").set_value("test_rmse").run()
    at.switch_page("views/curriculum.py").run()
    widget(at, "selectbox", "Pacing").set_value("sqrt").run()
    at.toggle(key="quick").set_value(True).run()
    at.switch_page("views/home.py").run()
    at.switch_page("views/compare.py").run()
    assert widget(at, "selectbox", "Reference configuration").value == other
    assert widget(at, "radio", "Metric").value == "test_rmse"
    at.switch_page("views/curriculum.py").run()
    assert widget(at, "selectbox", "Pacing").value == "sqrt" and at.toggle(key="quick").value


def test_train_keeps_its_form_across_a_visit_to_another_page_and_each_page_its_own(home, tiny_backbone):
    at = _app("views/train.py")
    use_backbone(at, tiny_backbone)
    choices = {("radio", "Split"): "scaffold", ("number_input", "Seed"): 2, ("number_input", "Random subset"): 500,
               ("checkbox", "Standardise molecules"): False, ("number_input", "Epochs"): 7,
               ("number_input", "Learning rate"): 3e-4, ("number_input", "Batch size"): 16,
               ("checkbox", "RDKit 2D descriptors"): True, ("selectbox", "Method"): "lora"}
    for (kind, label), value in choices.items():
        widget(at, kind, label).set_value(value).run()
    at.switch_page("views/curriculum.py").run()  # the same form there: its own choices, the defaults
    assert widget(at, "radio", "Split").value == "random" and widget(at, "number_input", "Epochs").value == 20
    at.switch_page("views/predict.py").run()
    at.switch_page("views/train.py").run()
    assert not at.exception
    assert {key: widget(at, *key).value for key in choices} == choices
    assert widget(at, "text_input", "Folder path").value == str(tiny_backbone)
    assert not any("default value but also had its value set" in w.value for w in at.warning)


def test_a_quick_curriculum_pair_says_its_numbers_say_little(home):
    from chemlm_engine.methods.curriculum import paired_specs

    store = RunStore(home=home)
    for spec in paired_specs(JobSpec(method="curriculum", data=DataSpec(subset=300), train=TrainConfig(epochs=3))):
        run = store.create_run(spec.to_dict(), spec.method, spec.name)
        store.finish(run, {"test_r2": 0.1}, None)
    at = _app("views/curriculum.py")
    assert not at.exception and any(i.value.startswith("A small run (300 molecules, 3 epochs") for i in at.info)


def test_a_pool_file_the_job_cannot_use_is_said_before_launch(home, finished_run, tmp_path):
    def form(base_id: str, pool: str) -> None:
        import streamlit as st

        from chemlm_engine.spec import JobSpec
        from views.common import store
        from views.forms import pool_problem

        spec = JobSpec.from_dict({**store().get_run(base_id).spec, "method": "influence", "options": {"pool": pool}})
        st.write(f"problem: {pool_problem(spec, uploaded=True)}")

    (tmp_path / "nosmiles.csv").write_text("foo,bar\nA,1\n")
    (tmp_path / "good.csv").write_text("smiles,logD\nCCO,-0.3\nc1ccccc1O,1.5\n")
    bad = AppTest.from_function(form, args=(finished_run, str(tmp_path / "nosmiles.csv"))).run()
    assert "Cannot start" in bad.error[0].value and "no SMILES column" in bad.error[0].value
    good = AppTest.from_function(form, args=(finished_run, str(tmp_path / "good.csv"))).run()
    assert not good.error and "problem: None" in good.markdown[0].value


def test_a_failed_background_prediction_is_said_on_the_predict_page(home):
    store = RunStore(home=home)
    options = {"model": "assets/lipo-regressor", "source": str(store.save_upload(b"smiles\nCCO\n"))}
    failed = store.create_run(JobSpec(method="predict", options=options).to_dict(), "predict", "lib.csv")
    store.start(failed, {})
    store.fail(failed, "ImportError: cannot import name 'x'", "Traceback …")
    at = _app("views/predict.py")
    assert any("failed" in e.value and "cannot import name 'x'" in e.value for e in at.error)


def test_a_resumed_library_job_estimates_its_time_from_its_own_work():
    """1,000 of 6,000 rows were kept from a stopped run: 300 more in 20 s leave 4,700 rows, ~313 s (not ~72 s)."""
    import re
    from types import SimpleNamespace

    from views.live import eta_text

    run = SimpleNamespace(started_at=time.time() - 20, progress=1300 / 6000, info={"progress_from": 1000 / 6000})
    left = int(re.search(r"about (\d+) s left", eta_text(run))[1])
    assert 305 <= left <= 320
    fresh = SimpleNamespace(started_at=time.time() - 20, progress=0.5, info={})
    assert 19 <= int(re.search(r"about (\d+) s left", eta_text(fresh))[1]) <= 21
    # 75 s in, 100 of 5,300 rows done: the first 60 s loaded the model; the pace is that of the rows since
    loaded = SimpleNamespace(started_at=time.time() - 75, progress=100 / 5300,
                             info={"eta_from": [time.time() - 15, 20 / 5300]})
    assert 970 <= int(re.search(r"about (\d+) s left", eta_text(loaded))[1]) <= 980  # 80 rows in 15 s: 5,200 left


def test_intervals_that_hold_too_few_measured_values_are_called_too_narrow_for_the_data():
    def summary(coverage: float, n: int) -> None:
        from views.measured import measured_summary

        measured_summary({"n": n, "r2": 0.5, "rmse": 1.0, "mae": 0.8, "coverage": coverage})

    shifted = AppTest.from_function(summary, args=(0.67, 296)).run()
    assert "inside the 90% interval** 67%" in shifted.markdown[0].value
    assert "Only 67% of your measured values" in shifted.warning[0].value
    assert not AppTest.from_function(summary, args=(0.87, 296)).run().warning  # within chance of 90 % on 296
    assert not AppTest.from_function(summary, args=(0.67, 6)).run().warning  # 4 of 6: chance can do that


def test_a_launch_shows_its_own_run_in_the_pages_run_selector_not_the_one_chosen_before(home):
    store = RunStore(home=home)
    older = store.create_run(JobSpec().to_dict(), "influence", "an older run")
    newer = store.create_run(JobSpec().to_dict(), "influence", "the quick try")

    def page(home: str, older: str, newer: str) -> None:
        import streamlit as st

        from chemlm_engine.store import RunStore
        from views.kept import run_selectbox
        from views.live import announce

        runs = RunStore(home=home).runs()
        if st.button("Launch"):  # as the page's launch form: it queues the newer run
            announce(newer, "You queued this run", follow="influence-run")
        st.markdown(f"showing {run_selectbox('Influence run', runs, lambda r: r.name, key='influence-run').id}")

    at = AppTest.from_function(page, args=(str(home), older, newer)).run()
    at.selectbox(key="influence-run").set_value(older).run()
    assert at.markdown[0].value == f"showing {older}"
    at.button[0].click().run()
    assert at.markdown[0].value == f"showing {newer}"


def test_active_learning_follows_a_launched_run_while_it_waits_in_the_queue(home):
    queued = RunStore(home=home).create_run(JobSpec(method="uncertainty").to_dict(), "uncertainty", "just launched")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["al-run"] = queued  # as the page's Launch leaves it (announce(..., follow="al-run"))
    at.run()
    at.switch_page("views/uncertainty.py").run()
    assert not at.exception and widget(at, "selectbox", "Run").value == queued
    assert any(m.value.startswith("**queued") for m in at.markdown)  # its status until its results are there


def test_run_detail_shows_an_ensembles_intervals_and_an_adapters_share_of_parameters(home):
    store = RunStore(home=home)
    ensemble = store.create_run(JobSpec(method="ensemble").to_dict(), "ensemble", "five")
    store.finish(ensemble, {"test_r2": 0.7, "members": 5, "member_test_r2_mean": 0.66, "interval_coverage": 0.91,
                            "interval_width": 2.4}, None)
    lora = store.create_run(JobSpec(method="lora").to_dict(), "lora", "adapters")
    store.set_info(lora, trainable_params=11_777, total_params=39_233, trainable_pct=30.02)
    store.finish(lora, {"test_r2": 0.5}, None)
    at = _app("views/train.py")
    at.selectbox(key="detail-run").set_value(ensemble).run()
    shown = next(d.value for d in at.dataframe if "R²" in d.value.columns and len(d.value) == 1)
    columns = ["members", "members' mean R²", "test inside its interval", "interval width (logD)"]
    assert shown.iloc[0][columns].tolist() == [5, 0.66, 0.91, 2.4]
    at.selectbox(key="detail-run").set_value(lora).run()
    shown = next(d.value for d in at.dataframe if "R²" in d.value.columns and len(d.value) == 1)
    assert shown.iloc[0]["trainable parameters"] == "11,777 (30 %)" and "members" not in shown
