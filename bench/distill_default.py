"""Can one student replace the embedded ensemble? Distil `assets/lipo-regressor` on its own data (random split
seed 0, training + validation less the same seeded 10 % calibration part, descriptors, the last epoch kept — the
ensemble's recipe) and compare it with its teacher on the held-out test split in one run: R², 90 % interval
coverage and width. The issue's bar for a fast default: within 0.01 R² and 2 points of coverage.

    .venv/bin/python bench/distill_default.py [--epochs 20]                       # the job's molecules only
    .venv/bin/python bench/distill_default.py --transfer 10000 --epochs 8 \\
        --corpus pretrain_work/drug_corpus.csv   # + 10,000 corpus molecules the teacher labels (`make pretrain-drug`)
    .venv/bin/python bench/predict_speed.py --models assets/lipo-regressor bench_work/lipo-student-transfer-10000

Transfer molecules: drawn (seed 0) from the drug-like corpus (no Lipophilicity molecule in it) among those of
Lipophilicity's sizes (≤ 115 heavy atoms). One row per configuration in the JSON; a finished one is not redone.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase

from chemlm_engine.jobs import run_job
from chemlm_engine.spec import DEFAULT_REGRESSOR, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.store import RunStore

KEYS = ("test_r2", "interval_coverage", "interval_width")
LIPOPHILICITY_MAX_HEAVY_ATOMS = 115


def transfer_csv(corpus: Path, n: int, out: Path) -> Path:
    """``n`` corpus molecules of Lipophilicity's sizes, drawn with seed 0, as a one-column CSV."""
    smiles = pd.read_csv(corpus, usecols=["smiles"])["smiles"].tolist()
    order = np.random.default_rng(0).permutation(len(smiles))
    picked: list[str] = []
    with rdBase.BlockLogs():
        for i in order:
            mol = Chem.MolFromSmiles(smiles[i])
            if mol is not None and mol.GetNumHeavyAtoms() <= LIPOPHILICITY_MAX_HEAVY_ATOMS:
                picked.append(smiles[i])
                if len(picked) == n:
                    break
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"smiles": picked}).to_csv(out, index=False)
    return out


def distil(epochs: int, transfer: Path | None, student: Path) -> dict:
    store = RunStore(home=Path(tempfile.mkdtemp(prefix="distill-")) / "runs")
    options = {"teacher": DEFAULT_REGRESSOR, "train_on_val": True, **({"transfer": str(transfer)} if transfer else {})}
    spec = JobSpec(method="distill", data=DataSpec(split="random", split_seed=0), options=options,
                   model=ModelSpec(descriptors=True), train=TrainConfig(epochs=epochs, seed=0))
    run = store.get_run(run_job(spec, store))
    shutil.rmtree(student, ignore_errors=True)
    shutil.copytree(run.model_path, student)
    return {"spec": spec.to_dict(), "metrics": run.metrics, "seconds": run.duration,
            "precision": run.info.get("precision"), "student": str(student)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--transfer", type=int, default=0, help="corpus molecules the teacher labels (0: none)")
    parser.add_argument("--corpus", type=Path, default=Path("pretrain_work/drug_corpus.csv"))
    parser.add_argument("--output", type=Path, default=Path("bench/results/distill_default.json"))
    args = parser.parse_args()
    rows = json.loads(args.output.read_text()) if args.output.exists() else {}
    key = f"transfer-{args.transfer}-epochs-{args.epochs}" if args.transfer else f"none-epochs-{args.epochs}"
    if key not in rows:
        work = Path("bench_work")
        transfer = transfer_csv(args.corpus, args.transfer, work / f"transfer-{args.transfer}.csv") \
            if args.transfer else None
        rows[key] = distil(args.epochs, transfer, work / f"lipo-student-{key}")
        args.output.write_text(json.dumps(rows, indent=2))
    teacher = next(iter(rows.values()))["metrics"]
    print("| | transfer molecules | epochs | test R² | 90 % coverage | mean width |\n|---|---|---|---|---|---|")
    print("| ensemble (teacher, 5 passes) | – | – | "
          + " | ".join(f"{teacher['teacher_' + k]:.3f}" for k in KEYS) + " |")
    for row in rows.values():
        metrics, train = row["metrics"], row["spec"]["train"]
        print(f"| student (1 pass) | {metrics.get('transfer_molecules', 0):,} | {train['epochs']} | "
              + " | ".join(f"{metrics[k]:.3f}" for k in KEYS) + " |")
    metrics = rows[key]["metrics"]
    r2_gap = metrics["teacher_test_r2"] - metrics["test_r2"]
    coverage_gap = abs(metrics["teacher_interval_coverage"] - metrics["interval_coverage"])
    print(f"\n{key}: R² behind the teacher {r2_gap:+.3f} (bar 0.01); coverage apart {100 * coverage_gap:.1f} points "
          f"(bar 2): {'qualifies' if r2_gap <= 0.01 and coverage_gap <= 0.02 else 'does not qualify'} as the "
          "fast default")


if __name__ == "__main__":
    main()
