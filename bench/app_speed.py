"""In-app training speed against the CLI, side by side in one run: the same job (default backbone, subset 300,
3 epochs, seed 0) launched from the Train page of `streamlit run app.py` with the page open in Chromium (the
live dashboard refreshing), and from `python -m chemlm_engine train`.

    .venv/bin/python bench/app_speed.py [--subset 300] [--epochs 3] [--repeats 2]

Prints seconds per epoch for each launch and the in-app / CLI throughput ratio (target >= 0.9);
writes bench/results/app_speed.json. Run it on an idle machine.

    .venv/bin/python bench/app_speed.py --presets

instead times the quick tries a new user starts from Home's "Try it" (train, influence, active learning) on the embedded
ChemLM-mini, from the Launch click until the page states its answer (target <= 180 s each on 2 cores; the browser
test checks the same answers on a tiny backbone); writes bench/results/app_presets.json.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from chemlm_engine.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _app(home: Path):
    """``streamlit run app.py`` on a free port with its run store in ``home``; yields its URL."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.port", str(port)], cwd=ROOT, env={**os.environ, "CHEMLM_HOME": str(home)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(180):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def in_app(home: Path, subset: int, epochs: int) -> float:
    """Seconds per epoch of a run started from the Train page, the page staying open until it finishes."""
    from playwright.sync_api import sync_playwright

    with _app(home) as url, sync_playwright() as p:
        store = RunStore(home=home)
        before = {r.id for r in store.runs()}
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/train")
        page.get_by_label("Random subset of N molecules (0 = all)", exact=True).fill(str(subset))
        page.keyboard.press("Enter")
        page.get_by_label("Epochs", exact=True).fill(str(epochs))
        page.keyboard.press("Enter")
        page.wait_for_timeout(3000)
        page.get_by_role("button", name="Start training").click()
        deadline = time.time() + 3600
        while time.time() < deadline:
            new = [r for r in store.runs() if r.id not in before]
            if new and new[0].status not in ("queued", "running"):
                break
            time.sleep(1)
        browser.close()
    run = new[0]
    assert run.status == "finished", run.error
    return run.metrics["seconds_per_epoch"]


# Home's "Try it" buttons in page order (Predict, Train, Influence, Curriculum, Active learning, …), each quick
# try's launch button, and the text its page shows once it has an answer (None: the run finishing is the answer).
PRESETS = {"train": (1, "Start training", None), "influence": (2, "Launch", "The inverse-HVP estimate"),
           "active learning": (4, "Launch", "N-sweep: ISAL vs uncertainty")}


def presets(home: Path) -> list[dict]:
    """Seconds from the launch click of each quick try until its page states the answer (the train quick try
    first: it is the base run the influence quick try needs)."""
    from playwright.sync_api import sync_playwright

    rows, store = [], RunStore(home=home)
    with _app(home) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        for name, (button, launch, answer) in PRESETS.items():
            page.goto(url)
            page.get_by_role("button", name="Try it").nth(button).click()
            page.get_by_role("button", name=launch).wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            before = {r.id for r in store.runs()}
            started = time.time()
            page.get_by_role("button", name=launch).click()
            if answer is not None:
                page.get_by_text(answer).first.wait_for(timeout=900_000)
            else:
                while not [r for r in store.runs() if r.id not in before and r.status == "finished"]:
                    assert time.time() - started < 900, "the quick training run did not finish"
                    time.sleep(1)
            rows.append({"preset": name, "seconds": round(time.time() - started, 1)})
            print(json.dumps(rows[-1]), flush=True)
        browser.close()
    return rows


def from_cli(home: Path, subset: int, epochs: int) -> float:
    out = subprocess.run([sys.executable, "-m", "chemlm_engine", "train", "--subset", str(subset), "--epochs",
                          str(epochs), "--seed", "0", "--db", f"sqlite:///{home / 'runs.db'}"],
                         cwd=ROOT, env={**os.environ, "CHEMLM_HOME": str(home)}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--presets", action="store_true", help="time the quick tries instead (see above)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.presets:
        with tempfile.TemporaryDirectory() as home:
            rows = presets(Path(home))
        print("\n| quick try | seconds to the answer |\n|---|---|\n"
              + "\n".join(f"| {r['preset']} | {r['seconds']:.0f} |" for r in rows))
        output = args.output or ROOT / "bench/results/app_presets.json"
        output.write_text(json.dumps({"rows": rows}, indent=2))
        return
    rows = []
    for repeat in range(args.repeats):  # alternate, so drift in the machine's speed hits both alike
        for where, measure in (("cli", from_cli), ("app", in_app)):
            with tempfile.TemporaryDirectory() as home:
                seconds = measure(Path(home), args.subset, args.epochs)
            rows.append({"launch": where, "repeat": repeat, "seconds_per_epoch": seconds})
            print(json.dumps(rows[-1]), flush=True)
    summary = {"subset": args.subset, "epochs": args.epochs, "rows": rows}
    table = ["| launch | s / epoch, best | s / epoch, mean |", "|---|---|---|"]
    for where, label in (("cli", "CLI"), ("app", "app (Train page open in Chromium)")):
        values = [r["seconds_per_epoch"] for r in rows if r["launch"] == where]
        summary[f"{where}_best"], summary[f"{where}_mean"] = min(values), sum(values) / len(values)
        table.append(f"| {label} | {min(values):.2f} | {sum(values) / len(values):.2f} |")
    for stat in ("best", "mean"):
        summary[f"app_throughput_vs_cli_{stat}"] = summary[f"cli_{stat}"] / summary[f"app_{stat}"]
    print("\n" + "\n".join(table) + f"\n\nin-app throughput vs the CLI (target >= 0.9): "
          f"{summary['app_throughput_vs_cli_best']:.2f} best of {args.repeats}, "
          f"{summary['app_throughput_vs_cli_mean']:.2f} on the means")
    output = args.output or ROOT / "bench/results/app_speed.json"
    output.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
