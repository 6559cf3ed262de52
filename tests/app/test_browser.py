"""End to end in a real browser: `streamlit run app.py` driven by Debian's Chromium through Playwright."""
from __future__ import annotations

import gzip
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Error as PlaywrightError, TimeoutError as PlaywrightTimeout, expect
from rdkit import Chem

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import RunStore

CHROMIUM = Path("/usr/bin/chromium")
expect.set_options(timeout=60_000)  # as the pages' own default below: a loaded CI machine reruns a page slowly
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's Chromium is not installed (`apt-get install chromium`; CI does)")
PAGE_ROWS = 60  # the app under test predicts up to this many uploaded rows on the page (a small library job)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def app_url(tmp_path, tiny_backbone):
    home = tmp_path / "runs"
    spec = JobSpec(data=DataSpec(subset=80), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=1, batch_size=16))
    run_job(spec, RunStore(home=home))
    port = _free_port()
    # the quick tries fine-tune the tiny backbone: the page logic is tested here, their time on ChemLM-mini is
    # bench/app_speed.py's --presets rows
    # the live panels poll every 2 s instead of 10: the tiny jobs end in seconds
    env = {**os.environ, "CHEMLM_HOME": str(home), "CHEMLM_PAGE_ROWS": str(PAGE_ROWS),
           "CHEMLM_DEFAULT_BACKBONE": str(tiny_backbone), "CHEMLM_LIVE_REFRESH_S": "2"}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("streamlit did not become healthy") from None
                time.sleep(0.5)
        yield url
    finally:  # the test is over: the server and whatever it started (job processes, helpers) go at once
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=20)


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 720})  # the README screenshots' size
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CHEMLM_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _settled(page) -> None:
    """Wait until the page is not rerunning: while it does, elements below the point the script has reached may
    belong to the page as it was (a new picker above shifts them) and a click there is lost or lands elsewhere."""
    page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"], "
                           "[data-testid=\"stStatusWidgetRunningIcon\"], "
                           "[data-testid=\"stStatusWidgetRunningManIcon\"]')", timeout=120_000)


def _choose(page, box, name, tries: int = 5) -> None:
    """Pick an option of a Streamlit selectbox. A click that lands while the page is still rerunning opens no
    list, or its pick is undone by the rerun (seen under a loaded CI machine): open it again until it holds."""
    option = page.get_by_role("option", name=name)
    for attempt in range(1, tries + 1):
        _settled(page)
        box.click()
        try:
            option.wait_for(timeout=10_000)
            option.click()
            expect(box).to_have_value(name, timeout=20_000)
            return
        except (PlaywrightTimeout, AssertionError):
            if attempt == tries:
                raise
            page.keyboard.press("Escape")


