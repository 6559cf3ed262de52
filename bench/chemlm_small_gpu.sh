#!/usr/bin/env bash
# ChemLM-small (issue #24) on one lent GPU inside its few minutes: pretrain a ~25 M-parameter SMILES BERT (hidden
# 512, 8 layers) from scratch on a drug-like corpus for a fixed time (masked tokens + ~220 RDKit / ionisation
# targets with 20 % target dropout, a random spelling per draw), then fine-tune it and ChemLM-mini with the shipped
# recipe (one regressor, descriptors in the head) on random and scaffold splits, seeds 0-2, side by side: one
# process per split and seed on the one GPU. Validation is the column to choose by; test is reported.
#
#   bench/chemlm_small_gpu.sh CORPUS.csv OUT_DIR [PRETRAIN_SECONDS (default 210)] [backbone_ablation.py args]
#
# CORPUS.csv: `bench/small_corpus.py` (the drug-like corpus plus MOSES molecules, built on a CPU beforehand).
# OUT_DIR receives results.json (one row per backbone, split and seed), pretrain_summary.json, eval_log.jsonl,
# MODEL_CARD.md and logs.txt. SMOKE=1 shrinks the model and the steps to check the script on a CPU.
set -uo pipefail
corpus=$1; final=$2; budget=${3:-210}; shift $(( $# < 3 ? $# : 3 ))
py=${PYTHON:-python3}
work=$(mktemp -d)
mkdir -p "$final"
export PYTHONUNBUFFERED=1 CHEMLM_HOME=$work/home
size=(--hidden-size 512 --num-layers 8 --num-heads 8 --intermediate-size 2048 --batch-size 512 --max-steps 6000
      --warmup-steps 500 --checkpoint-every 1000)
[ "${SMOKE:-0}" = 1 ] && size=(--hidden-size 32 --num-layers 2 --num-heads 2 --intermediate-size 64 --batch-size 16
                               --max-steps 1000 --warmup-steps 2 --checkpoint-every 4)
start=$(date +%s)
timeout $((budget + ${PREPARE_SECONDS:-240})) $py -m chemlm_engine pretrain --corpus "$corpus" \
    --output "$work/chemlm-small" "${size[@]}" \
    --learning-rate 5e-4 --descriptor-targets rdkit --target-dropout 0.2 --randomize-smiles --spellings 8 \
    --time-budget "$budget" --name chemlm-small > "$work/pretrain.log" 2>&1
echo "pretraining: exit $? after $(( $(date +%s) - start )) s"
prepared=$(stat -c %Y "$work"/chemlm-small/corpus-*.parquet 2>/dev/null) &&
    echo "corpus prepared after $((prepared - start)) s"
ls -l --time-style=+%s "$work/chemlm-small" "$work"/chemlm-small/checkpoint-* 2>&1 | tail -n 30
tr '\r' '\n' < "$work/pretrain.log" | grep -v '^$' | tail -n 20
for f in pretrain_summary.json eval_log.jsonl MODEL_CARD.md; do cp "$work/chemlm-small/$f" "$final/" 2>/dev/null; done
small="$work/chemlm-small"  # a pretraining cut by its time limit still leaves its last checkpoint to fine-tune
[ -f "$small/tokenizer.json" ] || { small="$work/chemlm-small/checkpoint/model"; echo "fine-tuning $small"; }
for split in random scaffold; do for seed in 0 1 2; do
    OMP_NUM_THREADS=2 timeout "${FINETUNE_SECONDS:-240}" $py bench/backbone_ablation.py --backbone small="$small" \
        --backbone mini=assets/chemlm-mini --splits $split --seeds $seed --output "$work/ft-$split-$seed.json" "$@" \
        > "$work/ft-$split-$seed.log" 2>&1 &
done; done
wait
echo "fine-tuning done after $(( $(date +%s) - start )) s"
$py -c "import json, sys, glob; print(json.dumps([r for f in sorted(glob.glob(sys.argv[1] + '/ft-*.json'))
                                                  for r in json.load(open(f))], indent=1))" "$work" \
    > "$final/results.json"
tail -n 8 "$work"/*.log > "$final/logs.txt"
$py - "$final/results.json" <<'EOF'
import json, sys
import numpy as np
rows = json.load(open(sys.argv[1]))
for split in ("random", "scaffold"):
    for name in ("mini", "small"):
        got = [r for r in rows if r["split"] == split and r["backbone"] == name]
        if got:
            print(f"{split:8s} {name:5s} n={len(got)} val R² {np.mean([r['val_r2'] for r in got]):.3f} "
                  f"test R² {np.mean([r['test_r2'] for r in got]):.3f}")
EOF
