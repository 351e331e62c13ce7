#!/usr/bin/env bash
# Create .venv (if missing) and install anytoken into it with the given extras, e.g. `scripts/install.sh dev`.
# torch/torchvision (and torchaudio) are pinned to the builds this machine keeps on local disk (a plain `pip install torch`
# would fetch a multi-GB CUDA build); everything else comes from pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
case "$extras" in *dev*|*audio*)  # PyPI's torchaudio 2.11.0 works with this torch (the +cpu 2.13 wheel does not)
  .venv/bin/pip install -q "torchaudio==2.11.0" ;;
esac
if [ -n "$extras" ]; then
  .venv/bin/pip install -q -e ".[${extras}]"
else
  .venv/bin/pip install -q -e .
fi
