#!/usr/bin/env bash
# Make (or reuse) the project venv in .venv: the CPU torch 2.13.0 first, so nothing pulls a CUDA build,
# then latentbridge itself in editable mode with the extras named as arguments (e.g. dev,diffusers,train).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: latentbridge needs Python 3.10 or newer" >&2; exit 2; }
[[ -x .venv/bin/python ]] || python3 -m venv .venv
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  # Where pip finds no local CPU wheel (PyPI serves CUDA builds on Linux), point it at one:
  # LATENTBRIDGE_TORCH_INDEX=https://download.pytorch.org/whl/cpu scripts/setup.sh
  .venv/bin/pip install --quiet torch==2.13.0 ${LATENTBRIDGE_TORCH_INDEX:+--index-url "$LATENTBRIDGE_TORCH_INDEX"}
fi
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
.venv/bin/pip install --quiet -e "$spec"
