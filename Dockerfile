# GPU training image: CUDA 13.0 runtime (matches the cu130 build of the pinned torch 2.13),
# Python 3.11, the pinned requirements (incl. nvidia-dali-cuda130), this project installed.
#
#   docker build -t voxface:latest .
#   docker run --gpus all --ipc=host \
#       -v /data/shards:/data/shards:ro -v "$PWD/runs":/workspace/voxface/runs voxface:latest \
#       --config launch/configs/aicanet_v2f.yaml \
#       data.shards=/data/shards/voxceleb1/train train.val_data=/data/shards/voxceleb1/val
#
# The entrypoint is `accelerate launch launch/train.py`; with no Accelerate config it uses every
# visible GPU on one node. For multi-node runs mount a per-node Accelerate config at
# /opt/hf/accelerate/default_config.yaml (docs/TRAINING.md).
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04

FROM ghcr.io/astral-sh/uv:0.9.21 AS uv

FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/opt/hf

# ca-certificates: HTTPS for the Python download; libsndfile1: soundfile's system fallback.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libsndfile1 \
    && rm -rf /var/lib/apt/lists/*

# Ubuntu 24.04 ships Python 3.12; the pins (zarr 3.1, librosa 0.11, av 18) need 3.11.
COPY --from=uv /uv /usr/local/bin/uv
RUN uv python install 3.11 \
    && uv venv --seed --python 3.11 /opt/venv

WORKDIR /workspace/voxface

# Dependencies first, so code edits do not re-download torch. Every pin, DALI's cu130 wheel
# included, comes from PyPI.
COPY requirements.txt ./
RUN python -m pip install -r requirements.txt

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY shards ./shards
COPY models ./models
COPY launch ./launch
RUN python -m pip install --no-deps -e . \
    && python -c "import torch, accelerate, nvidia.dali, shards.loader, models, launch.train"

ENTRYPOINT ["accelerate", "launch", "launch/train.py"]
CMD ["--config", "launch/configs/aicanet_v2f.yaml"]
