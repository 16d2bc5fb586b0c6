#!/usr/bin/env bash
# Create the separate virtual environment DeepSparse 1.8.0 needs (it installs only beside numpy < 2,
# while sparsenet uses numpy 2). The benchmark harness runs DeepSparse through this environment's
# python in a subprocess (benchmarks/peers/deepsparse_runner.py) on the exported ONNX model.
# Usage: bash benchmarks/setup_deepsparse.sh [VENV_DIR]   (default: benchmarks/.venv-deepsparse)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv-deepsparse}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "deepsparse==1.8.0" "numpy<2" "onnx<1.17"
"$venv/bin/python" -c "import deepsparse; print('deepsparse', deepsparse.__version__)"
echo "DeepSparse environment ready: $venv"
