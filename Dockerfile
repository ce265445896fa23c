# syntax=docker/dockerfile:1
# Targets:
#   runtime (default)  slim CPU image: onnxruntime + the service, no torch
#   gpu                NVIDIA CUDA runtime base with onnxruntime-gpu
# Both carry the default models, built (fine-tuned, exported, verified) in the build stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- build: default models
FROM ${PYTHON_IMAGE} AS build
# The CPU wheel index: PyPI's default torch wheel for Linux is a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0
COPY service/ service/
RUN pip install -c requirements/constraints.txt ".[export]"
COPY models/build.py models/README.md models/
RUN python models/build.py && rm -rf .build

# ---------------------------------------------------------------- runtime: CPU serving image
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BERTSERVE_HOST=0.0.0.0 BERTSERVE_PORT=8000 BERTSERVE_MODELS=/app/models
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY service/ service/
RUN pip install -c requirements/constraints.txt . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bertserve
COPY --from=build --chown=10001:10001 /src/models/ /app/models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
# Exec form: bertserve runs as PID 1 and receives SIGTERM itself, which starts the drain.
ENTRYPOINT ["bertserve", "serve"]

# ---------------------------------------------------------------- gpu: CUDA serving image
FROM ${CUDA_IMAGE} AS gpu
ARG ORT_GPU_VERSION=1.22.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BERTSERVE_HOST=0.0.0.0 BERTSERVE_PORT=8000 BERTSERVE_MODELS=/app/models BERTSERVE_PROVIDER=cuda \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY service/ service/
# onnxruntime-gpu provides the same `onnxruntime` module with the CUDA provider.
RUN pip install -c requirements/constraints.txt . \
    && pip uninstall -y onnxruntime \
    && pip install "onnxruntime-gpu==${ORT_GPU_VERSION}" \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin bertserve
COPY --from=build --chown=10001:10001 /src/models/ /app/models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
ENTRYPOINT ["bertserve", "serve"]

# The last stage is what a plain `docker build .` produces: the CPU runtime.
FROM runtime
