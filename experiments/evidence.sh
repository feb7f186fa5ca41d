#!/usr/bin/env bash
# The paper's evidence on the CPU presets (issue 20), one step after another (2 cores: never two
# at once). Every step resumes where it stopped, so the script can be re-run after an interruption.
#   bash experiments/evidence.sh [DATA_ROOT]     (about 3 hours on 2 cores; each line says its share)
# The times were estimated with the presets of 2026-11-24; since commit 0432267 `cpu-mnist` and
# `cpu-fashion` search fewer block-0 generations, so their steps should take less.
set -euo pipefail
DATA=${1:-data}
RS=".venv/bin/repsearch"
SIZE=2000   # images per dataset for Tables 1/2: 3 seeds x {no aug, aug} x {all, skip0} fit the budget

# Tables 1/2 across datasets, with Figures 5-7 in each run directory (~25 min per dataset)
for preset in cpu-mnist cpu-fashion cpu-cifar10; do
  $RS run --preset $preset --data-root "$DATA" --seeds 3 --set data.subset=$SIZE \
    --set 'run.augment_variants=[false,true]' --set 'run.supervision_variants=["all","skip0"]' \
    --out runs/evidence-$preset-$SIZE --no-progress
done
$RS tables runs/evidence-cpu-mnist-$SIZE runs/evidence-cpu-fashion-$SIZE runs/evidence-cpu-cifar10-$SIZE \
  --out runs/evidence-tables

# Figure 4 on MNIST (~50 min): population 3..24 at the preset's generations, generations x1/4..x1
$RS sweep --preset cpu-mnist --data-root "$DATA" --set data.subset=$SIZE --pop-sizes 3,6,12,24 \
  --generation-scales 0.25,0.5,1 --out runs/evidence-sweep-mnist --no-progress

$RS report runs/evidence-cpu-mnist-$SIZE runs/evidence-cpu-fashion-$SIZE runs/evidence-cpu-cifar10-$SIZE \
  runs/evidence-sweep-mnist --out runs/evidence-report.html
