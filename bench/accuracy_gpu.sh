#!/usr/bin/env bash
# The accuracy ablation, the validation-chosen ensemble and the shipped ensemble in one pass on one GPU
# (what the lent H200 ran; on 2 CPU cores the same steps take about 10 hours).
#
#   bench/accuracy_gpu.sh OUT_DIR [EXTRA lipo_accuracy.py ARGS, e.g. --subset 200 --epochs 2 for a smoke test]
#
# OUT_DIR receives results.json (every row), logs.txt and the shipped folder as ship.tar.part-*; SHIP_ARGS adds
# arguments to the shipped model's `train` command (a smoke test's --subset / --epochs).
#
# 1. ChemLM-mini as today, + descriptors, + descriptors + SMILES augmentation: random and scaffold split,
#    seeds 0-2, one process per split and seed (the model is small: one GPU serves six at once).
# 2. The variant with the best mean validation R² over those six splits (never the test split) is chosen.
# 3. A 5-member ensemble of it on every split and seed, and the shipped ensemble (train + validation of random
#    split seed 0 minus a 10 % calibration part), in parallel; the shipped folder is packed into OUT_DIR.
set -uo pipefail
final=$1; shift
out=$(mktemp -d)
mkdir -p "$final"
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
for split in random scaffold; do for seed in 0 1 2; do
    timeout ${STAGE_SECONDS:-300} $py bench/lipo_accuracy.py --splits $split --seeds $seed \
        --models chemlm chemlm-desc chemlm-desc-aug \
        --output "$out/ablation-$split-$seed.json" "$@" > "$out/ablation-$split-$seed.log" 2>&1 &
done; done
wait
choice=$($py - "$out" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
rows = [r for f in Path(sys.argv[1]).glob("ablation-*.json") for r in json.loads(f.read_text())]
# only splits every variant finished, so a timed-out run cannot tilt the choice
done = [(s, k) for s, k in {(r["split"], r["seed"]) for r in rows}
        if len({r["model"] for r in rows if (r["split"], r["seed"]) == (s, k)}) == 3]
means = {m: np.mean([r["val_r2"] for r in rows if r["model"] == m and (r["split"], r["seed"]) in done])
         for m in ("chemlm", "chemlm-desc", "chemlm-desc-aug")}
print(json.dumps(means), file=sys.stderr)
print(max(means, key=means.get))
EOF
)
echo "validation chose: $choice"
flags=$($py -c "import sys; print({'chemlm': '', 'chemlm-desc': '--descriptors', 'chemlm-desc-aug': '--descriptors --augment'}[sys.argv[1]])" "$choice")
for split in random scaffold; do for seed in 0 1 2; do
    timeout ${STAGE_SECONDS:-300} $py bench/lipo_accuracy.py --splits $split --seeds $seed --models ensemble \
        --ensemble-config "$choice" \
        --output "$out/ensemble-$split-$seed.json" "$@" > "$out/ensemble-$split-$seed.log" 2>&1 &
done; done
CHEMLM_HOME="$out/ship-runs" timeout ${STAGE_SECONDS:-300} $py -m chemlm_engine train --method ensemble --option members=5 --option train_on_val=true \
    --seed 0 $flags ${SHIP_ARGS:-} > "$out/ship.log" 2>&1 &
wait
$py -c "import json, sys, glob; print(json.dumps([r for f in sorted(glob.glob(sys.argv[1] + '/*.json'))
                                                  for r in json.load(open(f))], indent=1))" "$out" > "$final/results.json"
tail -n 5 "$out"/*.log > "$final/logs.txt"
ship=$(ls -d "$out"/ship-runs/*/model 2>/dev/null | head -1)
[ -n "$ship" ] && tar -C "$(dirname "$ship")" -cf - model | split -b 15m - "$final/ship.tar.part-"
tail -n 1 "$out/ship.log"
