# GPU training image: python:3.11-slim plus the pinned requirements. No CUDA base image: the torch
# 2.13 wheel (cu130) and nvidia-dali-cuda130 bring their CUDA, cuDNN and nvJPEG libraries as pip
# packages; the host supplies only the NVIDIA driver, through `docker run --gpus all`. Every
# other native library comes inside a wheel (soundfile's libsndfile, av's FFmpeg, decord).
#
#   make docker                     # = docker build --build-arg UID=$(id -u) --build-arg GID=$(id -g) -t voxface .
#   docker run --gpus all --ipc=host \
#       -v /data/shards:/data/shards:ro -v "$PWD/runs":/workspace/voxface/runs voxface \
#       --config launch/configs/aicanet_v2f.yaml \
#       data.shards=[/data/shards/voxceleb1/train] train.val_data=/data/shards/voxceleb1/val
#
# The container runs as an unprivileged user whose UID/GID are build arguments (default 1000), so
# checkpoints in a mounted runs/ belong to the user who built the image, not to root. The
# entrypoint is `accelerate launch launch/train.py train.device=cuda`: without `--gpus all` a run
# stops with a clear error instead of training on CPU (a later `train.device=...` still wins).
# Multi-node: docs/TRAINING.md, "Docker".
FROM python:3.11-slim-bookworm

ARG UID=1000
ARG GID=1000

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/opt/hf

RUN python -m venv /opt/venv \
    && groupadd --gid "${GID}" voxface \
    && useradd --no-log-init --uid "${UID}" --gid "${GID}" --create-home --shell /bin/bash voxface

WORKDIR /workspace/voxface

# Dependencies first, so code edits do not re-download torch. Every pin comes from PyPI.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY shards ./shards
COPY models ./models
COPY launch ./launch
COPY benchmarks ./benchmarks
RUN pip install --no-cache-dir --no-deps -e . \
    && python -c "import torch, accelerate, nvidia.dali, shards.loader, models, launch.train" \
    && mkdir -p runs /opt/hf \
    && chown voxface:voxface runs /opt/hf

USER ${UID}:${GID}

ENTRYPOINT ["accelerate", "launch", "launch/train.py", "train.device=cuda"]
CMD ["--config", "launch/configs/aicanet_v2f.yaml"]
