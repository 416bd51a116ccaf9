# Sourced by the GPU scripts: environment of a lent machine without network, and what it has.
# shellcheck shell=bash
export MODEL_BUILD_WEIGHTS_DIR=.mb-carry PYTHONUNBUFFERED=1
# media_classifier (the serving code model_build measures through): installed where the lent
# machine's Python can (setuptools present), else found through PYTHONPATH.
python3 -m pip install -q --no-deps --no-build-isolation -e functions 2>/dev/null \
  || export PYTHONPATH="$PWD/functions${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader
python3 -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.is_available())'