def _click_until(target, shows, tries: int = 3, state: str = "visible") -> None:
    """Click ``target`` until ``shows`` reaches ``state`` (shown, or with "detached" gone): like a selectbox's, a
    click that lands while the page is still rerunning (the jobs panel refreshes every 2 s here) can be lost."""
    for attempt in range(1, tries + 1):
        target.click()
        try:
            shows.wait_for(state=state, timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == tries:
                raise


def _visit(page, link: str, shows) -> None:
    _click_until(page.get_by_role("link", name=link).first, shows)


def _download(page, button: str, tries: int = 3) -> Path:
    """Click a download button and return the file. The jobs panel reruns the page (up to 10 s) after a job ends,
    and a click that lands in that rerun is lost, or its file, built on click, is dropped by the rerun and the
    download canceled: click again. A button the rerun has not redrawn yet is stale (it would download what the
    page showed before, e.g. the previous library): wait until none is."""
    for attempt in range(1, tries + 1):
        page.wait_for_function("() => !document.querySelector('[data-stale=\"true\"]')", timeout=30_000)
        try:
            with page.expect_download(timeout=15_000) as download:
                page.get_by_role("button", name=button).click()
            return Path(download.value.path())
        except PlaywrightError:  # a timeout (the click was lost) or "canceled" (its file was dropped)
            if attempt == tries:
                raise


def _shot(page, tmp_path: Path, name: str, top=None) -> Path:
    """The 1280 x 720 window, scrolled so that ``top`` (a locator) starts it: Streamlit scrolls inside its
    own container, so a full-page screenshot would show only the window anyway."""
    if top is not None:
        top.first.evaluate("e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(1000)
    shot = _screenshot_dir(tmp_path) / name
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    return shot


def test_predict_an_upload_keeps_ids_and_plots_against_measured(app_url, page, tmp_path):
    upload = tmp_path / "mine.csv"
    upload.write_text("ID,smiles,logD,note\nA-1,CCO,-0.3,ethanol\nA-2,C1CC,1.0,broken\nA-3,c1ccccc1O,1.5,phenol\n"
                      "A-4,[Xe],0.0,xenon\nA-5,CCCCCCCCCCCCCCCCCC(=O)O,3.9,stearic acid\n")
    page.goto(f"{app_url}/predict")
    _click_until(page.get_by_text("Upload a file"), page.get_by_text("CSV with a SMILES column"))
    page.locator('input[type="file"]').set_input_files(str(upload))
    page.get_by_text("Name / ID column").wait_for()
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("Outside the domain", exact=True).wait_for()
    metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert any(m.startswith("Predicted") and m.endswith("4") for m in metrics)
    assert any(m.startswith("Invalid") and m.endswith("1") for m in metrics)
    page.wait_for_timeout(3000)  # let the grid and the structure images paint
    grid = page.locator('[data-testid="stDataFrame"]').first
    # the grid renders (into its accessible table) only the columns in view: what a chemist reads first fits 1280 px
    wanted = {"name", "logD", "90 % interval", "domain", "measured", "similarity", "nearest's measured logD"}
    deadline = time.time() + 30
    while not wanted <= (shown := set(grid.locator('[role="columnheader"]').all_inner_texts())):
        assert time.time() < deadline, shown  # a loaded machine paints the grid late
        page.wait_for_timeout(1000)
    assert "None" not in grid.locator('[role="gridcell"]').all_inner_texts()
    _shot(page, tmp_path, "predict.png", top=page.locator('[data-testid="stMetric"]'))
    saved = pd.read_csv(_download(page, "Download all rows (CSV"))
    assert list(saved.columns[:5]) == ["row", "ID", "smiles", "logD", "note"]  # the file's own columns, as named
    workbook = pd.read_excel(_download(page, "Download all rows (Excel workbook)"))  # built on click
    assert workbook.columns.tolist() == saved.columns.tolist() and workbook["ID"].tolist() == saved["ID"].tolist()
    assert not {"name", "input", "measured"} & set(saved.columns)  # and no renamed copies of them
    assert saved["ID"].tolist() == ["A-1", "A-2", "A-3", "A-4", "A-5"]  # the IDs, row for row: joins back
    assert saved["note"].tolist()[:3] == ["ethanol", "broken", "phenol"] and saved["logD"].notna().sum() == 5
    page.get_by_role("tab", name="Against measured").click()
    page.get_by_text("R²").first.wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1


def test_a_library_too_big_for_the_page_is_predicted_in_the_background_and_downloaded(app_url, page, tmp_path, lipo):
    library = tmp_path / "library.csv"
    rows = [f"L{i},{lipo.smiles[i % 300]},{lipo.labels[i % 300]}" for i in range(PAGE_ROWS + 1)]
    library.write_text("ID,smiles,logD\n" + "\n".join(rows) + "\n")
    page.goto(f"{app_url}/predict")
    _click_until(page.get_by_text("Upload a file"), page.get_by_text("CSV with a SMILES column"))
    page.locator('input[type="file"]').set_input_files(str(library))
    page.get_by_text("predicts about twice as fast").wait_for()  # with the default model: the one-pass student
    page.get_by_text("Your column logD is kept with the results").wait_for()
    _choose(page, page.get_by_role("combobox", name="Model"), re.compile("baseline"))  # the tiny trained run
    expect(page.get_by_text("predicts about twice as fast")).to_have_count(0)  # a run of its own: no such hint
    page.get_by_role("button", name="Predict it in the background").click()
    page.get_by_text("Library predictions (1)").wait_for(timeout=180_000)
    saved = pd.read_parquet(_download(page, "Download (Parquet)"))
    assert saved["ID"].tolist() == [f"L{i}" for i in range(PAGE_ROWS + 1)]  # one row per input row, in order
    assert saved["prediction"].notna().all()
    expect(page.get_by_role("combobox", name="Measured value column of your file")).to_have_value("logD")
    page.get_by_text(re.compile(r"n [\d,]+ · R² -?\d\.\d{3} · RMSE")).wait_for()  # scored against that column


def test_a_smiles_file_is_predicted_on_the_page_and_a_parquet_library_in_the_background(app_url, page, tmp_path):
    smi = tmp_path / "mine.smi"
    smi.write_text("CCO ethanol\nc1ccccc1O phenol\nC[C@H](N)C(=O)O |&1:1| alanine\n")
    page.goto(f"{app_url}/predict")
    _click_until(page.get_by_text("Upload a file"), page.get_by_text("CSV with a SMILES column"))
    page.locator('input[type="file"]').set_input_files(str(smi))
    expect(page.get_by_role("combobox", name="Name / ID column")).to_have_value("name")  # picked for the user
    _settled(page)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("Outside the domain", exact=True).wait_for()
    metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert any(m.startswith("Predicted") and m.endswith("3") for m in metrics)  # the CXSMILES line too
    sdf = tmp_path / "vendor.sdf"  # an SD file: a row per record, its data fields as columns
    with Chem.SDWriter(str(sdf)) as writer:
        for smiles, measured in (("CCO", "-0.3"), ("CO", "-0.7")):
            mol = Chem.MolFromSmiles(smiles)
            mol.SetProp("logD", measured)
            writer.write(mol)
    page.locator('input[type="file"]').set_input_files(str(sdf))
    expect(page.get_by_role("combobox", name="Measured value column (optional)")).to_have_value("logD")
    _settled(page)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("Against measured", exact=True).wait_for()
    metrics = page.locator('[data-testid="stMetric"]').all_inner_texts()
    assert any(m.startswith("Predicted") and m.endswith("2") for m in metrics)
    annotated = list(Chem.SDMolSupplier(str(_download(page, "Download as an SD file (your records, each with its "
                                                            "results as chemlm_* fields)"))))
    assert [m.GetProp("logD") for m in annotated] == ["-0.3", "-0.7"]
    assert all(m.HasProp("chemlm_prediction") and m.HasProp("chemlm_in_domain") for m in annotated)
    unread = tmp_path / "next.csv"  # another file, its SMILES column not chosen yet: the SD file's results go
    unread.write_text("compound,Structure\nA,CCO\n")
    page.locator('input[type="file"]').set_input_files(str(unread))
    page.get_by_text("Which column holds the SMILES").wait_for()
    expect(page.get_by_text("Against measured", exact=True)).to_have_count(0)
    library = tmp_path / "library.parquet"
    pd.DataFrame({"ID": ["P1", "P2"], "SMILES": ["CCO", "CCN"]}).to_parquet(library)
    page.locator('input[type="file"]').set_input_files(str(library))
    page.get_by_text("A Parquet file is predicted as a library").wait_for()
    expect(page.get_by_role("combobox", name="Name / ID column")).to_have_count(0)  # the job keeps every column
    _choose(page, page.get_by_role("combobox", name="Model"), re.compile("baseline"))  # the tiny trained run
    page.get_by_role("button", name="Predict it in the background").click()
    page.get_by_text("Library predictions (1)").wait_for(timeout=180_000)
    saved = pd.read_parquet(_download(page, "Download (Parquet)"))
    assert saved["ID"].tolist() == ["P1", "P2"] and saved["prediction"].notna().all()
    packed = tmp_path / "more.smi.gz"  # a compressed SMILES file: a library too, read as a SMILES file
    packed.write_bytes(gzip.compress(b"CCO first\nCCN second\nCCC third\n"))
    page.locator('input[type="file"]').set_input_files(str(packed))
    page.get_by_text("A compressed file is predicted as a library").wait_for()
    page.get_by_role("button", name="Predict it in the background").click()
    page.get_by_text("Library predictions (2)").wait_for(timeout=180_000)
    page.get_by_text(re.compile(r"^3 rows \(0 invalid\)")).wait_for()  # the newest library is the one shown
    saved = pd.read_parquet(_download(page, "Download (Parquet)"))
    assert saved["name"].tolist() == ["first", "second", "third"] and saved["prediction"].notna().all()


def test_train_dashboard_shows_a_running_job_in_a_real_browser(app_url, page, tmp_path, tiny_backbone):
    page.goto(f"{app_url}/train")
    page.get_by_text("Local folder or hub id").click()
    folder = page.get_by_label("Folder path or hub id")
    folder.fill(str(tiny_backbone))
    folder.press("Enter")
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("200")
    epochs.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_text("This launch").wait_for()
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Running jobs").wait_for(timeout=60_000)  # the live card, refreshed by itself
    expect(page.get_by_text("You queued this run: it trains in the background")).to_be_visible()
    page.get_by_text("Live curve").click()
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=120_000)
    runs_table = page.locator('[data-testid="stDataFrame"]').first.locator('[role="row"]')
    deadline = time.time() + 60  # the live card reruns the page when the run starts: the table agrees with it
    while not any("running" in r for r in runs_table.all_inner_texts()[1:]):  # cells are not separated
        assert time.time() < deadline, runs_table.all_inner_texts()
        page.wait_for_timeout(1000)
    assert not any("None" in r for r in runs_table.all_inner_texts())  # no metric yet reads "—"
    page.wait_for_timeout(2500)
    _shot(page, tmp_path, "train.png", top=page.get_by_text("Running jobs"))
    _click_until(page.get_by_role("button", name="Cancel").first, page.get_by_text("Running jobs"), state="detached")
    # the page reruns when the run ends: the runs table says so
    expect(runs_table.filter(has_text="cancelled").filter(has_text="200")).not_to_have_count(0, timeout=60_000)


def test_compare_shows_two_configurations_and_names_no_winner(app_url, page, tmp_path, tiny_backbone):
    store = RunStore(home=tmp_path / "runs")
    for seed, lr in ((1, 1e-4), (0, 1e-3)):  # with the fixture's run: lr 1e-4 on seeds 0 and 1, lr 1e-3 once
        run_job(JobSpec(data=DataSpec(subset=80, split_seed=seed), model=ModelSpec(backbone=str(tiny_backbone),
                        head_hidden=16), train=TrainConfig(epochs=1, batch_size=16, seed=seed, learning_rate=lr)),
                store)
    page.goto(f"{app_url}/compare")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.locator("canvas").first.wait_for()
    deadline = time.time() + 30  # a loaded machine lays the grid's cells out late
    while not ((rows := [r for r in grid.locator('[role="row"]').all_inner_texts()
                         if "learning_rate" in r or r.startswith("the reference")])
               and any(r.startswith("the reference") for r in rows) and any("too few to tell" in r for r in rows)):
        assert time.time() < deadline, rows
        page.wait_for_timeout(1000)
    assert len(rows) == 2 and any("learning_rate 0.001" in r for r in rows)
    assert "best" not in page.locator("main").inner_text().lower()
    _shot(page, tmp_path, "compare.png", top=page.get_by_text("Reference configuration"))


def test_influence_shows_molecule_cards(app_url, page, tmp_path):
    store = RunStore(home=tmp_path / "runs")
    base = store.runs()[0]
    spec = JobSpec.from_dict({**base.spec, "method": "influence",
                              "options": {"k": [4], "solver": "cg", "scope": "head", "damping": 0.1}})
    run_job(spec, store)
    page.goto(f"{app_url}/influence")
    cards = page.locator("p").filter(has_text=re.compile(r"#\d+ · score[\s\S]*self-infl\."))
    cards.first.wait_for()
    deadline = time.time() + 30  # the open tab: the ten most helpful, painted card by card
    while len(visible := [c for c in cards.all_inner_texts() if c]) < 10:
        assert time.time() < deadline, visible
        page.wait_for_timeout(1000)
    assert visible[0].startswith("#1 · score")
    page.wait_for_timeout(1500)
    _shot(page, tmp_path, "influence.png", top=page.locator('[data-testid="stMetric"]'))


def test_predict_with_this_run_keeps_the_run_the_first_click_and_the_input_across_pages(app_url, page):
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{app_url}/train")
    page.get_by_role("link", name="Predict with this run").click()
    model_box = page.get_by_role("combobox", name="Model")
    model_box.wait_for()
    page.wait_for_timeout(1000)
    chosen = model_box.input_value()
    assert "· baseline ·" in chosen  # the run, not "Embedded default"
    page.get_by_label("One SMILES per line").fill("CCO ethanol\nc1ccccc1O phenol")
    page.get_by_role("button", name="Predict", exact=True).click()  # the first click, right after the paste
    page.get_by_text("Outside the domain", exact=True).wait_for()
    # the text area goes and comes back: the model stays the run, the text and the results stay
    _click_until(page.get_by_text("Upload a file"), page.get_by_text("CSV with a SMILES column"))
    _click_until(page.get_by_text("Paste SMILES"), page.get_by_label("One SMILES per line"))
    assert page.get_by_label("One SMILES per line").input_value() == "CCO ethanol\nc1ccccc1O phenol"
    assert model_box.input_value() == chosen
    _visit(page, "Home", page.get_by_text("Embedded default model"))
    page.wait_for_timeout(5000)  # the sidebar's jobs panel refreshes (every 2 s here) while the user reads Home
    _visit(page, "Predict", page.get_by_role("heading", name="Predict logD"))
    page.get_by_text("Outside the domain", exact=True).wait_for()  # the results are still there ...
    assert page.get_by_label("One SMILES per line").input_value() == "CCO ethanol\nc1ccccc1O phenol"  # ... and input
    assert page.get_by_role("combobox", name="Model").input_value() == chosen


def test_a_chosen_run_survives_a_rename_its_deletion_is_said_and_a_delete_asks_again_for_the_next(app_url, page,
                                                                                                   tmp_path):
    store = RunStore(home=tmp_path / "runs")
    trained = store.runs()[0].id
    later = []
    for name in ("another run", "the newest run"):  # newer than the trained one: the run detail opens on the newest
        later.append(store.create_run(JobSpec().to_dict(), "baseline", name))
        store.start(later[-1], {})
        store.finish(later[-1], {"test_r2": 0.5})
    page.goto(f"{app_url}/train")
    box = page.get_by_role("combobox", name="Run")
    expect(box).to_have_value(re.compile(later[1]))
    page.get_by_text("Full spec, versions and run info").wait_for()
    page.wait_for_timeout(1000)  # the page's first run has ended: a rerun would close the list as it is clicked
    _choose(page, box, re.compile(trained))
    name = page.get_by_label("Name")
    expect(name).to_have_value(store.get_run(trained).name)  # the picked run's field, not the one shown before it
    for _ in range(3):  # typing that lands while the page reruns can be lost (a loaded CI machine): type again
        name.fill("renamed")
        name.press("Enter")
        deadline = time.time() + 20
        while store.get_run(trained).name != "renamed" and time.time() < deadline:
            time.sleep(0.5)
        if store.get_run(trained).name == "renamed":
            break
    # its label changed: the browser's copy of the old one matched nothing, and the newest run showed
    expect(box).to_have_value(re.compile(f"^renamed · {trained}"))
    _click_until(page.get_by_text("Quick try").first, page.get_by_text("Quick try").first)  # any later rerun
    page.wait_for_timeout(2000)
    expect(box).to_have_value(re.compile(f"^renamed · {trained}"))
    # Predict with it, then it is deleted elsewhere: the next click says so instead of using the default silently
    page.get_by_role("link", name="Predict with this run").click()
    model_box = page.get_by_role("combobox", name="Model")
    expect(model_box).to_have_value(re.compile(trained))
    page.get_by_label("One SMILES per line").fill("CCO ethanol")
    store.delete(trained)
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("The model chosen before is gone").wait_for()
    expect(model_box).to_have_value(re.compile("^Embedded default"))
    expect(page.get_by_text("Outside the domain", exact=True)).to_have_count(0)  # nothing predicted on that click
    # a Delete leaves no confirmation open for the run shown next
    page.goto(f"{app_url}/train")
    expect(box).to_have_value(re.compile(later[1]))
    page.get_by_role("button", name="Delete run").click()
    page.get_by_role("button", name="Yes, delete it").click()
    expect(box).to_have_value(re.compile(later[0]))
    page.wait_for_timeout(3000)
    expect(page.get_by_role("button", name="Yes, delete it")).to_have_count(0)
    assert [run.id for run in store.runs()] == [later[0]]


def test_why_shows_progress_the_first_time_and_answers_from_the_cache_after(app_url, page):
    """On the tiny run (the shipped ensemble's first cache is 5 passes over 3,360 molecules: minutes on a loaded CI
    machine; bench/app_speed.py times it)."""
    page.goto(f"{app_url}/predict")
    _choose(page, page.get_by_role("combobox", name="Model"), re.compile("· baseline ·"))
    page.get_by_label("One SMILES per line").fill("CCO ethanol\nc1ccccc1O phenol\nCCN ethylamine")
    page.get_by_role("button", name="Predict", exact=True).click()
    page.get_by_text("Outside the domain", exact=True).wait_for()
    why = page.get_by_role("combobox", name="Explain a result row")
    cards = page.locator("p").filter(has_text=re.compile(r"measured logD .* · similarity"))
    explained: list[list[str]] = []
    for row in ("ethanol", "phenol"):
        _choose(page, why, re.compile(row))
        page.get_by_text("Training molecules behind it").wait_for(timeout=120_000)
        deadline = time.time() + 120  # until the page shows this row's molecules, not the row's before
        while not (shown := cards.all_inner_texts()) or shown in explained:
            assert time.time() < deadline, shown
            page.wait_for_timeout(500)
        explained.append(shown)
        page.get_by_text("Pushes up").wait_for()
    # the second molecule came from the model's attribution cache: no cache-building message on the way
    assert page.get_by_text("Finishing the model's attribution cache").count() == 0
    assert page.get_by_text("read the ranking").count() == 1  # and the panel says what the sizes mean
    page.get_by_label("One SMILES per line").fill("CCCC butane\nc1ccccc1 benzene")
    page.get_by_role("button", name="Predict", exact=True).click()  # new results: the old row's label must go
    expect(page.get_by_test_id("stMetricValue").first).to_have_text("2")  # the new results are drawn
    picker = page.get_by_test_id("stSelectbox").filter(has_text="Explain a result row")
    expect(picker).to_have_count(1)  # the rerun done: the old results' picker gone
    expect(picker.get_by_role("combobox")).to_have_value("choose a row")  # not still "row 2 · phenol · …"


def test_quick_presets_finish_with_an_answer_the_page_reads(app_url, page, tmp_path):
    """Influence's quick try settles (conjugate gradients), active learning's runs ISAL with its two controls:
    each page then states its answer (on the tiny backbone; on ChemLM-mini: bench/app_speed.py --presets)."""
    page.goto(app_url)  # Home's "Try it" opens each page with its launch form and the quick preset on
    page.get_by_role("link", name="Try it").nth(2).click()  # Predict, Train, Influence, …
    page.get_by_text("Launch an influence job").wait_for()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("The inverse-HVP estimate settled").wait_for(timeout=180_000)
    assert page.get_by_text("had not settled").count() == 0
    page.goto(app_url)
    page.get_by_role("link", name="Try it").nth(4).click()
    page.get_by_text("Launch an active-learning run").wait_for()
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Launch").click()
    page.get_by_text("N-sweep: ISAL vs uncertainty sampling vs random").wait_for(timeout=180_000)
    page.get_by_text("the size of a quick try").first.wait_for()  # and says what a quick try's numbers mean
