#!/usr/bin/env bash
# Make (or reuse) the project venv in .venv: the CPU torch 2.13.0 first, so nothing pulls a CUDA build,
# then latentbridge itself in editable mode with the extras named as arguments (e.g. dev,diffusers,train).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "error: latentbridge needs Python 3.10 or newer" >&2; exit 2; }
[[ -x .venv/bin/python ]] || python3 -m venv .venv
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  .venv/bin/pip install --quiet torch==2.13.0
fi
spec="."
[[ -n "$extras" ]] && spec=".[${extras}]"
.venv/bin/pip install --quiet -e "$spec"
