#!/usr/bin/env bash
# Everything a lent GPU is for, as one script (device time is scarce, 15 minutes a session):
#   bash benchmarks/cuda_session.sh OUT_DIR [DATA_ROOT] [STAGES]
# Stages, in order of what they are worth (each under its own time limit; a failure or timeout is
# logged and the next stage runs): `bench-fast`, `bench-compiled`, `bench-bf16` (the search's
# evaluations/s at the paper's width on cifar10-jpeg, as benchmarks/search.py JSON), `mnist60k`
# (cpu-mnist on all 60,000 MNIST images, end to end), `fashion30k` (cpu-fashion, 30,000 images), `tests` (tests/test_cuda.py: CUDA against CPU),
# `sgd-precision` (the SGD baseline at 60,000 MNIST images, bf16 autocast against fp32, 4 seeds),
# `bench-paper` (evaluations/s per point of the paths in BENCH_PATHS, default compiled and fused, at
# the paper's width and population 240 on cifar10-jpeg), `paper-cifar10` (the paper's CIFAR-10
# protocol on cifar10-jpeg training images: as many as bench-paper's rates search in PAPER_SEARCH_S
# (140) seconds, at most PAPER_IMAGES, each map point on the path it found faster
# (benchmarks/pick_engine.py); SGD at 1x/2x/3x, the All-layers learner, no augmentation, the paper's
# learning settings; full test set; limit PAPER_LIMIT, 320 s), `fused-tiles` (benchmarks/fused_tiles.py:
# the fused generation per kernel tiling in TILES against eager, at the points in TILE_POINTS, each
# checked against eager's CE and parents; bench-paper and paper-cifar10 then use the fastest tiling
# that agrees, and no fused point when none does), `ncu-fused` (Nsight Compute on the fused kernel at
# block 0 at the fastest tiling fused-tiles measured (or NCU_TILE): speed of light, memory, occupancy, warp stall reasons, into ncu-fused.txt).
# Each stage logs what it measures as it goes (session.log), so a stage cut at its limit keeps it.
# Dry run on a CPU first, at toy size (the fused kernel runs under Triton's interpreter there):
#   DEVICE=cpu IMAGES=2 WIDTH=8 BENCH_POP=24 BENCH_GENS=[1,1,1,1] PAPER_IMAGES=40 TILE_IMAGES=2 TILES=32x8 TILE_REPEATS=1 TILE_POINTS=2 \
#     PAPER_EXTRA="--overlay tiny --set search.generations=[1,1,1,1] --set engine.chunk_images=8 --set learn.batch_size=10 \
#     --set baseline.batch_size=10" bash benchmarks/cuda_session.sh /tmp/dry data "fused-tiles ncu-fused bench-paper paper-cifar10"
# On CUDA the search draws from counter streams (`search.rng=counter`: per-image torch.Generators
# would cost a kernel launch per image per draw) and sizes chunks from `engine.memory_gb`.
set -uo pipefail
OUT=${1:?usage: cuda_session.sh OUT_DIR [DATA_ROOT] [STAGES]}
DATA=${2:-data}
STAGES=${3:-fused-tiles ncu-fused bench-paper}  # paper-cifar10 (about 320 s) in a call of its own, with PRIOR
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu IMAGES=8 MNIST_EXTRA="--set data.subset=600": a smoke test of this script
IMAGES=${IMAGES:-510}  # bench stages: 5 whole chunks of 102 at the paper's population (a partial chunk recompiles;
# 1,020 images on three paths ran past bench-paper's 150 s on 2026-12-04: compilation is most of it)
WIDTH=${WIDTH:-256}
BENCH_POP=${BENCH_POP:-240}
BENCH_GENS=${BENCH_GENS:-[6,4,4,3]}
PAPER_IMAGES=${PAPER_IMAGES:-10000}
TILE_POINTS=${TILE_POINTS:-0}
TILES=${TILES:-0x4,1x1,4x2,2x1}  # pass 1 channels x warps (0 = four values a thread): v5's default, the best at its
# registers and the two with the highest issue ceilings offline (benchmarks/fused_compile.py, Triton 3.6: 8.4M, 10.8M, 12.0M, 12.4M)
read -r -a PAPER_EXTRA <<<"${PAPER_EXTRA:-}"
[ "$DEVICE" = cpu ] && export TRITON_INTERPRET=1  # the fused kernel on a CPU: Triton's interpreter
read -r -a MNIST_EXTRA <<<"${MNIST_EXTRA:-}"
read -r -a SGD_EXTRA <<<"${SGD_EXTRA:-}"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG=$OUT/session.log
# A later call starts on a fresh machine with an empty OUT: PRIOR names a folder holding an earlier
# call's returned fused-tiles.json and bench-paper.json (copied into the working tree, which travels),
# so that `paper-cifar10` in a call of its own still runs at the tiling and paths that call measured.
for f in fused-tiles.json bench-paper.json; do
  [ -z "${PRIOR:-}" ] || [ -f "$OUT/$f" ] && continue
  if [ -f "$PRIOR/$f" ]; then cp "$PRIOR/$f" "$OUT/$f" && echo "from PRIOR: $PRIOR/$f" >>"$LOG"
  else echo "PRIOR: no $PRIOR/$f (the stages that read it fall back to their defaults)" >>"$LOG"; fi
done
GPU_SET=(--set search.rng=counter --set engine.memory_gb=40)
BENCH=("$PY" benchmarks/search.py --device "$DEVICE" --widths "$WIDTH" --images "$IMAGES" --dataset cifar10-jpeg
       --data-root "$DATA" "${GPU_SET[@]}")

