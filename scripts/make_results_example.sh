#!/usr/bin/env bash
# Regenerates results.sqlite.example on Fashion-MNIST (ConvNet width 32, batch 256, defaults
# otherwise): every registered method at one equal wall-clock budget, SEEDS seeds each, evaluated
# by a linear probe and a kNN on the test split; then a TRIALS-trial BYOL sweep at the same budget,
# chosen on the validation split and its best trial confirmed with SEEDS fresh seeds on the test
# split. A wall-clock budget is only fair on a machine doing nothing else: run it on a quiet one.
#
#   scripts/make_results_example.sh [DB] [BUDGET] [SEEDS] [TRIALS]
#   scripts/make_results_example.sh                                   # results.sqlite.example 2m 3 12
#
# METHODS (default: every registered method) and OVERRIDES (config key=value for every run) make
# a smoke run of the same pipeline:
#   METHODS="simclr byol" OVERRIDES="eval.linear.epochs=10" \
#       scripts/make_results_example.sh /tmp/t.sqlite 20s 2 2
#
# About (13 methods × SEEDS runs + TRIALS trials + SEEDS confirmations) × (BUDGET + ~1 min of
# evaluation): 2 h 30 min with the defaults on 2 CPU cores. Then: python scripts/docs_tables.py
set -euo pipefail
DB=${1:-results.sqlite.example}
BUDGET=${2:-2m}
SEEDS=${3:-3}
TRIALS=${4:-12}
JOURNAL="${DB%.*}.optuna.log"  # the sweep's Optuna journal, beside the database
if [ -e "$DB" ] || [ -e "$JOURNAL" ]; then
    echo "error: $DB or $JOURNAL exists; move them away first (the script adds runs)" >&2
    exit 2
fi
# every registered method unless METHODS names some (a new method joins without editing this)
METHODS=${METHODS:-$(python -c "from sslbench.methods import method_names; print(*method_names())")}
read -r -a overrides <<< "${OVERRIDES:-}"
sets=()
for override in "${overrides[@]}"; do sets+=(--set "$override"); done
for method in $METHODS; do
    python -m sslbench pretrain "$method" --budget "$BUDGET" --seeds "$SEEDS" --eval linear,knn \
        --db "$DB" --quiet "${overrides[@]}"
done
python -m sslbench sweep byol --trials "$TRIALS" --study byol-fm --budget "$BUDGET" \
    --confirm "$SEEDS" --db "$DB" --quiet "${sets[@]}"
