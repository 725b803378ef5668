#!/bin/bash
# The GPU checks of the series-activation kernel and the backbone figures, in
# one run (budget: 8 minutes on a fresh H100/H200; the steps' timeouts sum
# to 480 s):
#   0. every kernel variant the checks use compiled in parallel processes
#      (scripts/compile_kernels.py; ~100 compiles, serial they would take
#      minutes);
#   1. tests/ops/test_series_act.py on CUDA (the compiled kernel; every autotune
#      config at VanillaNet-13's 800x1344 activation shapes against cuDNN);
#   2. tools/benchmark_fps.py at 800x1344, fp32 / tf32 / bf16, channels_last
#      and NCHW: it first compares the kernel's fused backbone with the
#      PyTorch-ops fused backbone (a wrong kernel stops the run), then prints
#      wall and CUDA-event GPU times; channels_last also graph-captured
#      (--cuda-graph: eager and replayed side by side).
# Needs torch, triton and timm. vanillanet_mm's other imports (mmengine, and
# mmcv without its compiled ops) come from wheels carried to the machine:
# WHEELS=dir with mmcv-lite / mmengine wheels (`MMCV_WITH_OPS=0 pip wheel
# --no-deps mmcv==2.1.0 mmengine`), installed --no-deps when missing.
# Writes OUT_DIR/gpu_{cl,nchw}.json and the logs (OUT_DIR: work_dirs/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-work_dirs/gpu}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
if ! $PY -c 'import mmengine, mmcv' 2>/dev/null; then
  [[ -n ${WHEELS:-} ]] || { echo "mmengine/mmcv missing: set WHEELS" >&2; exit 2; }
  $PY -m pip install -q --no-deps "$WHEELS"/*.whl
fi
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
# 0. compile the kernel variants the checks use, in parallel (Triton compiles
#    one at a time per process; this fills its cache for steps 1 and 2)
for layout in nchw cl; do for dtype in fp32 fp16 bf16 fp64; do
  for k in 1 3 5 7 9; do echo "$layout $dtype $k"; done; done; done |
  timeout 120 xargs -P "$(nproc)" -n 3 $PY scripts/compile_kernels.py \
  > "$OUT_DIR/compile_kernels.log" 2>&1 || echo "some compiles failed (step 1 says which)"
echo "kernel variants compiled ($(grep -c compiled "$OUT_DIR/compile_kernels.log") of 40 sets)"
# 1. correctness first: a failing kernel must not produce speed figures
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/ops/test_series_act.py \
  2>&1 | tee "$OUT_DIR/test_series_act.log"
# 2. the figures (the kernel check runs inside, before timing)
for fmt in cl nchw; do
  extra=(); limit=80
  [[ $fmt == cl ]] && extra=(--channels-last --cuda-graph) && limit=130
  timeout $limit $PY tools/benchmark_fps.py --mode backbone --device cuda \
    --dtype fp32 tf32 bf16 --shape 800 1344 --iters 20 --warmup 5 \
    --no-gmacs "${extra[@]}" --out "$OUT_DIR/gpu_$fmt.json" \
    2>&1 | tee "$OUT_DIR/bench_$fmt.log"
done
