#!/usr/bin/env bash
# Regenerates results.sqlite.example on Fashion-MNIST (ConvNet width 32, batch 256, defaults
# otherwise): every registered method at one equal compute budget, SEEDS seeds each, evaluated by
# a linear probe and a kNN on the test split; then a TRIALS-trial BYOL sweep at the same budget,
# chosen on the validation split and its best trial confirmed with SEEDS fresh seeds on the test
# split.
#
#   scripts/make_results_example.sh [DB] [BUDGET] [SEEDS] [TRIALS]
#   scripts/make_results_example.sh                         # results.sqlite.example 3e12flop 3 12
#
# BUDGET is training FLOPs (3e12flop: --budget-flops), optimizer steps (200steps:
# --budget-steps) or wall-clock time (2m: --budget). The shipped file uses FLOPs: the same number
# of steps on any machine, under any load, so the regeneration can be stopped and resumed across
# machines and sessions and still compare every method at one budget. A wall-clock budget is only
# fair when every run is made on one machine doing nothing else.
#
# Resumable: re-running the same command (same DB and arguments) adds only what is missing — the
# seeds of a method without a completed run at this budget, the sweep's remaining trials (the
# study resumes from its journal) and the confirmations not yet made. Runs stopped on the way stay
# in the database as KILLED/FAILED (the leaderboard counts completed runs only).
#
# METHODS (default: every registered method) and OVERRIDES (config key=value for every run) make
# a smoke run of the same pipeline:
#   METHODS="simclr byol" OVERRIDES="eval.linear.epochs=10" \
#       scripts/make_results_example.sh /tmp/t.sqlite 20steps 2 2
#
# JOBS=N runs N jobs side by side (the sweep is one job, each method's seed group another), each
# with nproc/N threads.
#
# About (13 methods × SEEDS runs + TRIALS trials + SEEDS confirmations) × (training + ~1.5 min of
# evaluation): with 3e12 FLOP (≈ 130 SimCLR steps), 3 seeds and 12 trials, 3 to 4 hours on 2 CPU
# cores of 2026. Then: python scripts/docs_tables.py
set -euo pipefail
DB=${1:-results.sqlite.example}
BUDGET=${2:-3e12flop}
SEEDS=${3:-3}
TRIALS=${4:-12}
JOBS=${JOBS:-1}
if ! [[ "$JOBS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: JOBS=$JOBS: give a count of jobs to run side by side (1, 2, ...)" >&2
    exit 2
fi
case "$BUDGET" in
    *flop) budget_flag=(--budget-flops "${BUDGET%flop}"); budget_key="train.budget_flops=${BUDGET%flop}" ;;
    *steps) budget_flag=(--budget-steps "${BUDGET%steps}"); budget_key="train.budget_steps=${BUDGET%steps}" ;;
    *) budget_flag=(--budget "$BUDGET")
       budget_key="train.budget_s=$(python -c "from sslbench.config.budget import parse_duration as p; print(p('$BUDGET'))")" ;;
esac
if [ "$JOBS" -gt 1 ]; then
    threads=$(( $(nproc) / JOBS ))
    export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
fi
# every registered method unless METHODS names some (a new method joins without editing this)
METHODS=${METHODS:-$(python -c "from sslbench.methods import method_names; print(*method_names())")}
export DB SEEDS TRIALS OVERRIDES="${OVERRIDES:-}" BUDGET_FLAG="${budget_flag[*]}" BUDGET_KEY="$budget_key"

missing_seeds() {  # the seeds 0..SEEDS-1 of method $1 without a completed, evaluated run here
    [ -e "$DB" ] || { seq -s, 0 $(( SEEDS - 1 )); return; }
    python - "$1" <<'EOF'
import os, sys
from sslbench.config import apply_dotted, parse_overrides
from sslbench.store import Store

method, seeds = sys.argv[1], int(os.environ["SEEDS"])
key, _, value = os.environ["BUDGET_KEY"].partition("=")
section, name = key.split(".")
done = set()
with Store.open(os.environ["DB"], create=False) as store:
    for run in store.list_runs(kind="pretrain", method=method, status="COMPLETED"):
        if run.sweep_id is not None or float(run.config[section].get(name) or 0) != float(value):
            continue
        kinds = {c.kind for c in store.children(run.id) if c.status == "COMPLETED"}
        if {"linear", "knn"} <= kinds:
            done.add(run.seed)
print(",".join(str(s) for s in range(seeds) if s not in done))
EOF
}
export -f missing_seeds

job() {  # one job: "sweep" (the BYOL sweep and its confirmation) or a method's missing seeds
    local overrides sets=() override seeds budget_flag
    read -r -a overrides <<< "$OVERRIDES"
    read -r -a budget_flag <<< "$BUDGET_FLAG"
    for override in "${overrides[@]}"; do sets+=(--set "$override"); done
    if [ "$1" = sweep ]; then
        python -m sslbench sweep byol --trials "$TRIALS" --study byol-fm --set "$BUDGET_KEY" \
            --confirm "$SEEDS" --db "$DB" --quiet "${sets[@]}"
    else
        seeds=$(missing_seeds "$1")
        if [ -z "$seeds" ]; then echo "$1: every seed done"; return; fi
        # one seed is --seed S (--seeds N would be a count)
        if [[ "$seeds" == *,* ]]; then seeds=(--seeds "$seeds"); else seeds=(--seed "$seeds"); fi
        python -m sslbench pretrain "$1" "${budget_flag[@]}" "${seeds[@]}" \
            --eval linear,knn --db "$DB" --quiet "${overrides[@]}"
    fi
}
export -f job
# the sweep first: it is the longest job, so the method groups fill the other slots around it
printf '%s\n' sweep $METHODS | xargs -P "$JOBS" -I{} bash -c 'job "$1"' _ {}
