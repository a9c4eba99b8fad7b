#!/usr/bin/env bash
# The GPU checks of `cocostat predict` in one script, for a session that is lent a CUDA machine:
#   1. the CUDA tests (python -m pytest -q -m gpu), output in $OUT/pytest-gpu.txt
#   2. the matrix of benchmarks/bench_predict.py --gpu (yolov3-spp and yolov3-tiny at 416, batch 1/32/64,
#      float32 and --half, 5,000 images, decode-only bound), written to reports/bench_predict_gpu.md
#      (and copied to $OUT when set).
# Sized for an H100/H200 with 16 cores: about 4 to 6 minutes (yolov3-spp at batch 1 is the slowest row).
# Usage: bash benchmarks/gpu_predict.sh [IMAGES]   (COCOSTAT_TEST_DATA must point at the shared data)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
export COCOSTAT_TEST_DATA="${COCOSTAT_TEST_DATA:-$PWD/../shared/data}" COCOSTAT_REQUIRE_TEST_DATA=1
IMAGES="${1:-5000}"
OUT="${OUT:-/tmp/gpu-predict-out}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/nvidia-smi.txt"
timeout 240 python -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/pytest-gpu.txt"
tests_rc=${PIPESTATUS[0]}
timeout 420 python -m benchmarks.bench_predict --gpu --images "$IMAGES" 2> "$OUT/bench-gpu.log"
bench_rc=$?
cp reports/bench_predict_gpu.md "$OUT/" 2>/dev/null
tail -20 "$OUT/bench-gpu.log"
echo "gpu tests rc=$tests_rc, gpu benchmark rc=$bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
