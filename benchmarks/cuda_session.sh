#!/usr/bin/env bash
# Everything a lent GPU is for, as one script (device time is scarce, 15 minutes a session):
#   bash benchmarks/cuda_session.sh OUT_DIR [DATA_ROOT] [STAGES]
# Stages, in order of what they are worth (each under its own time limit; a failure or timeout is
# logged and the next stage runs): `bench-fast`, `bench-compiled`, `bench-bf16` (the search's
# evaluations/s at the paper's width on cifar10-jpeg, as benchmarks/search.py JSON), `mnist60k`
# (cpu-mnist on all 60,000 MNIST images, end to end), `fashion30k` (cpu-fashion, 30,000 images), `tests` (tests/test_cuda.py: CUDA against CPU),
# `sgd-precision` (the SGD baseline at 60,000 MNIST images, bf16 autocast against fp32, 4 seeds).
# On CUDA the search draws from counter streams (`search.rng=counter`: per-image torch.Generators
# would cost a kernel launch per image per draw) and sizes chunks from `engine.memory_gb`.
set -uo pipefail
OUT=${1:?usage: cuda_session.sh OUT_DIR [DATA_ROOT] [STAGES]}
DATA=${2:-data}
STAGES=${3:-bench-fast mnist60k tests bench-compiled bench-bf16}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}   # DEVICE=cpu IMAGES=8 MNIST_EXTRA="--set data.subset=600": a smoke test of this script
IMAGES=${IMAGES:-2048}
read -r -a MNIST_EXTRA <<<"${MNIST_EXTRA:-}"
read -r -a SGD_EXTRA <<<"${SGD_EXTRA:-}"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOG=$OUT/session.log
GPU_SET=(--set search.rng=counter --set engine.memory_gb=40)
BENCH=("$PY" benchmarks/search.py --device "$DEVICE" --widths 256 --images "$IMAGES" --dataset cifar10-jpeg
       --data-root "$DATA" "${GPU_SET[@]}")

stage() {  # stage NAME SECONDS STDOUT CMD...: stdout to the file STDOUT (- : the log), stderr to the log
  local name=$1 limit=$2 to=$3 t0=$SECONDS rc; shift 3
  [ "$to" = - ] && to=$LOG
  echo "== $name start $(date -u +%T)" >>"$LOG"
  timeout "$limit" "$@" >>"$to" 2>>"$LOG"; rc=$?
  echo "== $name rc=$rc $((SECONDS - t0)) s" >>"$LOG"
}

{ date -u; nvidia-smi -L; nproc; "$PY" -c "import sys, torch; print(sys.version.split()[0], torch.__version__,
  torch.version.cuda, torch.cuda.get_device_name())"; git log -1 --format='%H %s' 2>/dev/null; } >>"$LOG" 2>&1

pipeline() {  # pipeline NAME SECONDS ARGS...: `repsearch run` on the GPU; its small files come back as NAME.tgz
  local name=$1 limit=$2; shift 2
  stage "$name" "$limit" - "$PY" -m repsearch run --device "$DEVICE" --data-root "$DATA" --no-progress "${GPU_SET[@]}" \
    "$@" --out "$OUT/runs/$name"
  (cd "$OUT/runs" && find "$name" -size -4M \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' -o -name '*.html' \
    -o -name '*.png' -o -name '*.toml' \) | tar czf "$OUT/$name.tgz" -T -)
  rm -rf "$OUT/runs"
}

for s in $STAGES; do
  case $s in
    bench-fast)     stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths fast ;;
    bench-compiled) stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths compiled ;;
    bench-bf16)     stage $s 150 "$OUT/$s.json" "${BENCH[@]}" --paths compiled --set search.precision=bf16 ;;
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
