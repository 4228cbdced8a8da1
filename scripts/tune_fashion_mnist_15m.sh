#!/usr/bin/env bash
# Tunes every registered method for the fashion-mnist-15m recipes (issue 19) and confirms each at
# 15 minutes: the leaderboard of all methods at one 15-minute CPU budget, 3 seeds each.
#
#   scripts/tune_fashion_mnist_15m.sh [DB]            # default: fm15.sqlite
#
# Per method, in order:
#   1. a 4-trial study at a 3-minute budget on the validation split (sweeps/fashion-mnist-15m/
#      METHOD.yaml: the learning rate and the method's own knob, trial 0 its defaults), with the
#      knobs every method shares fixed (SHARED below: what the SimCLR exploration chose);
#      SimCLR's study is the exploration itself (sweeps/explore/simclr-fashion-mnist.yaml);
#   2. its best trial trained again for 15 minutes with seeds +1, +2, +3 (--confirm-set
#      train.budget_s=900), each evaluated on the test split by a linear probe (3x3 grid) and a
#      kNN;
#   3. sslbench sweep best --recipe-out recipes/fashion-mnist-15m/METHOD.yaml.
#
# Every budget is wall-clock: run it alone on the machine (the contention each run saw is in its
# summary, others_cpu). Resumable: the same command continues each study from its journal and adds
# only the confirmations still missing, one seed per step. A file DB.stop makes it stop cleanly
# before its next step (a 15-minute confirmation killed half-way starts again from its first
# step): `touch fm15.sqlite.stop`, then wait.
#
# METHODS (default: simclr, then every other registered method), TRIAL_BUDGET (3m), CONFIRM_S
# (900), RECIPES (recipes/fashion-mnist-15m: where the recipe files go) and EXTRA (key=value
# overrides for every run) change what runs. A smoke run of the pipeline:
#   METHODS=byol TRIAL_BUDGET=10s CONFIRM_S=10 RECIPES=/tmp/r EXTRA="eval.linear.epochs=2" \
#       scripts/tune_fashion_mnist_15m.sh /tmp/t.sqlite
#
# About 4 minutes per trial and 17 per confirmation: 12 hours for the 13 methods on 2 CPU cores.
set -euo pipefail
DB=${1:-fm15.sqlite}
TRIAL_BUDGET=${TRIAL_BUDGET:-3m}
CONFIRM_S=${CONFIRM_S:-900}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RECIPES=${RECIPES:-$ROOT/recipes/fashion-mnist-15m}
# What the SimCLR exploration chose at 3 minutes, its top three trials rounded (they differ by less
# than a seed's noise): docs/fashion-mnist-15m.md. The projector, lr, weight decay and the
# method's own knobs stay each method's.
SHARED=(model.width=64 augment.crop_min_scale=0.5 augment.jitter_prob=0.6 augment.hflip_prob=0.5
        augment.rotation_prob=0.3 augment.blur_prob=0.0 train.batch_size=256)
METHODS=${METHODS:-simclr $(python -c "from sslbench.methods import method_names
print(*(m for m in method_names() if m != 'simclr'))")}

stop_requested() {
    if [ -e "$DB.stop" ]; then echo "found $DB.stop: stopping before the next step"; return 0; fi
    return 1
}

mkdir -p "$RECIPES"
for method in $METHODS; do
    if [ -e "$RECIPES/$method.yaml" ]; then echo "$method: $RECIPES/$method.yaml written"; continue; fi
    if [ "$method" = simclr ]; then
        study=simclr-explore
        search=(--space "$ROOT/sweeps/explore/simclr-fashion-mnist.yaml")
    else
        study=$method-fm15
        search=(--space "$ROOT/sweeps/fashion-mnist-15m/$method.yaml")
        for key in "${SHARED[@]}"; do search+=(--set "$key"); done
    fi
    for key in ${EXTRA:-}; do search+=(--set "$key"); done
    stop_requested && exit 0
    python -m sslbench sweep "$method" "${search[@]}" --study "$study" --budget "$TRIAL_BUDGET" --db "$DB"
    for n in 1 2 3; do  # one confirmation per step, so a stop loses at most one
        stop_requested && exit 0
        python -m sslbench sweep "$method" "${search[@]}" --study "$study" --budget "$TRIAL_BUDGET" --db "$DB" \
            --confirm "$n" --confirm-set train.budget_s="$CONFIRM_S"
    done
    python -m sslbench sweep best "$study" --db "$DB" \
        --recipe-out "$RECIPES/$method.yaml"
done
