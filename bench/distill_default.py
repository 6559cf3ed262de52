"""Can one student replace the embedded ensemble? Distil `assets/lipo-regressor` on its own data (random split
seed 0, training + validation less the same seeded 10 % calibration part, descriptors, 20 epochs, the last one
kept — the ensemble's recipe) and compare it with its teacher on the held-out test split in one run: R², 90 %
interval coverage and width. The issue's bar for a fast default: within 0.01 R² and 2 points of coverage.

    .venv/bin/python bench/distill_default.py [--epochs 20] [--output bench/results/distill_default.json]
    .venv/bin/python bench/predict_speed.py --models assets/lipo-regressor bench_work/lipo-student   # then speed

Resumes: a finished student (its folder and the JSON row) is not trained again.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from chemlm_engine.jobs import run_job
from chemlm_engine.spec import DEFAULT_REGRESSOR, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.store import RunStore

KEYS = ("test_r2", "interval_coverage", "interval_width")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--student", type=Path, default=Path("bench_work/lipo-student"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/distill_default.json"))
    args = parser.parse_args()
    if not (args.output.exists() and (args.student / "ensemble.json").exists()):
        store = RunStore(home=Path(tempfile.mkdtemp(prefix="distill-")) / "runs")
        spec = JobSpec(method="distill", data=DataSpec(split="random", split_seed=0),
                       options={"teacher": DEFAULT_REGRESSOR, "train_on_val": True},
                       model=ModelSpec(descriptors=True), train=TrainConfig(epochs=args.epochs, seed=0))
        run = store.get_run(run_job(spec, store))
        args.student.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(args.student, ignore_errors=True)
        shutil.copytree(run.model_path, args.student)
        args.output.write_text(json.dumps({"spec": spec.to_dict(), "metrics": run.metrics,
                                           "seconds": run.duration, "precision": run.info.get("precision")},
                                          indent=2))
    metrics = json.loads(args.output.read_text())["metrics"]
    print("| | test R² | 90 % coverage | mean width |\n|---|---|---|---|")
    for who, prefix in (("ensemble (teacher, 5 passes)", "teacher_"), ("student (1 pass)", "")):
        print(f"| {who} | " + " | ".join(f"{metrics[prefix + k]:.3f}" for k in KEYS) + " |")
    r2_gap = metrics["teacher_test_r2"] - metrics["test_r2"]
    coverage_gap = abs(metrics["teacher_interval_coverage"] - metrics["interval_coverage"])
    print(f"\nR² behind the teacher: {r2_gap:+.3f} (bar 0.01); coverage apart: {100 * coverage_gap:.1f} points "
          f"(bar 2): {'qualifies' if r2_gap <= 0.01 and coverage_gap <= 0.02 else 'does not qualify'} as the "
          "fast default")


if __name__ == "__main__":
    main()
