#!/usr/bin/env bash
# Regenerates results.sqlite.example: real Fashion-MNIST runs on CPU (2 cores: about 75 minutes).
# Every method for 2 epochs (ConvNet width 32, batch 256, defaults otherwise) with a linear probe
# and a kNN evaluation, then a 12-trial BYOL sweep at the same 2-epoch budget (trial 0 = defaults).
set -euo pipefail
DB=${1:-results.sqlite.example}
# every registered method (a new one joins without editing this script)
for method in $(python -c "from sslbench.methods import method_names; print(*method_names())"); do
    sslbench pretrain "$method" --epochs 2 --eval linear,knn --db "$DB" --quiet
done
sslbench sweep byol --trials 12 --study byol-fm --db "$DB" --quiet
