"""What browsing a finished library prediction costs on the Predict page ("Library predictions"): the default model
predicts 2,000 MOSES molecules (every 800th), that output is tiled to --rows rows as the streamed
path writes it, and `library_results` reads it: the distribution (once per library: cached by the page) and a logD
window (first 100 rows and the count; then every row of a narrow window, as its CSV download reads them). Prints
seconds and this process's peak memory.

    .venv/bin/python bench/library_results.py [--rows 1000000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from chemlm_engine.library_results import WINDOW_BATCH, library_window, predictions_of
from peak_memory import peak_resident_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # the reading process
    args = parser.parse_args()
    if args.read:
        return read(args.read)
    # here, not above: the reading process imports only what the page's reading needs (no torch)
    from chemlm_engine.library import predict_library
    from chemlm_engine.methods.pretrain.corpus import load_moses_smiles
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    with tempfile.TemporaryDirectory() as folder:
        library = Path(folder) / "library.csv"
        smiles = load_moses_smiles()[::800][:2000]
        library.write_text("id,smiles\n" + "".join(f"Z{i},{s}\n" for i, s in enumerate(smiles)))
        predicted = Path(folder) / "predicted.parquet"
        predict_library(DEFAULT_REGRESSOR, library, predicted)
        table = pq.read_table(predicted)
        output = Path(folder) / "predictions.parquet"
        tiles = -(-args.rows // table.num_rows)
        pq.write_table(pa.concat_tables([table] * tiles).slice(0, args.rows), output, row_group_size=WINDOW_BATCH)
        print(f"{args.rows:,} rows, {output.stat().st_size / 1e6:.0f} MB of Parquet; read in a fresh process:")
        subprocess.run([sys.executable, __file__, "--read", str(output)], check=True)


def read(output: Path) -> None:
    print(f"memory after imports: {peak_resident_mb():.0f} MB")
    for what, reading in (("distribution (predictions_of)", lambda: predictions_of(output)),
                          ("window 1-3, inside the domain, first 100", lambda: library_window(output, 1, 3, True, 100)),
                          ("window 1-3, the 100 most certain", lambda: library_window(output, 1, 3, False, 100,
                                                                                     "most certain first")),
                          ("window 2.0-2.1, every row", lambda: library_window(output, 2.0, 2.1))):
        start = time.perf_counter()
        result = reading()
        found = len(result[0]) if what.startswith("distribution") else result[1]
        print(f"{what}: {time.perf_counter() - start:.2f} s ({found:,} rows)")
    print(f"peak memory of the reading process: {peak_resident_mb():.0f} MB")


if __name__ == "__main__":
    main()
