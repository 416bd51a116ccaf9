# Sourced by the GPU scripts: environment of a lent machine without network, and what it has.
# shellcheck shell=bash
export MODEL_BUILD_WEIGHTS_DIR=.mb-carry PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())'