stage() {  # stage NAME SECONDS STDOUT CMD...: stdout to the file STDOUT (- : the log), stderr to the log
  local name=$1 limit=$2 to=$3 t0=$SECONDS rc; shift 3
  [ "$to" = - ] && to=$LOG
  echo "== $name start $(date -u +%T)" >>"$LOG"
  timeout "$limit" "$@" >>"$to" 2>>"$LOG"; rc=$?
  echo "== $name rc=$rc $((SECONDS - t0)) s" >>"$LOG"
}

{ date -u; nvidia-smi -L; nproc; "$PY" -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__,
torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device', 'triton', triton.__version__)"
  git log -1 --format='%H %s' 2>/dev/null; } >>"$LOG" 2>&1

pipeline() {  # pipeline NAME SECONDS ARGS...: `repsearch run` on the GPU; its small files come back as NAME.tgz
  local name=$1 limit=$2; shift 2
  stage "$name" "$limit" - "$PY" -m repsearch run --device "$DEVICE" --data-root "$DATA" --no-progress "${GPU_SET[@]}" \
    "$@" --out "$OUT/runs/$name"
  (cd "$OUT/runs" && find "$name" -size -4M \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.html' \
    -o -name '*.png' -o -name '*.toml' \) | tar czf "$OUT/$name.tgz" -T -)
  cp "$OUT/runs/$name/record.json" "$OUT/$name-record.json" 2>/dev/null
  rm -rf "$OUT/runs"
}

for s in $STAGES; do
  case $s in
    fused-tiles)    stage $s 80 "$OUT/$s.json" "$PY" benchmarks/fused_tiles.py --device "$DEVICE" --width "$WIDTH" \
                      --images "${TILE_IMAGES:-102}" --population "$BENCH_POP" --points "$TILE_POINTS" --tiles "$TILES" --repeats "${TILE_REPEATS:-5}" ;;
    ncu-fused)      # where the fused kernel's time goes at block 0: the explorers' and refiners' launches
      # of the first timed generation (3 launches a generation; the warm-up's are skipped), stall reasons included
      # at the tiling fused-tiles measured fastest (NCU_TILE, or 0x4 without one)
      NCU_TILE=${NCU_TILE:-$("$PY" benchmarks/pick_engine.py --tiles "$OUT/fused-tiles.json" --tiling-name 0x4)}
      echo "ncu-fused tiling: $NCU_TILE" >>"$LOG"
      if command -v ncu >/dev/null; then
        stage $s 90 "$OUT/$s.txt" ncu --clock-control none --kernel-name regex:build_score --launch-skip 3 \
          --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis --section LaunchStats \
          --section Occupancy --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
          "$PY" benchmarks/fused_tiles.py --device "$DEVICE" --width "$WIDTH" --images "${TILE_IMAGES:-102}" \
          --population "$BENCH_POP" --points 0 --tiles "$NCU_TILE" --repeats 1
      else echo "ncu-fused: no ncu on this machine" >>"$LOG"; fi ;;
    bench-fast)     stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths fast ;;
    bench-compiled) stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths compiled ;;
    bench-bf16)     stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths compiled --set search.precision=bf16 ;;
    bench-paper)    # the fused path at the tiling fused-tiles measured fastest (the default without it)
      read -r -a TILING <<<"$("$PY" benchmarks/pick_engine.py --tiles "$OUT/fused-tiles.json" --tiling-only)"
      echo "bench-paper tiling: ${TILING[*]}" >>"$LOG"
      stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths "${BENCH_PATHS:-compiled,fused}" --population "$BENCH_POP" \
        --generations "$BENCH_GENS" "${TILING[@]}" ;;
    paper-cifar10)  # each map point on the path bench-paper measured faster (compiled everywhere without it),
      # on as many images (at most PAPER_IMAGES) as its measured rates search in PAPER_SEARCH_S seconds
      read -r -a ENGINE <<<"$("$PY" benchmarks/pick_engine.py "$OUT/bench-paper.json" --tiles "$OUT/fused-tiles.json" \
        --max-images "$PAPER_IMAGES" \
        --search-seconds "${PAPER_SEARCH_S:-140}" --fallback-images "${PAPER_FALLBACK:-2400}")"
      echo "paper-cifar10 engine and images: ${ENGINE[*]}" >>"$LOG"
      pipeline $s "${PAPER_LIMIT:-320}" --preset paper-cifar10 --set data.name=cifar10-jpeg \
      --seeds 1 --set 'run.augment_variants=[false]' --set 'run.supervision_variants=["all"]' \
      "${ENGINE[@]}" "${PAPER_EXTRA[@]}" ;;
    mnist60k) pipeline $s 300 --preset cpu-mnist --set data.subset=0 "${MNIST_EXTRA[@]}" ;;
    fashion30k) pipeline $s 300 --preset cpu-fashion "${MNIST_EXTRA[@]}" ;;
    sgd-precision)
      stage $s 200 "$OUT/$s.jsonl" "$PY" benchmarks/sgd_precision.py --device "$DEVICE" --preset cpu-mnist \
        --data-root "$DATA" --set data.subset=0 --seeds 0,1,2,3 --precisions bf16,fp32 --lrs 2.0,1.0 "${SGD_EXTRA[@]}" ;;
    tests) stage $s 200 - "$PY" -m pytest -q -p no:cacheprovider -ra tests/test_cuda.py ;;
    *) echo "unknown stage $s" >>"$LOG" ;;
  esac
done
echo "== done $(date -u +%T)" >>"$LOG"
