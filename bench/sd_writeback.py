"""What writing predictions back into a large SD file costs (`chemlm predict --input X.sdf --output Y.sdf` over
100,000 records, and the app's "Download (SD file)" of a library job): 300 Lipophilicity molecules written as an SD
file by RDKit and predicted by the default model, both tiled to --records, then the copy with the results written
record by record to a file (streamed) and built in memory, each in a fresh process. Prints seconds and each process's
peak memory (and after its imports alone).

    .venv/bin/python bench/sd_writeback.py [--records 200000]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peak_memory import peak_resident_mb


def write_back(results: Path, source: Path, streamed: bool) -> None:
    from chemlm_engine.library import annotated_library

    imported = peak_resident_mb()
    start = time.perf_counter()
    target = source.with_name("annotated.sdf")
    if streamed:
        annotated_library(results, source, target)
    else:
        target.write_bytes(annotated_library(results, source) or b"")
    print(f"{'streamed to a file' if streamed else 'built in memory'}: {time.perf_counter() - start:.1f} s, peak "
          f"{peak_resident_mb():,.0f} MB ({imported:,.0f} MB after the imports)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--write", nargs=3, help=argparse.SUPPRESS)  # the writing process: results, source, mode
    args = parser.parse_args()
    if args.write:
        return write_back(Path(args.write[0]), Path(args.write[1]), args.write[2] == "streamed")
    import pyarrow as pa
    import pyarrow.parquet as pq
    from rdkit import Chem

    from chemlm_engine.data import load_lipophilicity
    from chemlm_engine.library import predict_library
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    with tempfile.TemporaryDirectory() as folder:
        small, source, results = (Path(folder) / name for name in ("300.sdf", "library.sdf", "results.parquet"))
        with Chem.SDWriter(str(small)) as writer:
            for smiles in load_lipophilicity()[0].smiles[:300]:
                writer.write(Chem.MolFromSmiles(smiles))
        predict_library(DEFAULT_REGRESSOR, small, Path(folder) / "300.parquet")
        tiles = -(-args.records // 300)
        pq.write_table(pa.concat_tables([pq.read_table(Path(folder) / "300.parquet")] * tiles), results)
        with open(source, "wb") as out:
            out.writelines([small.read_bytes()] * tiles)
        print(f"{300 * tiles:,} records, {source.stat().st_size / 1e6:,.0f} MB")
        for mode in ("streamed", "in memory"):
            subprocess.run([sys.executable, __file__, "--write", str(results), str(source), mode], check=True)


if __name__ == "__main__":
    main()
