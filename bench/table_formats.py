"""What reading a library costs by its file kind: Lipophilicity's 4,200 molecules (with a name and logD column) written
as CSV, SMILES file, SD file (RDKit's SDWriter, 2D coordinates) and Excel workbook, plain and gzip-compressed, then
read through the one table reader every path uses (`tables.iter_table`) and counted (`tables.count_rows`). Prints
seconds and milliseconds per row; nothing is predicted (for that, see predict_speed.py: ~10 ms per molecule).

    .venv/bin/python bench/table_formats.py [--repeats 3]
"""
from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import pandas as pd
from rdkit import Chem

from chemlm_engine.data import load_lipophilicity
from chemlm_engine.tables import count_rows, iter_table, write_xlsx


def write_all(folder: Path) -> list[Path]:
    lipo, _ = load_lipophilicity()
    frame = pd.DataFrame({"smiles": lipo.smiles, "name": [f"L{i}" for i in range(len(lipo.smiles))],
                          "logD": lipo.labels})
    frame.to_csv(folder / "lipo.csv", index=False)
    (folder / "lipo.smi").write_text("".join(f"{s} {n}\n" for s, n in zip(frame.smiles, frame.name)))
    with Chem.SDWriter(str(folder / "lipo.sdf")) as writer:
        for smiles, name, label in frame.itertuples(index=False):
            mol = Chem.MolFromSmiles(smiles)
            mol.SetProp("_Name", name)
            mol.SetProp("logD", str(label))
            writer.write(mol)
    write_xlsx(frame, folder / "lipo.xlsx")
    plain = [folder / f"lipo.{kind}" for kind in ("csv", "smi", "sdf", "xlsx")]
    for path in plain[:3]:  # a workbook is compressed inside
        (folder / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    return plain + [folder / f"{path.name}.gz" for path in plain[:3]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="reads per file (the fastest is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("| file | size (MB) | rows | read (s) | ms per row | count_rows (s) |\n|---|---|---|---|---|---|")
        for path in write_all(Path(folder)):
            reads, counts = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                rows = sum(len(table.frame) for table in iter_table(path))
                reads.append(time.perf_counter() - start)
                start = time.perf_counter()
                counted = count_rows(path)
                counts.append(time.perf_counter() - start)
            assert counted == rows, (path.name, counted, rows)
            print(f"| {path.name} | {path.stat().st_size / 1e6:.2f} | {rows:,} | {min(reads):.2f} | "
                  f"{1000 * min(reads) / rows:.3f} | {min(counts):.2f} |")


if __name__ == "__main__":
    main()
