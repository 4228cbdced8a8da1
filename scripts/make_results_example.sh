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
# JOBS=N runs N jobs side by side (the sweep is one job, each method's seed group another), each
# with nproc/N threads, so every run trains under the same conditions: JOBS=2 on 2 cores gives each
# run one core while another run holds the other one, for the whole regeneration.
#
# About (13 methods × SEEDS runs + TRIALS trials + SEEDS confirmations) × (BUDGET + ~1 min of
# evaluation) / JOBS: 2 h 30 min with the defaults and JOBS=1 on 2 CPU cores, about half with
# JOBS=2. Then: python scripts/docs_tables.py
set -euo pipefail
DB=${1:-results.sqlite.example}
BUDGET=${2:-2m}
SEEDS=${3:-3}
TRIALS=${4:-12}
JOBS=${JOBS:-1}
JOURNAL="${DB%.*}.optuna.log"  # the sweep's Optuna journal, beside the database
if [ -e "$DB" ] || [ -e "$JOURNAL" ]; then
    echo "error: $DB or $JOURNAL exists; move them away first (the script adds runs)" >&2
    exit 2
fi
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: JOBS=$JOBS: give a count of jobs to run side by side (1, 2, ...)" >&2
    exit 2
fi
if [ "$JOBS" -gt 1 ]; then
    threads=$(( $(nproc) / JOBS ))
    export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
fi
# every registered method unless METHODS names some (a new method joins without editing this)
METHODS=${METHODS:-$(python -c "from sslbench.methods import method_names; print(*method_names())")}
export DB BUDGET SEEDS TRIALS OVERRIDES="${OVERRIDES:-}"

job() {  # one job: "sweep" (the BYOL sweep and its confirmation) or a method's seed group
    local overrides sets=() override
    read -r -a overrides <<< "$OVERRIDES"
    for override in "${overrides[@]}"; do sets+=(--set "$override"); done
    if [ "$1" = sweep ]; then
        python -m sslbench sweep byol --trials "$TRIALS" --study byol-fm --budget "$BUDGET" \
            --confirm "$SEEDS" --db "$DB" --quiet "${sets[@]}"
    else
        python -m sslbench pretrain "$1" --budget "$BUDGET" --seeds "$SEEDS" --eval linear,knn \
            --db "$DB" --quiet "${overrides[@]}"
    fi
}
export -f job
# the sweep first: it is the longest job, so the method groups fill the other slots around it
printf '%s\n' sweep $METHODS | xargs -P "$JOBS" -I{} bash -c 'job "$1"' _ {}
