"""End to end in a real browser: `streamlit run app.py` driven by Debian's Chromium through Playwright."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from chemlm_engine.config import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import RunStore

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's Chromium is not installed (`apt-get install chromium`; CI does)")
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
    env = {**os.environ, "CHEMLM_HOME": str(home)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("CHEMLM_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_predict_three_pasted_smiles_in_a_real_browser(app_url, page, tmp_path):
    page.goto(f"{app_url}/predict")
    box = page.locator("textarea")
    box.fill("CCO ethanol\nC1CC not-a-molecule\nc1ccccc1O phenol")
    box.press("Control+Enter")  # commit the text area before clicking
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Predict").click()
    page.get_by_text("2 predicted · 1 invalid").wait_for()
    grid = page.locator('[data-testid="stDataFrame"]')
    grid.locator("canvas").first.wait_for()
    page.wait_for_timeout(3000)  # let the grid and the structure images paint
    rows = [r for r in grid.locator('[role="row"]').all_inner_texts() if "data:image" in r or "C1CC" in r]
    assert len(rows) == 3
    errors = [r for r in rows if "cannot parse SMILES" in r]
    assert len(errors) == 1 and "not-a-molecule" in errors[0]
    assert sum("ethanol" in r or "phenol" in r for r in rows if r not in errors) == 2
    shot = _screenshot_dir(tmp_path) / "predict.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_train_dashboard_shows_a_running_job_in_a_real_browser(app_url, page, tmp_path, tiny_backbone):
    page.goto(f"{app_url}/train")
    page.get_by_text("Local folder or hub id").click()
    folder = page.get_by_label("Folder path or hub id")
    folder.fill(str(tiny_backbone))
    folder.press("Enter")
    epochs = page.get_by_label("Epochs")
    epochs.fill("200")
    epochs.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("Queued run").wait_for()
    page.get_by_text("train: epoch").first.wait_for()  # the live view shows the running job's progress
    # loss curves appear after the first epoch
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=120_000)
    page.get_by_text("Running jobs").scroll_into_view_if_needed()
    page.wait_for_timeout(2500)
    shot = _screenshot_dir(tmp_path) / "train.png"
    page.screenshot(path=str(shot), full_page=True)
    page.get_by_role("button", name="Cancel").first.click()
    page.get_by_text("No job is running.").wait_for(timeout=60_000)
    assert shot.stat().st_size > 10_000
