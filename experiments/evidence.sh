#!/usr/bin/env bash
# The paper's evidence on the CPU presets, one step after another (2 cores: never two at once).
# Every step resumes where it stopped, so the script can be re-run after an interruption; each step
# copies its run record into results/ and `records` rewrites docs/evidence.md's generated tables.
#   bash experiments/evidence.sh [DATA_ROOT] [PART ...]
# PART (wall times on a 2-core EPYC, 2026-12-04; docs/evidence.md has the measured ones):
#   figure2      Figure 2, fitness scaling on 1,000 MNIST training images (~15 min)
#   figure3      Figure 3, N_eff vs independent runs on MNIST (both filters) and cifar10-jpeg, 200 images each (~6 min)
#   cpu-mnist    Table 1 (MNIST is never augmented, as in the paper) with Figures 5-7
#   cpu-fashion, cpu-cifar10   Tables 1-2 (no augmentation and flips + padded crops) with Figures 5-7
#   sweep        Figure 4 on MNIST
#   records      copy every finished step's record to results/ and regenerate docs/evidence.md's tables
#   report       one HTML page of every step
# default: all of them in that order. SEEDS (default 3) and SIZE (default 2000) set Tables 1-2's runs.
set -euo pipefail
DATA=${1:-data}
shift || true
PARTS=${*:-figure2 figure3 cpu-mnist cpu-fashion cpu-cifar10 sweep records report}
RS=".venv/bin/repsearch"
SEEDS=${SEEDS:-3}
SIZE=${SIZE:-2000}   # images per dataset for Tables 1/2
TABLE_RUNS="runs/evidence-cpu-mnist-$SIZE runs/evidence-cpu-fashion-$SIZE runs/evidence-cpu-cifar10-$SIZE"
STUDY_RUNS="runs/evidence-scaling-mnist runs/evidence-diversity-mnist runs/evidence-diversity-mnist-block runs/evidence-diversity-cifar10"

for part in $PARTS; do
  case $part in
    figure2)  # one block evolved at a time; CE against population (preset's generations) and generations
      $RS scaling --preset cpu-mnist --data-root "$DATA" --images 1000 --pop-sizes 12,24,60,120 \
        --generations 0,10,30,100 --out runs/evidence-scaling-mnist --no-progress ;;
    figure3)  # the paper's filter: a run's solutions count when its final candidate gives p(correct) > 0.5
      $RS diversity --preset cpu-mnist --data-root "$DATA" --images 200 --runs 8 --out runs/evidence-diversity-mnist --no-progress
      $RS diversity --preset cpu-mnist --data-root "$DATA" --images 200 --runs 8 --keep block \
        --out runs/evidence-diversity-mnist-block --no-progress  # the other reading of the filter
      $RS diversity --preset cpu-cifar10 --data-root "$DATA" --images 200 --runs 8 \
        --out runs/evidence-diversity-cifar10 --no-progress ;;
    cpu-mnist|cpu-fashion|cpu-cifar10)
      augs='[false,true]'
      [ "$part" = cpu-mnist ] && augs='[false]'  # a flipped digit is often another digit or none
      $RS run --preset "$part" --data-root "$DATA" --seeds "$SEEDS" --set data.subset="$SIZE" \
        --set "run.augment_variants=$augs" --set 'run.supervision_variants=["all","skip0"]' \
        --out "runs/evidence-$part-$SIZE" --no-progress ;;
    sweep)  # Figure 4 on MNIST: population through the preset's own 12, generations x1/4..x1
      $RS sweep --preset cpu-mnist --data-root "$DATA" --set data.subset="$SIZE" --pop-sizes 3,6,12,24 \
        --generation-scales 0.25,0.5,1 --out runs/evidence-sweep-mnist --no-progress ;;
    records)  # the finished steps' records -> results/, figures -> docs/figures, then the page's tables
      for run in $STUDY_RUNS $TABLE_RUNS runs/evidence-sweep-mnist; do
        [ -f "$run/record.json" ] || continue
        mkdir -p "results/$(basename "$run")" && cp "$run/record.json" "results/$(basename "$run")/record.json"
      done
      [ -f runs/evidence-scaling-mnist/scaling_population.png ] && \
        cp runs/evidence-scaling-mnist/scaling_population.png docs/figures/evidence-mnist-figure2-population.png && \
        cp runs/evidence-scaling-mnist/scaling_generations.png docs/figures/evidence-mnist-figure2-generations.png
      [ -f runs/evidence-sweep-mnist/sweep.png ] && cp runs/evidence-sweep-mnist/sweep.png docs/figures/evidence-mnist-figure4.png
      for d in mnist cifar10; do
        [ -f "runs/evidence-diversity-$d/diversity.png" ] && cp "runs/evidence-diversity-$d/diversity.png" "docs/figures/evidence-$d-figure3.png"
      done
      for d in mnist fashion cifar10; do  # Figures 5-7 of each Tables run
        run="runs/evidence-cpu-$d-$SIZE"
        [ -f "$run/figure5_cosine_distance.png" ] && cp "$run/figure5_cosine_distance.png" "docs/figures/evidence-$d-figure5.png" && \
          cp "$run/figure6_7_collision_entropy.png" "docs/figures/evidence-$d-figure6-7.png"
      done
      $RS results --update docs/evidence.md README.md ;;
    report)
      existing=$(for r in $TABLE_RUNS runs/evidence-sweep-mnist $STUDY_RUNS; do [ -d "$r" ] && echo "$r"; done)
      # shellcheck disable=SC2086
      $RS report $existing --out runs/evidence-report.html ;;
    *) echo "evidence.sh: unknown part '$part' (figure2, figure3, cpu-mnist, cpu-fashion, cpu-cifar10, sweep, records, report)" >&2
       exit 2 ;;
  esac
done
