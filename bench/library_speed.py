"""Library prediction at scale: molecules/s and peak memory of the shipped model's prediction path on a library
built offline (MOSES plus larger BRICS recombinations of 40–300 heavy atoms, a tenth of it; no Lipophilicity
molecule), for the shipped ensemble and one of its members, in one process and on a local Ray; and the end-to-end time
against the members' bare forward passes on the same molecules (the floor on this CPU).

    .venv/bin/python bench/library_speed.py --size 100000 --memory-sizes 10000 100000
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python bench/library_speed.py ...   # as on a CPU without AVX512 (all four): int8 linear layers

Every measurement runs in a fresh process (its peak resident memory is its own; for Ray, the driver's only).
Prints the CPU kind (AMX, AVX512-BF16 or neither: prediction precision follows it) and a table; resumes from its JSON
(one row per finished measurement; --output, default bench/results/library_speed.json). The library is cached
under --work.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from peak_memory import peak_resident_mb


def build_library(size: int, path: Path, seed: int = 0) -> None:
    """``size`` molecules: nine tenths MOSES, one tenth BRICS recombinations of 40–300 heavy atoms; no
    Lipophilicity molecule (compared canonically)."""
    from chemlm_engine.data import load_lipophilicity
    from chemlm_engine.methods.pretrain.corpus import load_moses_smiles
    from chemlm_engine.methods.pretrain.drug_corpus import recombine
    from chemlm_engine.molecules import canonicalize

    rng = np.random.default_rng(seed)
    moses = load_moses_smiles()
    large = recombine([moses[i] for i in rng.choice(len(moses), 20_000, replace=False)], size // 10, (40, 300), seed)
    small = [moses[i] for i in rng.choice(len(moses), size, replace=False)]
    known = set(load_lipophilicity()[0].smiles)
    keep = [s for s in large + small if canonicalize(s) not in known][:size]
    order = rng.permutation(len(keep))
    pd.DataFrame({"id": [f"L{i}" for i in range(len(keep))], "smiles": [keep[i] for i in order]}).to_csv(path,
                                                                                                      index=False)


def one_member(ensemble: str, folder: Path) -> Path:
    """The ensemble's first member as a model folder of its own (with the tokenizer and training set)."""
    from chemlm_engine.predict import load_predictor

    if not folder.exists():
        predictor = load_predictor(ensemble, "cpu")
        predictor.members[0].save(folder)
    return folder


def measure(model: str, library: Path, executor: str, work: Path) -> dict:
    """One measurement (run in a fresh process by :func:`main`)."""
    import torch

    from chemlm_engine.inference import encode_smiles, predict_encoded, resolve_precision
    from chemlm_engine.library import predict_library, predict_library_ray
    from chemlm_engine.predict import Ensemble, load_predictor

    output = work / f"out-{executor}-{time.time_ns()}"
    started = time.perf_counter()
    if executor == "ray":
        summary = predict_library_ray(model, library, output, workers=1, cpus_per_worker=1)
    else:
        summary = predict_library(model, library, output.with_suffix(".parquet"))
    seconds = time.perf_counter() - started
    peak_mb = peak_resident_mb()
    row = {"rows": summary.rows, "invalid": summary.invalid, "seconds": seconds,
           "molecules_per_s": summary.rows / seconds, "peak_rss_mb": peak_mb, "threads": torch.get_num_threads()}
    if executor == "local":  # the floor: the members' forward passes alone, tokens and descriptors ready
        prepared = pd.read_parquet(output.with_suffix(".parquet"), columns=["canonical_smiles", "error"])
        smiles = prepared.loc[prepared["error"].isna(), "canonical_smiles"].tolist()
        predictor = load_predictor(model, "cpu")
        members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
        bare = 0.0
        for member in members:
            encoded = encode_smiles(member.tokenizer, smiles, member.max_tokens)
            features = member.molecule_features(smiles)
            start = time.perf_counter()
            predict_encoded(member, encoded, features=features)
            bare += time.perf_counter() - start
        row.update(bare_forward_s=bare, end_to_end_over_bare=seconds / bare,
                   precision=resolve_precision(members[0].inference_precision, torch.device("cpu")))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--memory-sizes", nargs="+", type=int, default=[10_000], help="extra local ensemble runs "
                        "on the library's first N rows: is peak memory flat in the library size?")
    parser.add_argument("--model", default=None, help="an ensemble folder (default: the shipped model)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chemlm-library-speed")
    parser.add_argument("--output", type=Path, default=Path("bench/results/library_speed.json"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one measurement, JSON in and out
    args = parser.parse_args()
    if args.measure:
        job = json.loads(args.measure)
        print(json.dumps(measure(job["model"], Path(job["library"]), job["executor"], Path(job["work"]))))
        return
    from chemlm_engine.inference import cpu_kind
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    args.work.mkdir(parents=True, exist_ok=True)
    ensemble = args.model or DEFAULT_REGRESSOR
    library = args.work / f"library-{args.size}.csv"
    if not library.exists():
        build_library(args.size, library)
    cpu = cpu_kind()
    print(f"CPU: {cpu}", flush=True)
    member = str(one_member(ensemble, args.work / "one-member"))
    plan = [("ensemble", ensemble, "local", args.size), ("one member", member, "local", args.size),
            ("ensemble", ensemble, "ray", args.size)]
    plan += [("ensemble", ensemble, "local", n) for n in args.memory_sizes if n != args.size]
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for name, model, executor, size in plan:
        key = {"model": name, "executor": executor, "library_rows": size, "cpu": cpu}
        if any({k: r[k] for k in key} == key for r in rows):
            continue  # resume: already measured
        part = library if size >= args.size else args.work / f"library-{size}.csv"
        if not part.exists():
            pd.read_csv(library, nrows=size).to_csv(part, index=False)
        job = json.dumps({"model": model, "library": str(part), "executor": executor, "work": str(args.work)})
        done = subprocess.run([sys.executable, __file__, "--measure", job], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{name} / {executor} failed:\n{done.stderr[-3000:]}")
        rows.append({**key, **json.loads(done.stdout.strip().splitlines()[-1])})
        print(json.dumps(rows[-1]), flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))
    print("\n| model | executor | rows | molecules / s | peak memory (MB) | bare forward (s) | end-to-end / bare |"
          "\n|---|---|---|---|---|---|---|")
    for r in rows:
        floor = f"{r['bare_forward_s']:.1f} | {r['end_to_end_over_bare']:.2f}" if "bare_forward_s" in r else "– | –"
        print(f"| {r['model']} | {r['executor']} | {r['rows']:,} | {r['molecules_per_s']:.0f} | {r['peak_rss_mb']:.0f}"
              f" | {floor} |")


if __name__ == "__main__":
    main()
