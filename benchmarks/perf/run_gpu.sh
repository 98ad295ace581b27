#!/usr/bin/env bash
# The GPU check in one file, for a lent GPU machine: run from the repository root with `bash benchmarks/perf/run_gpu.sh`.
# Writes gpu.{json,md} into $OUT when it is set (the device machine's folder that comes back), else results/perf;
# copy them into results/perf/ of the checkout afterwards. Stops after $GPU_CHECK_SECONDS (default 540).
set -euo pipefail
out="${OUT:-results/perf}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
export FEWSHOT_CACHE="${FEWSHOT_CACHE:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this check is for a GPU machine'; \
print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
timeout "${GPU_CHECK_SECONDS:-540}" python benchmarks/perf/gpu.py --device cuda --out "$out" "$@" 2>&1 | tee "$out/gpu.log"
