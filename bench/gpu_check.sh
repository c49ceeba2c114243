#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU and CuPy, PyTorch and JAX (CUDA builds), run the
# CUDA cases of every test file and `xptrain check` on every CUDA backend and train the seed on
# each, writing what it found to DIR.
#   usage: bash bench/gpu_check.sh [DIR]      (default: gpu-check/)
# Writes DIR/summary.txt (GPU, backends, every CUDA test case and its outcome, check and bench
# tables), DIR/check.json and
# DIR/check.png (the agreement report), DIR/bench.jsonl and DIR/bench.png (CPU-vs-GPU timing) and
# DIR/train.jsonl (one `train --json` record per run), DIR/check-torch-distributed.json and
# DIR/check-jax-sharded.json (data-parallel agreement over every GPU). Meant to finish in under
# 5 minutes.
# Exits non-zero if any CUDA backend is missing or any check fails; CUDA cases never skip here.
set -uo pipefail
out=${1:-gpu-check}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX would otherwise take 75% of the GPU from the others
export PYTHONUNBUFFERED=1
status=0
log() {  # run a command, its output also appended to the summary; keep its exit status
  "$@" 2>&1 | tee -a "$out/summary.txt"
  return "${PIPESTATUS[0]}"
}
: > "$out/summary.txt"
echo "== $(date -u +%FT%TZ)  $(uname -n)" | tee -a "$out/summary.txt"
log nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || status=1
log python3 -m xptrain backends || status=1
echo "== the test suite's CUDA cases (every test file), each listed with its outcome" \
  | tee -a "$out/summary.txt"
XPTRAIN_BACKENDS=torch,jax,cupy XPTRAIN_REQUIRE=torch,jax,cupy XPTRAIN_REQUIRE_CUDA=1 \
  log python3 -m pytest -q -rA -n 0 -p no:cacheprovider tests -k cuda || status=1
echo "== xptrain check on CUDA (every reference problem, dtype, grad and mode)" \
  | tee -a "$out/summary.txt"
log python3 -m xptrain check --quiet --devices cuda --backends torch jax cupy \
  --json "$out/check.json" --plot "$out/check.png" || status=1
echo "== data-parallel on CUDA: torch under torchrun (NCCL), JAX sharded (every GPU present)" \
  | tee -a "$out/summary.txt"
gpus=$(python3 -c 'import torch; print(torch.cuda.device_count())')
log python3 -m torch.distributed.run --nproc_per_node "$gpus" --master_addr 127.0.0.1 \
  --master_port 29517 -m xptrain check --quiet --devices cuda --backends torch --distributed \
  --problems seed breast_cancer --json "$out/check-torch-distributed.json" || status=1
log python3 -m xptrain check --quiet --devices cuda --backends jax --data-parallel "$gpus" \
  --problems seed breast_cancer --json "$out/check-jax-sharded.json" || status=1
echo "== xptrain explain on CUDA: each op of a float32 synthetic epoch (a correct GPU: no culprit)" \
  | tee -a "$out/summary.txt"
for backend in torch jax cupy; do
  log python3 -m xptrain explain --backend "$backend" --device cuda --dtype float32 \
    --problem synthetic --json "$out/explain-$backend.json" || status=1
done
echo "== xptrain bench: CPU against GPU, N = 1k ... 1M, D = 64, float32" | tee -a "$out/summary.txt"
log python3 -m xptrain bench --quiet --sweep --epochs 5 --repeat 3 --backends numpy torch jax cupy \
  --out "$out/bench.jsonl" --plot "$out/bench.png" || status=1

: > "$out/train.jsonl"
for backend in torch jax cupy; do
  for dtype in float64 float32; do
    for mode in "" "--jit"; do
      [ "$backend" = cupy ] && [ -n "$mode" ] && continue
      tmp=$(mktemp --suffix .json)
      if python3 -m xptrain train --backend "$backend" --device cuda --dtype "$dtype" $mode \
          --quiet --json "$tmp" 2>>"$out/summary.txt"; then
        python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$tmp" \
          >> "$out/train.jsonl"
      else
        echo "train failed: $backend $dtype $mode" | tee -a "$out/summary.txt"; status=1
      fi
      rm -f "$tmp"
    done
  done
done
echo "== gpu_check exit status $status" | tee -a "$out/summary.txt"
exit $status
