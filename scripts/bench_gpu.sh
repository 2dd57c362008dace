#!/usr/bin/env bash
# Issue 7's open-model benchmark (benchmarks/open_models.py) on a GPU: cinegen vs each family's
# diffusers pipeline on the same tiny configs, one JSON line per result in DEST/open_models.jsonl.
# The device machine has PyTorch and transformers but not diffusers: carry it and
# importlib_metadata as wheels in .whl/ (docs/open_models.md, "Parity and benchmark") and this
# script installs them under /tmp/site.
#   scripts/bench_gpu.sh /tmp/bench [REPEATS]        # DEVICE=cpu runs the same thing here
set -euo pipefail
dest=${1:?usage: scripts/bench_gpu.sh DEST [REPEATS]}
repeats=${2:-10}
device=${DEVICE:-cuda}
python=${PYTHON:-python3}
mkdir -p "$dest"
if [ -d .whl ] && ! $python -c "import diffusers" 2>/dev/null; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
$python -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" \
    | tee "$dest/device.txt"
$python benchmarks/open_models.py --device "$device" --families cogvideox ltx wan --repeats "$repeats" \
    2> >(grep -v -e Loading -e Writing -e deprecat >&2) | tee "$dest/open_models.jsonl"
