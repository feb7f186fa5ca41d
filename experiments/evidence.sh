#!/usr/bin/env bash
# The paper's evidence on the CPU presets (issue 20), one step after another (2 cores: never two
# at once). Every step resumes where it stopped, so the script can be re-run after an interruption.
#   bash experiments/evidence.sh [DATA_ROOT] [PART ...]     (about 3 hours on 2 cores for all parts)
# PART: cpu-mnist, cpu-fashion, cpu-cifar10 (Tables 1/2 with Figures 5-7, ~25 min each), tables
# (gathers the three), sweep (Figure 4, ~50 min), report; default: all of them in that order. A
# session shorter than the whole can run some parts and keep what they wrote.
# The times were estimated with the presets of 2026-11-24; since commit 0432267 `cpu-mnist` and
# `cpu-fashion` search fewer block-0 generations, so their steps should take less.
set -euo pipefail
DATA=${1:-data}
shift || true
PARTS=${*:-cpu-mnist cpu-fashion cpu-cifar10 tables sweep report}
RS=".venv/bin/repsearch"
SIZE=2000   # images per dataset for Tables 1/2: 3 seeds x {no aug, aug} x {all, skip0} fit the budget
RUNS="runs/evidence-cpu-mnist-$SIZE runs/evidence-cpu-fashion-$SIZE runs/evidence-cpu-cifar10-$SIZE"

for part in $PARTS; do
  case $part in
    cpu-mnist|cpu-fashion|cpu-cifar10)  # Tables 1/2 for one dataset, Figures 5-7 in its run directory
      $RS run --preset "$part" --data-root "$DATA" --seeds 3 --set data.subset=$SIZE \
        --set 'run.augment_variants=[false,true]' --set 'run.supervision_variants=["all","skip0"]' \
        --out "runs/evidence-$part-$SIZE" --no-progress ;;
    tables)  # Tables 1/2 across datasets
      # shellcheck disable=SC2086
      $RS tables $RUNS --out runs/evidence-tables ;;
    sweep)  # Figure 4 on MNIST: population 3..24 at the preset's generations, generations x1/4..x1
      $RS sweep --preset cpu-mnist --data-root "$DATA" --set data.subset=$SIZE --pop-sizes 3,6,12,24 \
        --generation-scales 0.25,0.5,1 --out runs/evidence-sweep-mnist --no-progress ;;
    report)
      # shellcheck disable=SC2086
      $RS report $RUNS runs/evidence-sweep-mnist --out runs/evidence-report.html ;;
    *) echo "evidence.sh: unknown part '$part' (cpu-mnist, cpu-fashion, cpu-cifar10, tables, sweep, report)" >&2
       exit 2 ;;
  esac
done
