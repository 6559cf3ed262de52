"""Active learning on Lipophilicity: ISAL (expected influence) against uncertainty sampling and random
acquisition, from the same initial model, on the same seeds — one `isal` sweep job per seed.

    .venv/bin/python bench/active_learning.py --seeds 0 1 2 --sweep 64 256 1000

Each seed: random split `seed` (80/10/10), an initial labelled set of --initial training molecules, the rest of
the training split the pool (labels revealed when acquired), the shipped single-model recipe on ChemLM-mini
without descriptors (influence tracks the plain head). Resumes from its JSON (one row per finished seed's
job, with its sweep). Prints the test R² per N and strategy, and the paired differences of ISAL against each
control with a 95 % t-interval over seeds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from chemlm_engine.jobs import run_job
from chemlm_engine.spec import DataSpec, JobSpec, TrainConfig
from chemlm_engine.store import RunStore, Tables


def _paired(rows: list[dict], n: int, a: str, b: str) -> str:
    pairs = [(r["sweep"][f"{n}/{a}"], r["sweep"][f"{n}/{b}"]) for r in rows]
    delta = np.array([x - y for x, y in pairs])
    if len(delta) < 2:
        return f"{delta.mean():+.3f} (1 seed)"
    half = stats.t.ppf(0.975, len(delta) - 1) * delta.std(ddof=1) / np.sqrt(len(delta))
    return f"{delta.mean():+.3f} [{delta.mean() - half:+.3f}, {delta.mean() + half:+.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sweep", nargs="+", type=int, default=[64, 256, 1000])
    parser.add_argument("--initial", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--output", type=Path, default=Path("bench/results/active_learning.json"))
    parser.add_argument("--plot", type=Path, help="also draw test R² against labelled molecules (PNG, through "
                        "Chromium: `apt-get install chromium`)")
    args = parser.parse_args()
    store = RunStore(home=Path(tempfile.mkdtemp(prefix="active-learning-")) / "runs")
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for seed in args.seeds:
        if any((r["seed"], r["sweep_sizes"], r["initial"], r["epochs"]) == (seed, args.sweep, args.initial,
                                                                           args.epochs) for r in rows):
            continue  # resume: already measured
        spec = JobSpec(method="isal", data=DataSpec(split="random", split_seed=seed),
                       train=TrainConfig(epochs=args.epochs, seed=seed),
                       options={"initial_size": args.initial, "sweep": args.sweep})
        record = store.get_run(run_job(spec, store))
        table = store.table(record.id, Tables.SWEEP)
        rows.append({"seed": seed, "sweep_sizes": args.sweep, "initial": args.initial, "epochs": args.epochs,
                     "sweep": {f"{n}/{how}": r2 for n, how, r2 in
                               zip(table["n"], table["strategy"], table["test_r2"])},
                     "pool_mc_dropout_s": record.metrics["pool_mc_dropout_s"],
                     "pool_isal_s": record.metrics["pool_isal_s"], "job_s": record.duration,
                     "fits": spec.method_options.fits()})
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=1))
        print(json.dumps(rows[-1]), flush=True)
    done = [r for r in rows if r["sweep_sizes"] == args.sweep and r["initial"] == args.initial]
    print(f"\n{len(done)} seed(s); test R² mean ± std; ISAL − control, paired over seeds (95 % t-interval)")
    print("| labelled | ISAL | uncertainty | random | ISAL − random | ISAL − uncertainty |\n|---|---|---|---|---|---|")
    for n in args.sweep:
        cells = [np.array([r["sweep"][f"{n}/{how}"] for r in done]) for how in ("isal", "uncertainty", "random")]
        print(f"| {args.initial} + {n} | " + " | ".join(f"{c.mean():.3f} ± {c.std():.3f}" for c in cells) +
              f" | {_paired(done, n, 'isal', 'random')} | {_paired(done, n, 'isal', 'uncertainty')} |")
    if done and args.plot:
        plot(done, args.plot)
    if done:
        print(f"\nscoring the pool once: MC dropout {np.mean([r['pool_mc_dropout_s'] for r in done]):.1f} s, "
              f"ISAL's solve and scores {np.mean([r['pool_isal_s'] for r in done]):.1f} s more; "
              f"a whole job {np.mean([r['job_s'] for r in done]) / 60:.1f} min for {done[0]['fits']} fits")


def plot(rows: list[dict], path: Path) -> None:
    """Mean test R² (± std over seeds) against labelled molecules per strategy, as a PNG (Plotly drawn by
    Chromium: no plotting library beyond the app's own)."""
    import pandas as pd
    import plotly.express as px
    from playwright.sync_api import sync_playwright

    points = pd.DataFrame([{"labelled": r["initial"] + int(key.split("/")[0]), "strategy": key.split("/")[1],
                            "test R²": r2} for r in rows for key, r2 in r["sweep"].items()])
    summary = points.groupby(["strategy", "labelled"])["test R²"].agg(["mean", "std"]).reset_index()
    figure = px.line(summary, x="labelled", y="mean", error_y="std", color="strategy", markers=True, log_x=True,
                     labels={"mean": f"test R² (mean ± std, {len(rows)} seeds)", "labelled": "labelled molecules"},
                     title="Active learning on Lipophilicity: ISAL vs uncertainty sampling vs random",
                     width=760, height=420)
    with tempfile.TemporaryDirectory() as work, sync_playwright() as pw:
        html = Path(work) / "plot.html"
        figure.write_html(html, include_plotlyjs=True)
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 780, "height": 440})
        page.goto(html.as_uri())
        page.wait_for_timeout(1000)
        page.screenshot(path=str(path))
        browser.close()


if __name__ == "__main__":
    main()
