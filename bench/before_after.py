"""Same host, same molecules: the default prediction path of another commit (e.g. the code when issue #25 was filed)
against this checkout, each with its own shipped model, measured in one run.

    git worktree add --detach /tmp/wt-issue 705ba99
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python bench/before_after.py --before /tmp/wt-issue   # as on a CPU without AVX512: all four

Workloads: the last 1,000 Lipophilicity SMILES (drug-like); the first --library-rows rows of `library_speed.py`'s
library (nine tenths MOSES, one tenth BRICS recombinations of 40–300 heavy atoms, none from Lipophilicity); and
`molecule_size.py`'s molecules one at a time (chains, peptides, macrocycles of 10–5,000 heavy atoms), for the curve of
seconds against size. Each is one child process per code version (its engine first on ``sys.path``): load the
default model, warm up on 32 other molecules, then time parse → standardise → predict → applicability domain. A child
is killed after --timeout s (the row records that it gave no answer in that time: a lower bound). Precision is what
each code picks on a CPU of this kind; code that reads only /proc/cpuinfo's flags is told, as the current code
sees, that AVX2 kernels have no native bf16. Prints a table; resumes from its JSON (--output).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def child(engine: Path, smiles: list[str]) -> dict:
    """Time one workload with the engine in ``engine`` (runs in a fresh process)."""
    sys.path.insert(0, str(engine))
    import torch

    try:  # this layout: a predict package
        from chemlm_engine.predict import TrainingReference, add_applicability_domain, load_predictor, predict_smiles
    except ImportError:  # the layout of late November
        from chemlm_engine.domain import TrainingReference, add_applicability_domain
        from chemlm_engine.ensemble import load_predictor
        from chemlm_engine.predict import predict_smiles
    from chemlm_engine import inference
    from chemlm_engine.data import load_lipophilicity

    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        for name, module in list(sys.modules.items()):  # AVX2 kernels: bf16 would be emulated on such a CPU
            if name.startswith("chemlm_engine") and hasattr(module, "cpu_has_native_bf16"):
                module.cpu_has_native_bf16 = lambda: False
    folder = engine / "assets" / "lipo-regressor"
    predictor = load_predictor(folder, "cpu")
    members = getattr(predictor, "members", [predictor])
    predict_smiles(predictor, load_lipophilicity()[0].smiles[:32])  # warm-up (not in any workload)
    reference = TrainingReference.load(folder)
    start = time.perf_counter()
    frame = add_applicability_domain(predict_smiles(predictor, smiles), reference)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "molecules_per_s": len(smiles) / seconds,
            "predicted": int(frame["prediction"].notna().sum()), "members": len(members),
            "precision": inference.resolve_precision(members[0].inference_precision, torch.device("cpu"))}


def run_child(engine: Path, smiles: list[str], timeout: float, work: Path) -> dict:
    job = work / "job.json"
    job.write_text(json.dumps({"engine": str(engine), "smiles": smiles}))
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--child", str(job)], capture_output=True, text=True,
                              timeout=timeout, cwd=engine)
    except subprocess.TimeoutExpired:
        return {"timed_out": True, "seconds": None, "wall_s": time.perf_counter() - started}
    if done.returncode:
        sys.exit(f"child failed in {engine}:\n{done.stderr[-3000:]}")
    return {"timed_out": False, **json.loads(done.stdout.strip().splitlines()[-1])}


def workloads(library_rows: int, work: Path) -> list[tuple[str, list[str]]]:
    sys.path.insert(0, str(HERE))
    sys.path.insert(1, str(HERE.parent))
    from library_speed import build_library
    from molecule_size import molecules

    from chemlm_engine.data import load_lipophilicity

    library = work / "library-10000.csv"
    if not library.exists():
        build_library(10_000, library)
    jobs = [("Lipophilicity, last 1,000", load_lipophilicity()[0].smiles[-1000:]),
            (f"library, first {library_rows:,}", pd.read_csv(library, nrows=library_rows)["smiles"].tolist())]
    return jobs + [(f"{kind} of {heavy_atoms([smiles])[0]} heavy atoms", [smiles]) for kind, smiles in molecules()]


def heavy_atoms(smiles: list[str]) -> list[int]:
    from rdkit import Chem

    return [Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in smiles]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="a checkout of the older commit (with its assets)")
    parser.add_argument("--library-rows", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per workload (model load included)")
    parser.add_argument("--molecule-timeout", type=float, default=120, help="seconds per single-molecule workload")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chemlm-library-speed")
    parser.add_argument("--output", type=Path, default=Path("bench/results/before_after.json"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: one timed workload
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child.read_text())
        print(json.dumps(child(Path(job["engine"]), job["smiles"])))
        return
    if args.before is None:
        parser.error("--before CHECKOUT is required")
    import torch

    args.work.mkdir(parents=True, exist_ok=True)
    cpu = f"{torch.backends.cpu.get_cpu_capability()} kernels"
    print(f"CPU: {cpu}", flush=True)
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    jobs = workloads(args.library_rows, args.work)
    for name, smiles in jobs:
        sizes = heavy_atoms(smiles)
        for code, engine in (("before", args.before.resolve()), ("after", HERE.parent)):
            key = {"workload": name, "code": code, "cpu": cpu, "molecules": len(smiles)}
            if any({k: r.get(k) for k in key} == key for r in rows):
                continue  # resume: already measured
            timeout = args.timeout if len(smiles) > 1 else args.molecule_timeout
            result = run_child(engine, smiles, timeout, args.work)
            rows.append({**key, "kind": name.split(" of ")[0], "max_heavy_atoms": max(sizes),
                         "median_heavy_atoms": sorted(sizes)[len(sizes) // 2], "timeout_s": timeout, **result})
            print(json.dumps(rows[-1]), flush=True)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(rows, indent=2))
    print(f"\nCPU: {cpu}\n| workload | molecules | heavy atoms (median / max) | before (s) | after (s) "
          "| after molecules / s | speed-up | precision before / after |\n|---|---|---|---|---|---|---|---|")
    for name, _ in jobs:
        pair = {r["code"]: r for r in rows if r["workload"] == name and r["cpu"] == cpu}
        if len(pair) < 2:
            continue
        old, new = pair["before"], pair["after"]
        shown = {c: f"> {r['timeout_s']:.0f} (no answer)" if r["timed_out"] else f"{r['seconds']:.3f}"
                 for c, r in pair.items()}
        ratio = (f"> {old['timeout_s'] / new['seconds']:.0f}×" if old["timed_out"] else
                 f"{old['seconds'] / new['seconds']:.1f}×") if not new["timed_out"] else "–"
        rate = "–" if new["timed_out"] else f"{new['molecules_per_s']:.1f}"
        print(f"| {name} | {new['molecules']:,} | {new['median_heavy_atoms']} / {new['max_heavy_atoms']} "
              f"| {shown['before']} | {shown['after']} | "
              f"{rate} | {ratio} "
              f"| {old.get('precision', '–')} / {new.get('precision', '–')} |")
    curve = [r for r in rows if r["code"] == "after" and r["molecules"] == 1 and not r["timed_out"]]
    by_kind: dict[str, list[dict]] = {}
    for r in curve:
        by_kind.setdefault(r["kind"], []).append(r)
    for kind, points in by_kind.items():
        points.sort(key=lambda r: r["max_heavy_atoms"])
        slopes = [math.log(b["seconds"] / a["seconds"]) / math.log(b["max_heavy_atoms"] / a["max_heavy_atoms"])
                  for a, b in zip(points, points[1:])]
        print(f"{kind}: log-log slopes after (1 = linear): {', '.join(f'{s:.2f}' for s in slopes)}")


if __name__ == "__main__":
    main()
