# Targets:
#   runtime (default)  slim CPU image: onnxruntime + the service, no torch
#   gpu                NVIDIA CUDA runtime base with onnxruntime-gpu
#   export             the CPU image plus the export extra (torch CPU): `serve --model <checkpoint>`
#                      exports and verifies into the cache volume at /cache, then serves
# runtime and gpu carry the default models, from the build stage; export carries none.
#
# Build arguments:
#   PYTHON_IMAGE  base of the CPU image and of the build stage: Debian-based, Python 3.11 and pip on
#                 PATH. Without a registry, make one from Debian's packages: deploy/docker/base-image.sh
#   CUDA_IMAGE    base of the gpu image
#   MODELS_FROM   build (default): fine-tune, export and verify the default models in the build
#                 stage, which needs the torch CPU wheel index (TORCH_INDEX_URL);
#                 context: take the models `make models` built under models/ from the build
#                 context, as they are (no torch, nothing downloaded for the models)
#                 none: no default models (the export target carries none; the classic builder
#                 still runs the build stage before it)
#
# Works with BuildKit and with the classic builder (Debian's docker.io without buildx). The classic
# builder runs every stage before its --target, so the build stage branches on MODELS_FROM rather
# than living in two stages, and the gpu stage comes last: building runtime or export never
# needs the CUDA base image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- build: the default models
FROM ${PYTHON_IMAGE} AS build
ARG MODELS_FROM=build
# The CPU wheel index: PyPI's default torch wheel for Linux is a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN if [ "$MODELS_FROM" = build ]; then pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0; fi
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY service/ service/
COPY models/ models/
RUN case "$MODELS_FROM" in \
      context) \
        if ! ls models/*/manifest.json >/dev/null 2>&1; then \
          echo "MODELS_FROM=context: no built model under models/ in the build context: run make models first" >&2; \
          exit 1; \
        fi ;; \
      build) \
        rm -rf models/*/ \
        && pip install -c requirements/constraints.txt ".[export]" \
        && python models/build.py --fp16 \
        && rm -rf .build ;; \
      none) rm -rf models/*/ ;; \
      *) echo "MODELS_FROM must be build, context or none, not '$MODELS_FROM'" >&2; exit 1 ;; \
    esac \
    && rm -f models/build.py

# ---------------------------------------------------------------- runtime: CPU serving image
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BERTSERVE_HOST=0.0.0.0 BERTSERVE_PORT=8000 BERTSERVE_MODELS=/app/models
WORKDIR /tmp/src
COPY pyproject.toml README.md deploy/docker/install-service.sh ./
COPY requirements/ requirements/
COPY service/ service/
RUN sh install-service.sh && rm -rf /tmp/src
WORKDIR /app
# Read-only for the service: owned by root.
COPY --from=build /src/models/ /app/models/
USER 10001
EXPOSE 8000
# Python, not curl: the image has no curl.
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
# Exec form: bertserve runs as PID 1 and receives SIGTERM itself, which starts the drain.
ENTRYPOINT ["bertserve", "serve"]

# ---------------------------------------------------------------- export: checkpoints to serve
# docker run -v <checkpoint>:/checkpoint:ro -v bertserve-cache:/cache -p 8000:8000 \
#     bertserve:export --model /checkpoint
# The first start exports into /cache (BERTSERVE_CACHE_DIR), the next ones are served from it;
# hub ids resolve through /cache/huggingface (HF_HOME). The runtime image stays free of torch.
FROM ${PYTHON_IMAGE} AS export
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BERTSERVE_HOST=0.0.0.0 BERTSERVE_PORT=8000 BERTSERVE_CACHE_DIR=/cache HF_HOME=/cache/huggingface
WORKDIR /tmp/src
# torch's CPU wheel: from deploy/docker/wheels/ in the build context when it holds one (no index
# to reach; `make test-docker` puts the one pip already has there), else from TORCH_INDEX_URL.
COPY deploy/docker/wheels/ /tmp/wheels/
RUN if ls /tmp/wheels/torch-2.13.0*.whl >/dev/null 2>&1; then pip install /tmp/wheels/torch-2.13.0*.whl; \
    else pip install --index-url "${TORCH_INDEX_URL}" torch==2.13.0; fi \
    && rm -rf /tmp/wheels
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY service/ service/
RUN pip install -c requirements/constraints.txt ".[export]" \
    && useradd --system --uid 10001 --create-home --home-dir /home/bertserve --shell /usr/sbin/nologin bertserve \
    && mkdir /cache && chown 10001 /cache \
    && rm -rf /tmp/src
WORKDIR /app
VOLUME /cache
USER 10001
EXPOSE 8000
# A first export takes minutes (a BERT-base checkpoint on a few cores): a long start period.
HEALTHCHECK --interval=5s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
ENTRYPOINT ["bertserve", "serve"]

# ---------------------------------------------------------------- gpu: CUDA serving image
FROM ${CUDA_IMAGE} AS gpu
ARG ORT_GPU_VERSION=1.22.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    BERTSERVE_HOST=0.0.0.0 BERTSERVE_PORT=8000 BERTSERVE_MODELS=/app/models BERTSERVE_PROVIDER=cuda \
    PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# From here on, the same lines as the runtime stage.
WORKDIR /tmp/src
COPY pyproject.toml README.md deploy/docker/install-service.sh ./
COPY requirements/ requirements/
COPY service/ service/
RUN sh install-service.sh "onnxruntime-gpu==${ORT_GPU_VERSION}" && rm -rf /tmp/src
WORKDIR /app
COPY --from=build /src/models/ /app/models/
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status != 200)"]
ENTRYPOINT ["bertserve", "serve"]

# The last stage is what a build without --target produces: the CPU runtime. (The classic
# builder still runs the gpu and export stages then: give it --target runtime.)
FROM runtime
