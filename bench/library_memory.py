"""Is a streamed library prediction's memory flat in the library's size? Resident memory (VmRSS) after every chunk
of `predict_library` (the shipped model, this CPU's default precision) on the offline library of
`bench/library_speed.py` (nine tenths MOSES, one tenth BRICS recombinations of 40–300 heavy atoms, no
Lipophilicity molecule), and its peak.

    .venv/bin/python bench/library_memory.py --rows 300000

Resumes: the trace is written after every chunk to --output (default bench/results/library_memory.json) and the
prediction itself resumes from its finished chunks; a resumed process starts a new `process` number in the trace
(its memory starts afresh). Prints resident memory at round row counts and the growth per 100,000 rows after the
first 50,000 (when the descriptor cache is full), and whether Python's own objects grew with it (their count and
pymalloc's blocks after each chunk): flat objects with growing memory mean allocator fragmentation, not state that
grows with the library.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from library_speed import build_library


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--chunk-rows", type=int, default=4096)
    parser.add_argument("--model", default=None, help="a model folder (default: the shipped model)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chemlm-library-memory")
    parser.add_argument("--output", type=Path, default=Path("bench/results/library_memory.json"))
    args = parser.parse_args()
    from chemlm_engine.inference import cpu_kind
    from chemlm_engine.library import predict_library
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    args.work.mkdir(parents=True, exist_ok=True)
    library = args.work / f"library-{args.rows}.csv"
    if not library.exists():
        build_library(args.rows, library)
    saved = json.loads(args.output.read_text()) if args.output.exists() else {}
    trace = saved.get("trace", []) if saved.get("rows") == args.rows else []
    process = 1 + max((t["process"] for t in trace), default=0)
    result = {"rows": args.rows, "chunk_rows": args.chunk_rows, "model": args.model or DEFAULT_REGRESSOR,
              "cpu": cpu_kind(),
              "trace": trace}
    print(f"CPU: {result['cpu']}", flush=True)
    started = time.perf_counter()

    def record(done: int, total: int) -> None:
        if trace and done <= trace[-1]["rows"]:
            return  # a chunk an earlier process predicted
        trace.append({"process": process, "rows": done, "rss_mb": round(resident_mb(), 1),
                      "seconds": round(time.perf_counter() - started, 1), "python_objects": len(gc.get_objects()),
                      "python_blocks": sys.getallocatedblocks()})
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1))

    if not trace or trace[-1]["rows"] < args.rows:
        predict_library(result["model"], library, args.work / "out.parquet", chunk_rows=args.chunk_rows,
                        progress=record)
    rows = np.array([t["rows"] for t in trace])
    rss = np.array([t["rss_mb"] for t in trace])
    print("| rows | resident memory (MB) |\n|---|---|")
    for mark in (10_000, 20_000, 50_000, 100_000, 200_000, 300_000, 500_000, 1_000_000):
        if mark <= rows.max():
            print(f"| {mark:,} | {rss[np.searchsorted(rows, mark)]:.0f} |")
    late = rows >= 50_000
    if late.sum() > 2:
        slope = np.polyfit(rows[late], rss[late], 1)[0] * 100_000
        print(f"\nafter 50,000 rows: {slope:+.0f} MB per 100,000 rows (least squares over {late.sum()} chunks); "
              f"peak of the last process {result.get('peak_rss_mb', float('nan')):.0f} MB")
        counted = [t for t, keep in zip(trace, late) if keep and "python_objects" in t]
        if len(counted) > 2:
            for key in ("python_objects", "python_blocks"):
                print(f"{key} from {counted[0]['rows']:,} to {counted[-1]['rows']:,} rows: "
                      f"{counted[0][key]:,} -> {counted[-1][key]:,}")


if __name__ == "__main__":
    main()
