#!/bin/sh
# Install the serving package and the user it runs as. Shared by the Dockerfile's runtime and gpu
# stages, so both install the same way; run from the folder holding pyproject.toml, service/ and
# requirements/.
#   install-service.sh                          CPU: onnxruntime (no torch, no transformers)
#   install-service.sh onnxruntime-gpu==X.Y.Z   CUDA: the same `onnxruntime` module with the CUDA provider
set -eu
pip install -c requirements/constraints.txt .
if [ -n "${1:-}" ]; then
    pip uninstall -y onnxruntime
    pip install "$1"
fi
if python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
    echo "install-service: torch must not be in a serving image" >&2
    exit 1
fi
# A home of its own: onnxruntime keeps a small state file there.
useradd --system --uid 10001 --create-home --home-dir /home/bertserve --shell /usr/sbin/nologin bertserve
