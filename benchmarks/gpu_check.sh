#!/usr/bin/env bash
# The first-GPU check (one CUDA GPU, ~10 min): DALI mixed vs CPU decode tolerance, corrupt-JPEG
# batch raises then the next batch decodes, loader tuples/s DALI vs PIL, 200-step bf16 CUDA runs of
# AICANet and BIANet (finite losses, tuples/s vs CPU, GPU utilisation, peak memory), all into
# benchmarks/results/gpu_check.json. Details: benchmarks/gpu_check.py, docs/TRAINING.md.
#
#   bash benchmarks/gpu_check.sh                          # on the GPU machine, from anywhere
#   bash benchmarks/gpu_check.sh --device cpu --steps 2   # smoke mode: the same checks on CPU
#
# Any other argument goes to benchmarks/gpu_check.py (--out, --work, --timeout, ...). Exit code 0
# when every check passes, 1 when one fails (the JSON says which), 2 on a setup error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
    elif [[ -n "${VIRTUAL_ENV:-}" ]]; then PY="$VIRTUAL_ENV/bin/python"   # e.g. the Docker image
    else make venv && PY=.venv/bin/python
    fi
fi

device=cuda
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [[ "${args[$i]}" == "--device" && $((i + 1)) -lt ${#args[@]} ]]; then device=${args[$((i + 1))]}; fi
    if [[ "${args[$i]}" == --device=* ]]; then device=${args[$i]#--device=}; fi
done

if [[ "$device" == cuda ]]; then
    if ! command -v nvidia-smi > /dev/null; then
        echo "error: nvidia-smi not found: no NVIDIA driver here (in Docker: docker run --gpus all)" >&2
        exit 2
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
